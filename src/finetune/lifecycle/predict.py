"""Batch prediction: CSV or JSONL in, one row per input with class probabilities out.

The model comes from a directory saved by the train stage (``models/model``) or from the
registry (``models:/support_tickets@champion``, ``models:/support_tickets/3``,
``runs:/<id>/model``).

Behaviour for awkward inputs (documented in docs/export.md, tested):

- **empty** texts (missing, empty or only whitespace) are not sent to the model: their row is
  kept, ``status`` is ``empty`` and ``predicted``/``confidence``/``prob_*`` are empty (null).
- **overlong** texts are cut to ``max_length`` tokens the way training cut them
  (``model.long_text``: the head, the tail, or both ends) and predicted from those; their
  ``status`` is ``truncated``. Texts longer than ``max_length * CHARS_PER_TOKEN_CAP`` characters
  are cut (at the same ends) before tokenizing, so one huge input cannot stall a batch. A model
  trained with ``model.long_text: chunks`` reads all of every text, in windows of
  ``max_length`` batched like texts: ``status`` ``ok``.
- everything else has ``status`` ``ok``. Input order is kept; batches are sorted by length.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from finetune.core.errors import DataError
from finetune.core.io import atomic_path
from finetune.core.labels import prob_columns
from finetune.data.cleaning import column_texts
from finetune.modeling import truncation
from finetune.modeling.classifier import Classifier, effective_max_length, open_classifier

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl")
CHARS_PER_TOKEN_CAP = 20
STATUS_OK, STATUS_EMPTY, STATUS_TRUNCATED = "ok", "empty", "truncated"


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(f"format {fmt!r} is not supported: use one of {FORMATS}")
        return fmt
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    raise DataError(
        f"{path}: cannot tell the format from the extension {suffix!r}: "
        f"name it .csv or .jsonl, or pass --format {{csv,jsonl}}"
    )


def read_inputs(
    path: str | Path, text_column: str = "text", fmt: str | None = None
) -> pd.DataFrame:
    """The input table, all columns kept as strings; the text column must exist."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    kind = detect_format(path, fmt)
    try:
        if kind == "csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{path} is empty: expected a header with a {text_column!r} column"
        ) from exc
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as {kind}: {exc}") from exc
    if len(df.columns) == 0 and kind == "csv":
        raise DataError(f"{path} is empty: expected a header with a {text_column!r} column")
    if len(df) and text_column not in df.columns:
        raise no_text_column(path, text_column, list(df.columns))
    if text_column not in df.columns:
        df[text_column] = pd.Series(dtype=str)
    return df


def no_text_column(source: str | Path, text_column: str, columns: list[str]) -> DataError:
    """The error for input without its text column (local and Spark predict)."""
    return DataError(
        f"{source}: no column {text_column!r} (columns: {columns}); pass --text-column NAME"
    )


def predict_frame(
    df: pd.DataFrame,
    loaded: Classifier,
    text_column: str = "text",
    batch_size: int = 64,
    max_length: int | None = None,
) -> pd.DataFrame:
    """``df`` plus predicted, confidence, status and one ``prob_<label>`` column per class
    (the label's safe name, :func:`finetune.core.labels.safe_names`: ``prob_billing``,
    ``prob_C-fc2b42`` for ``C++``). A multi-label model: ``predicted`` is the label set joined
    by "|" ("" for none; each label at or above its threshold), ``prob_<label>`` each label's
    own probability and ``confidence`` the highest of them."""
    max_length = effective_max_length(loaded, max_length)
    texts = column_texts(df[text_column]) if len(df) else []
    char_cap = max_length * CHARS_PER_TOKEN_CAP
    status = np.array([STATUS_EMPTY if not t else STATUS_OK for t in texts], dtype=object)
    keep = [i for i, t in enumerate(texts) if t]
    clipped = [truncation.clip_chars(texts[i], char_cap, loaded.long_text) for i in keep]
    if clipped and not loaded.long_text.reads_all:
        counts = loaded.token_counts(clipped)
        for i, text, n in zip(keep, clipped, counts, strict=True):
            if n > max_length or len(text) < len(texts[i]):
                status[i] = STATUS_TRUNCATED
    began = time.perf_counter()
    preds = loaded.predict(clipped, batch_size, max_length)
    seconds = time.perf_counter() - began
    probs = np.full((len(texts), len(loaded.labels)), np.nan, dtype=np.float64)
    if keep:
        probs[keep] = preds.probabilities
    out = df.copy()
    predicted: list[str | None] = [None] * len(texts)
    confidence = np.full(len(texts), np.nan)
    decided = loaded.decide(preds.probabilities) if keep else []
    for row, p, label in zip(keep, preds.probabilities, decided, strict=True):
        predicted[row] = label
        confidence[row] = float(np.max(p))
    out["predicted"] = predicted
    out["confidence"] = confidence
    out["status"] = status
    columns = pd.DataFrame(probs, columns=prob_columns(loaded.labels), index=out.index)
    out = pd.concat([out, columns], axis=1)  # one block, however many classes
    log.info(
        "predicted %d texts in %.2f s with %s (%d empty, %d truncated to %d tokens)",
        len(keep),
        seconds,
        loaded.backend,
        int((status == STATUS_EMPTY).sum()),
        int((status == STATUS_TRUNCATED).sum()),
        max_length,
    )
    return out


def write_outputs(df: pd.DataFrame, path: str | Path | None, fmt: str | None = None) -> None:
    """CSV or JSONL (missing values empty / null); ``path`` None or "-": JSONL on stdout. A file
    is written through a temporary sibling renamed into place: on an error, what was there
    before stays."""
    if path in (None, "-"):
        _write_jsonl(df, sys.stdout)
        return
    kind = detect_format(path, fmt)
    with atomic_path(path) as staged:
        if kind == "csv":
            df.to_csv(staged, index=False)
        else:
            with staged.open("w", encoding="utf-8") as fh:
                _write_jsonl(df, fh)


def _write_jsonl(df: pd.DataFrame, fh: TextIO) -> None:
    for record in df.to_dict(orient="records"):
        clean = {
            k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()
        }
        fh.write(json.dumps(clean, ensure_ascii=False, default=str) + "\n")


def run_predict(
    source: str,
    input_path: str | Path,
    output_path: str | Path | None,
    text_column: str = "text",
    batch_size: int = 64,
    max_length: int | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    tracking_uri: str | None = None,
    log_dir: str | Path | None = None,
) -> pd.DataFrame:
    df = read_inputs(input_path, text_column, input_format)
    loaded = open_classifier(source, tracking_uri)
    out = predict_frame(df, loaded, text_column, batch_size, max_length)
    write_outputs(out, output_path, output_format)
    if log_dir is not None:
        log_predictions(log_dir, out, loaded, text_column)
    return out


def log_predictions(
    log_dir: str | Path, frame: pd.DataFrame, loaded: Classifier, text_column: str
) -> None:
    """Append ``predict_frame``'s output to the prediction log (``monitoring.predlog``)."""
    from finetune.monitoring import predlog

    probs = frame[prob_columns(loaded.labels)].to_numpy(dtype=np.float64)
    path = predlog.append(
        log_dir,
        column_texts(frame[text_column]) if len(frame) else [],
        probs,
        loaded.labels,
        loaded.source,
        frame["status"].tolist(),
        predicted=frame["predicted"].tolist(),
    )
    if path is not None:
        log.info("logged %d prediction(s) to %s", len(frame), path)
