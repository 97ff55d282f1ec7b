"""The exported ONNX classifier as an MLflow pyfunc: raw texts in; label, confidence and every
class probability out. Logged into the model's run and registered under
``export.registered_model_name``, with version tags saying it is ONNX and how it is quantized.
``mlflow models serve`` serves it; ``finetune predict -m models:/<name>-onnx@...`` runs it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from finetune.core.labels import prob_columns

log = logging.getLogger(__name__)

ARTIFACT_KEY = "onnx_model"
ARTIFACT_PATH = "onnx_model"


def as_texts(model_input: Any) -> list[str]:
    """Texts from what pyfunc hands over: a DataFrame (its ``text`` column, else its first),
    a Series, an array, a list or one string. Missing values become empty texts."""
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        values = model_input[column].tolist()
    elif isinstance(model_input, pd.Series | np.ndarray):
        values = list(model_input)
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(model_input)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def predictions_table(probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """label, score (the confidence) and prob_<label> per class, one row per text."""
    table = pd.DataFrame(probs.astype(np.float64), columns=prob_columns(labels))
    table.insert(0, "score", probs.max(axis=1).astype(np.float64) if len(probs) else [])
    table.insert(0, "label", [labels[i] for i in probs.argmax(axis=1)] if len(probs) else [])
    return table


class OnnxTextClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of :class:`finetune.modeling.onnx_runtime.OnnxClassifier`."""

    def load_context(self, context: Any) -> None:
        from finetune.modeling.onnx_runtime import load_onnx

        self.classifier = load_onnx(context.artifacts[ARTIFACT_KEY])

    # No type hints here: MLflow would build the signature from them (the logged signature,
    # inferred from an example, is the one that describes this model).
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        texts = as_texts(model_input)
        probs = self.classifier.predict_proba(texts).probabilities
        return predictions_table(probs, self.classifier.labels)


def log_onnx_model(
    export_dir: str,
    example: list[str],
    registered_model_name: str | None,
    version_tags: dict[str, str],
) -> str | None:
    """Log ``export_dir`` as a pyfunc into the active run; register it when a name is given.
    Returns the new version (None when not registered)."""
    import onnxruntime
    import tokenizers
    from mlflow.models import infer_signature

    from finetune import __version__
    from finetune.modeling.onnx_runtime import load_onnx

    classifier = load_onnx(export_dir)
    output = predictions_table(classifier.predict_proba(example).probabilities, classifier.labels)
    info = mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=str(Path(__file__).with_name("onnx_pyfunc.py")),  # models from code
        artifacts={ARTIFACT_KEY: export_dir},
        signature=infer_signature(example, output),
        input_example=example,
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
