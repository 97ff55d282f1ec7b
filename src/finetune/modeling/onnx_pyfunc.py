"""The exported ONNX classifier as an MLflow pyfunc: raw texts in; label, confidence and every
class probability out. The export stage logs and registers it
(:mod:`finetune.export.registration`, with :mod:`finetune.serving.onnx_pyfunc_entry` as its
code); ``mlflow models serve`` serves it and
``finetune predict -m models:/<name>-onnx/<version>`` runs it."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from finetune.core.labels import prob_columns
from finetune.modeling import decisions

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


def predictions_table(
    probs: np.ndarray, labels: list[str], thresholds: decisions.Thresholds | None = None
) -> pd.DataFrame:
    """label, score (the confidence) and prob_<label> per class, one row per text. With
    ``thresholds`` (multi-label): label is the set of labels at or above their thresholds
    joined by "|" ("" for none), prob_<label> each label's own probability."""
    table = pd.DataFrame(probs.astype(np.float64), columns=prob_columns(labels))
    table.insert(0, "score", probs.max(axis=1).astype(np.float64) if len(probs) else [])
    if thresholds is not None:
        chosen = decisions.label_sets(decisions.decide(probs, thresholds), labels)
        table.insert(0, "label", ["|".join(s) for s in chosen])
    else:
        table.insert(0, "label", [labels[i] for i in probs.argmax(axis=1)] if len(probs) else [])
    return table


class OnnxTextClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of :class:`finetune.modeling.onnx_runtime.OnnxClassifier`."""

    def load_context(self, context: Any) -> None:
        from finetune.modeling.onnx_runtime import load_onnx

        self.classifier = load_onnx(context.artifacts[ARTIFACT_KEY])
        config = getattr(context, "model_config", None) or {}
        self.log_name = str(config.get("log_name") or context.artifacts[ARTIFACT_KEY])

    # model_input: a DataFrame, as MLflow hands over input enforced to the logged signature
    # (one string column, inferred from an example). MLflow infers no signature from this
    # hint (it would from list[str]), and the hint stops its "add type hints" warning.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        texts = as_texts(model_input)
        probs = self.classifier.predict_proba(texts).probabilities
        return predictions_table(probs, self.classifier.labels, self.classifier.thresholds)
