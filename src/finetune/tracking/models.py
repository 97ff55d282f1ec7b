"""Logging the trained model to its MLflow run (transformers flavour). Registering it as a
version of the registered model is not done here: ``finetune.registry.register`` owns that."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"  # the run's artifact path of the model: runs:/<run_id>/model


def pip_requirements() -> list[str]:
    """What a logged model needs installed: the torch and transformers it was trained with
    (torch's local build tag, ``+cpu``, dropped: pip matches the release) and this package."""
    import torch
    import transformers

    from finetune import __version__

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"transformers=={transformers.__version__}",
        f"finetune-pipeline=={__version__}",
    ]


def log_model(model: Any, tokenizer: Any, example: list[str], card: str) -> None:
    """Log the saved model with MLflow's transformers flavour (pyfunc predicts on raw texts).

    The input example gives the signature (string in, label + score out). The model is logged
    to the active run only; the registration step makes it a version (``runs:/<run>/model``).
    ``card`` is our model card (its licence from ``model.license``): MLflow then looks nothing up
    on the Hub, which an offline machine cannot reach anyway. The pipeline truncates (a text
    longer than the model's limit failed in prediction and in MLflow's own signature check);
    it keeps the first tokens, at the max length the tokenizer was saved with.
    """
    import mlflow
    from huggingface_hub import ModelCard

    mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name=MODEL_ARTIFACT,
        task="text-classification",
        input_example=example,
        model_config={"truncation": True},
        model_card=ModelCard(card),
        pip_requirements=pip_requirements(),
    )
    log.info("logged the model to MLflow run %s", mlflow.active_run().info.run_id)
