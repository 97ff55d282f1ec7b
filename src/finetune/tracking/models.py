"""Logging the trained model to MLflow (transformers flavour, registered as a new version)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from finetune.training.trainer import TrainResult

log = logging.getLogger(__name__)


def log_model(result: TrainResult, model_dir: Path, tracking_cfg: Any, example: list[str]) -> None:
    """Log the saved model with MLflow's transformers flavour (pyfunc predicts on raw texts).

    The input example gives the signature (string in, label + score out); with
    ``tracking.registered_model_name`` each newly trained model becomes a new version.
    """
    import mlflow
    import transformers

    from finetune import __version__

    mlflow.transformers.log_model(
        transformers_model={"model": result.model, "tokenizer": result.tokenizer},
        name="model",
        task="text-classification",
        input_example=example,
        registered_model_name=tracking_cfg.get("registered_model_name") or None,
        pip_requirements=[
            "torch==2.13.0",
            f"transformers=={transformers.__version__}",
            f"finetune-pipeline=={__version__}",
        ],
    )
    log.info("logged model %s to MLflow run %s", model_dir, mlflow.active_run().info.run_id)
