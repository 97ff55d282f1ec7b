"""``finetune explain``: why a model predicts what it does for texts of one's own.

Any model ``finetune predict`` takes (a trained model directory, an ONNX deployment, a
``models:/`` or ``runs:/`` URI); the explainers of ``error_analysis.explanations`` side by side,
their faithfulness on these texts, in the terminal and, with ``-o``, as one self-contained HTML
page. Integrated gradients needs the PyTorch model: an ONNX model gets SHAP and LIME.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finetune.analysis import explainers as X
from finetune.analysis.explain import check_texts, explain_rows, render_page
from finetune.core.errors import DataError
from finetune.core.io import atomic_path
from finetune.core.schema import ExplanationsConfig
from finetune.modeling.classifier import effective_max_length, open_classifier

log = logging.getLogger(__name__)


def read_texts(
    texts: list[str], input_path: str | Path | None, text_column: str
) -> tuple[list[str], list[str], list[str]]:
    """The texts to explain, their ids and how to name each in a message: the command line's
    (ids 1, 2, ...), or a CSV / JSONL file's ``text_column`` (ids from its ``id`` column when
    it has one, else row numbers)."""
    if texts and input_path is not None:
        raise DataError("give texts on the command line or --input FILE, not both")
    if input_path is None:
        if not texts:
            raise DataError('nothing to explain: give a text ("...") or --input FILE')
        ids = [str(i) for i in range(1, len(texts) + 1)]
        return list(texts), ids, [f"text {i}" for i in ids]
    from finetune.data.cleaning import column_texts
    from finetune.lifecycle.predict import read_inputs

    frame = read_inputs(input_path, text_column)
    if frame.empty:
        raise DataError(f"{input_path}: no rows to explain")
    if "id" in frame:
        ids = [str(v) for v in frame["id"]]
        names = [f"{input_path} id {v}" for v in ids]
    else:
        ids = [str(i) for i in range(1, len(frame) + 1)]
        names = [f"{input_path} row {i}" for i in ids]
    return column_texts(frame[text_column]), ids, names


def run_explain(
    source: str,
    texts: list[str],
    spec: ExplanationsConfig,
    *,
    input_path: str | Path | None = None,
    text_column: str = "text",
    label: str | None = None,
    output_html: str | Path | None = None,
    tracking_uri: str | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Explain each text's predicted class (or ``label``); the page context
    (:func:`finetune.analysis.explain.context`). ``output_html``: also write the page there."""
    texts, ids, names = read_texts(texts, input_path, text_column)
    loaded = open_classifier(source, tracking_uri)
    if loaded.model is None and spec.methods and set(spec.methods) <= {X.IG}:
        raise DataError(
            f"{source} is an ONNX model: integrated gradients needs the PyTorch model's "
            "gradients; use --methods shap,lime, or the PyTorch model (models/model)"
        )
    if label is not None and label not in loaded.labels:
        raise DataError(
            f"unknown --label {label!r}: the model's labels are {', '.join(loaded.labels)}"
        )
    length = effective_max_length(loaded, max_length)
    counts = loaded.token_counts([t if t.strip() else "" for t in texts])
    reads_all = loaded.long_text.reads_all  # in windows of `length`
    check_texts(texts, counts, None if reads_all else length, names)
    texts = [X.normalise(t) for t in texts]  # what the explainers see

    def proba(batch: list[str]) -> np.ndarray:
        return loaded.predict(batch, batch_size, length).probabilities

    probs = proba(texts)
    predicted = [loaded.labels[int(i)] for i in np.argmax(probs, axis=1)]
    rows = pd.DataFrame(
        {
            "id": ids,
            "text": texts,
            "predicted_label": predicted,
            "confidence": np.max(probs, axis=1),
            "target_label": [label or p for p in predicted],
        }
    )
    began = time.perf_counter()
    ctx = explain_rows(
        rows,
        loaded.labels,
        proba,
        spec.model_copy(update={"time_budget": None}),  # the report's budget: all of these
        seed,
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        max_length=length,
        long_text=loaded.long_text,
        batch_size=batch_size,
        target_column="target_label",
    )
    log.info(
        "explained %d text(s) with %s in %.1f s (%s)",
        len(texts),
        ", ".join(ctx["titles"].values()) or "no explainer",
        time.perf_counter() - began,
        loaded.backend,
    )
    if output_html is not None:
        with atomic_path(output_html) as staged:
            staged.write_text(render_page(ctx, source, loaded.backend), encoding="utf-8")
    return ctx
