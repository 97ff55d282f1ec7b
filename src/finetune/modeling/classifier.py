"""One classifier object from any model reference: a trained model directory
(``models/model``), an ONNX deployment (``models/onnx``, or one whose ``deployment.json`` names
the PyTorch model the export gate kept), a downloaded MLflow model, or a ``models:/`` /
``runs:/`` URI. Whatever runs it (PyTorch or ONNX Runtime), it gives the labels, the lengths,
token counts and batched probabilities; predict, monitoring and the export's scoring use it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.core.errors import ModelNotFoundError
from finetune.modeling import decisions, truncation
from finetune.modeling.inference import Predictions

if TYPE_CHECKING:
    from finetune.modeling.onnx_runtime import OnnxClassifier

log = logging.getLogger(__name__)

URI_SCHEMES = ("models:/", "runs:/")  # models the MLflow tracking store resolves
MLMODEL_FILE = "MLmodel"  # what makes a directory an MLflow model


@dataclass
class Classifier:
    """A model ready to predict, whatever runs it (PyTorch or ONNX Runtime)."""

    labels: list[str]
    source: str
    backend: str  # "pytorch" or "onnx"
    max_positions: int | None  # what the position embeddings allow
    saved_max_length: int  # the length the model was trained with
    predict: Callable[[list[str], int, int], Predictions]
    token_counts: Callable[[list[str]], list[int]]
    # (texts, batch size, max length) -> (sentence embeddings, probabilities) from one forward
    # pass; PyTorch only (an ONNX graph returns logits alone): None for ONNX
    embed_and_predict: Callable[[list[str], int, int], tuple[np.ndarray, np.ndarray]] | None = None
    # the transformers model and tokenizer (gradients, hidden states: monitoring, explanations);
    # None for ONNX
    model: Any = None
    tokenizer: Any = None
    # how a text over max_length is read: finetune.modeling.truncation
    long_text: truncation.LongText = truncation.HEAD_ONLY
    # multi-label: the probabilities are per label (a sigmoid each) and these thresholds decide
    # the label set (finetune.modeling.decisions); None: one class per text (softmax, argmax)
    thresholds: decisions.Thresholds | None = None

    def decide(self, probs: np.ndarray) -> list[str]:
        """The prediction per row of ``probs``: the most likely class, or (multi-label) the
        label set joined by "|" as the data writes it ("" for none)."""
        if self.thresholds is None:
            return [self.labels[int(i)] for i in np.asarray(probs).argmax(axis=1)]
        chosen = decisions.decide(np.asarray(probs), self.thresholds)
        return ["|".join(s) for s in decisions.label_sets(chosen, self.labels)]


def _torch_model(model: Any, tokenizer: Any, source: str) -> Classifier:
    from finetune.modeling.backbones import inference_max_length
    from finetune.modeling.inference import embed_and_predict, predict_proba

    def predict(texts: list[str], batch_size: int, max_length: int) -> Predictions:
        return predict_proba(model, tokenizer, texts, batch_size, max_length)

    def embed(texts: list[str], batch_size: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        return embed_and_predict(model, tokenizer, texts, batch_size, max_length)

    def counts(texts: list[str]) -> list[int]:
        ids = tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
        return [len(x) for x in ids]

    return Classifier(
        labels=[str(model.config.id2label[i]) for i in range(int(model.config.num_labels))],
        source=source,
        backend="pytorch",
        max_positions=getattr(model.config, "max_position_embeddings", None),
        saved_max_length=inference_max_length("auto", tokenizer),
        predict=predict,
        token_counts=counts,
        embed_and_predict=embed,
        model=model,
        tokenizer=tokenizer,
        long_text=truncation.settings(model.config),
        thresholds=(
            decisions.from_config(model.config) if decisions.is_multi_label(model.config) else None
        ),
    )


def _onnx_model(classifier: OnnxClassifier, source: str) -> Classifier:
    return Classifier(
        labels=classifier.labels,
        source=source,
        backend="onnx",
        max_positions=classifier.max_positions,
        saved_max_length=classifier.max_length,
        predict=classifier.predict_proba,
        token_counts=classifier.token_counts,
        long_text=classifier.long_text,
        thresholds=classifier.thresholds,
    )


def _load_dir(source: str, num_threads: int | None = None) -> Classifier:
    """A trained model directory, an ONNX deployment directory, one whose deployment.json
    names the PyTorch model (the export gate kept it), or an MLflow model directory (a
    downloaded ``models:/`` version: it holds an ``MLmodel`` file). ``num_threads``: ONNX
    Runtime's threads (None: all cores)."""
    from finetune.modeling.backbones import load_trained
    from finetune.modeling.onnx_runtime import is_onnx_dir, load_onnx

    if (Path(source) / MLMODEL_FILE).is_file():
        return _load_logged(source)
    if is_onnx_dir(source):
        return _onnx_model(load_onnx(source, num_threads=num_threads), source)
    target = kept_model_dir(source)
    if target != source:
        log.info("%s: the export gate kept the PyTorch model; predicting with %s", source, target)
    return _torch_model(*load_trained(target), target)


