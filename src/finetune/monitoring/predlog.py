"""The prediction log: what a model predicted in use, as Parquet partitioned by day.

``<log dir>/date=YYYY-MM-DD/part-<time>-<pid>-<random>.parquet``, one file per call of
``finetune predict --log`` or per request of a served ONNX model (``FINETUNE_PREDICTION_LOG``).
Each file is written under a temporary name and renamed, so a reader never sees half a file
and any number of writers can append at once. Columns: time (UTC), text, predicted,
confidence, probabilities and labels (lists, in the same order), model, status.
``read_log`` reads a time window back with pyarrow's dataset reader, pruning by day.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finetune.core.errors import DataError

log = logging.getLogger(__name__)

ENV_VAR = "FINETUNE_PREDICTION_LOG"  # a served model appends to this directory when set
COLUMNS = ("time", "text", "predicted", "confidence", "probabilities", "labels", "model", "status")


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("time", pa.timestamp("us", tz="UTC")),
            ("text", pa.string()),
            ("predicted", pa.string()),
            ("confidence", pa.float64()),
            ("probabilities", pa.list_(pa.float64())),
            ("labels", pa.list_(pa.string())),
            ("model", pa.string()),
            ("status", pa.string()),
        ]
    )


def append(
    log_dir: str | Path,
    texts: Sequence[str],
    probs: np.ndarray,
    labels: Sequence[str],
    model: str,
    status: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Path | None:
    """Write one part file for these predictions (rows of ``probs`` may be NaN: an empty text
    that got no prediction); returns its path (None for no texts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not len(texts):
        return None
    now = now or datetime.now(UTC)
    valid = ~np.isnan(probs).any(axis=1) if len(probs) else np.zeros(0, bool)
    top = np.where(valid, np.nanmax(np.where(valid[:, None], probs, 0.0), axis=1), np.nan)
    predicted = [
        labels[int(i)] if ok else None for i, ok in zip(probs.argmax(axis=1), valid, strict=True)
    ]
    table = pa.Table.from_pydict(
        {
            "time": [now] * len(texts),
            "text": list(texts),
            "predicted": predicted,
            "confidence": [float(c) if ok else None for c, ok in zip(top, valid, strict=True)],
            "probabilities": [
                [float(x) for x in row] if ok else None
                for row, ok in zip(probs, valid, strict=True)
            ],
            "labels": [list(labels)] * len(texts),
            "model": [model] * len(texts),
            "status": list(status) if status is not None else ["ok"] * len(texts),
        },
        schema=_schema(),
    )
    day = Path(log_dir) / f"date={now.strftime('%Y-%m-%d')}"
    day.mkdir(parents=True, exist_ok=True)
    name = f"part-{now.strftime('%H%M%S%f')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = day / f".{name}.tmp"
    pq.write_table(table, tmp)
    tmp.replace(day / name)
    return day / name


def read_log(
    log_dir: str | Path, since: timedelta | None, now: datetime | None = None
) -> pd.DataFrame:
    """The logged rows newer than ``now - since`` (all with ``since`` None), oldest first."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    log_dir = Path(log_dir)
    if not log_dir.is_dir() or not any(log_dir.glob("date=*/*.parquet")):
        raise DataError(
            f"prediction log {log_dir} holds no Parquet files: log predictions with "
            "`finetune predict --log` (or FINETUNE_PREDICTION_LOG for a served ONNX model)"
        )
    day = pa.schema([("date", pa.string())])
    dataset = ds.dataset(  # files starting with "." (being written) are skipped
        log_dir,
        format="parquet",
        schema=_schema().append(day.field(0)),
        partitioning=ds.partitioning(day, flavor="hive"),
    )
    if since is None:
        table = dataset.to_table()
    else:
        cutoff = (now or datetime.now(UTC)) - since
        days = (ds.field("date") >= cutoff.strftime("%Y-%m-%d")) & (ds.field("time") >= cutoff)
        table = dataset.to_table(filter=days)  # whole days outside the window are not read
    frame = table.to_pandas().sort_values("time", kind="stable").reset_index(drop=True)
    log.info(
        "prediction log %s: %d row(s)%s",
        log_dir,
        len(frame),
        f" in the last {since}" if since else "",
    )
    return frame[list(COLUMNS)]
