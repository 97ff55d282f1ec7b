"""Logging the deployed ONNX model into the model's MLflow run and registering it, with
version tags that say it is ONNX, which variant and how it is quantized."""

from __future__ import annotations

import logging
from importlib.util import find_spec
from typing import Any

import mlflow

from finetune.modeling.onnx_pyfunc import ARTIFACT_KEY, ARTIFACT_PATH, predictions_table

log = logging.getLogger(__name__)

# MLflow "models from code": the file MLflow stores with the model and runs to load it. Located,
# not imported (importing it sets MLflow's model); it is in the export stage's deps in dvc.yaml.
ENTRY_MODULE = "finetune.serving.onnx_pyfunc_entry"


def entry_file() -> str:
    spec = find_spec(ENTRY_MODULE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{ENTRY_MODULE}: not found in the installed finetune package")
    return spec.origin


def log_onnx_model(
    export_dir: str,
    example: list[str],
    registered_model_name: str | None,
    version_tags: dict[str, str],
    log_settings: dict[str, Any] | None = None,
) -> str | None:
    """Log ``export_dir`` as a pyfunc into the active run; register it when a name is given.
    ``log_settings`` (monitor.log_flush_rows, log_flush_seconds, log_retention_days) go into
    the model's config: how the served model writes its prediction log. Returns the new version
    (None when not registered)."""
    import onnxruntime
    import tokenizers
    from mlflow.models import infer_signature

    from finetune import __version__
    from finetune.modeling.onnx_runtime import load_onnx

    classifier = load_onnx(export_dir)
    output = predictions_table(
        classifier.predict_proba(example).probabilities, classifier.labels, classifier.thresholds
    )
    info = mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=entry_file(),  # models from code
        artifacts={ARTIFACT_KEY: export_dir},
        signature=infer_signature(example, output),
        input_example=example,
        # what a served model writes as "model" in the prediction log
        model_config={
            "log_name": f"{version_tags.get('source_model')} (onnx {version_tags.get('variant')})",
            **(log_settings or {}),
        },
        registered_model_name=registered_model_name,
        pip_requirements=[
            f"onnxruntime=={onnxruntime.__version__}",
            f"tokenizers=={tokenizers.__version__}",
            f"finetune-pipeline=={__version__}",
        ],
    )
    version = getattr(info, "registered_model_version", None)
    if registered_model_name and version is not None:
        client = mlflow.MlflowClient()
        for key, value in version_tags.items():
            client.set_model_version_tag(registered_model_name, str(version), key, value)
        client.update_model_version(
            registered_model_name,
            str(version),
            description=(
                f"ONNX ({version_tags.get('variant')}, {version_tags.get('quantization')}) of "
                f"{version_tags.get('source_model')}; served by onnxruntime"
            ),
        )
        log.info("registered the ONNX model as %s version %s", registered_model_name, version)
        return str(version)
    return None


def source_version(name: str | None, run_id: str) -> str:
    """``<name> v<k>``: the PyTorch version this run registered (the ONNX model's source)."""
    if not name:
        return f"runs:/{run_id}/model"
    versions = mlflow.MlflowClient().search_model_versions(f"run_id='{run_id}'")
    mine = [v.version for v in versions if v.name == name]
    return f"{name} v{max(mine, key=int)}" if mine else f"runs:/{run_id}/model"
