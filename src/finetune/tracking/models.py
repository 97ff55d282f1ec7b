"""Logging the trained model to MLflow (transformers flavour, registered as a new version)."""

from __future__ import annotations

import logging
from typing import Any

from finetune.core.schema import TrackingConfig

log = logging.getLogger(__name__)


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


def log_model(
    model: Any, tokenizer: Any, tracking_cfg: TrackingConfig, example: list[str], card: str
) -> None:
    """Log the saved model with MLflow's transformers flavour (pyfunc predicts on raw texts).

    The input example gives the signature (string in, label + score out); with
    ``tracking.registered_model_name`` each newly trained model becomes a new version. ``card``
    is our model card (its licence from ``model.license``): MLflow then looks nothing up on the
    Hub, which an offline machine cannot reach anyway.
    """
    import mlflow
    from huggingface_hub import ModelCard

    mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-classification",
        input_example=example,
        model_card=ModelCard(card),
        registered_model_name=tracking_cfg.registered_model_name,
        pip_requirements=pip_requirements(),
    )
    log.info("logged the model to MLflow run %s", mlflow.active_run().info.run_id)