def kept_model_dir(source: str) -> str:
    """The PyTorch model a deployment directory's ``deployment.json`` names when the export gate
    kept it (its path relative to the deployment directory; from before, to the working
    directory), else ``source``."""
    from finetune.modeling.onnx_runtime import read_deployment

    deployment = read_deployment(source)
    if deployment is None or deployment.get("format") != "pytorch":
        return source
    named = Path(str(deployment["model_dir"]))
    beside = Path(source) / named
    return str(beside.resolve() if not named.is_absolute() and beside.is_dir() else named)


def _load_uri(source: str, tracking_uri: str | None) -> Classifier:
    """A ``models:/`` or ``runs:/`` URI: the transformers flavour (PyTorch) or our ONNX pyfunc."""
    import mlflow

    from finetune.core import store

    mlflow.set_tracking_uri(store.tracking_uri(tracking_uri))
    return _load_logged(source)


def _load_logged(source: str) -> Classifier:
    """An MLflow model (URI or local directory): the transformers flavour or our ONNX pyfunc."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from finetune.modeling.backbones import load_logged

    try:
        flavors = mlflow.models.get_model_info(source).flavors
    except (MlflowException, OSError) as exc:
        raise ModelNotFoundError(f"cannot load {source}: {exc}") from exc
    if "transformers" in flavors:
        return _torch_model(*load_logged(source), source)
    from finetune.modeling.onnx_pyfunc import OnnxTextClassifier

    python_model = mlflow.pyfunc.load_model(source).unwrap_python_model()
    if not isinstance(python_model, OnnxTextClassifier):
        raise ModelNotFoundError(
            f"{source} is neither a transformers model nor an ONNX model logged by finetune "
            f"(flavours: {sorted(flavors)})"
        )
    return _onnx_model(python_model.classifier, source)


def open_classifier(
    source: str, tracking_uri: str | None = None, num_threads: int | None = None
) -> Classifier:
    """A model directory (PyTorch, ONNX or a downloaded MLflow model), or an MLflow
    ``models:/`` / ``runs:/`` URI. ``num_threads``: ONNX Runtime threads of an ONNX directory
    (None: all cores)."""
    if source.startswith(URI_SCHEMES):
        return _load_uri(source, tracking_uri)
    if Path(source).is_dir():
        return _load_dir(source, num_threads)
    raise ModelNotFoundError(
        f"model {source!r} is neither a directory nor a models:/ or runs:/ URI "
        "(e.g. models/model, models/onnx or models:/support_tickets@champion)"
    )


def effective_max_length(loaded: Classifier, max_length: int | None) -> int:
    """``max_length`` (None: the length the model was trained with, saved with its tokenizer)
    capped at what the model's position embeddings allow."""
    length = loaded.saved_max_length if max_length is None else int(max_length)
    cap = loaded.max_positions or length
    return max(2, min(int(length), int(cap)))
