"""The prediction log: what a model predicted in use, as Parquet partitioned by day.

``<log dir>/date=YYYY-MM-DD/part-<time>-<pid>-<random>.parquet``. ``finetune predict --log``
writes one file per call (:func:`append`). A served ONNX model (``FINETUNE_PREDICTION_LOG``)
buffers its requests in a :class:`LogWriter`, whose background thread writes them as one file
once ``monitor.log_flush_rows`` rows are held or the oldest is ``monitor.log_flush_seconds`` old,
and at shutdown; a request never waits for a write. Each file is written under a temporary name
and renamed, so a reader never sees half a file and any number of writers can append at once.
Columns: time (UTC), text, predicted, confidence, probabilities and labels (lists, in the same
order), model, status.

Retention (``monitor.log_retention_days``): day partitions older than that many days are
deleted, texts included, by :func:`expire`, which the served model's writer runs after each
write and ``finetune monitor --log`` before it reads; :func:`read_log` also ignores rows older
than the retention inside the oldest day kept. ``read_log`` reads a time window back with
pyarrow's dataset reader, pruning by day.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
import time
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


def _table(
    texts: Sequence[str],
    probs: np.ndarray,
    labels: Sequence[str],
    model: str,
    status: Sequence[str] | None,
    now: datetime,
    predicted: Sequence[str | None] | None = None,
) -> Any:
    """``predicted``: what the model answered (a multi-label model's label set, "a|b");
    None: the most likely class."""
    import pyarrow as pa

    valid = ~np.isnan(probs).any(axis=1) if len(probs) else np.zeros(0, bool)
    top = np.where(valid, np.nanmax(np.where(valid[:, None], probs, 0.0), axis=1), np.nan)
    if predicted is None:
        chosen = probs.argmax(axis=1)
        predicted = [labels[int(i)] if ok else None for i, ok in zip(chosen, valid, strict=True)]
    else:
        predicted = [p if ok else None for p, ok in zip(predicted, valid, strict=True)]
    return pa.Table.from_pydict(
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


def _write(log_dir: str | Path, table: Any, day: str, stamp: datetime) -> Path:
    import pyarrow.parquet as pq

    directory = Path(log_dir) / f"date={day}"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{stamp.strftime('%H%M%S%f')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = directory / f".{name}.tmp"
    pq.write_table(table, tmp)
    tmp.replace(directory / name)
    return directory / name


def append(
    log_dir: str | Path,
    texts: Sequence[str],
    probs: np.ndarray,
    labels: Sequence[str],
    model: str,
    status: Sequence[str] | None = None,
    now: datetime | None = None,
    predicted: Sequence[str | None] | None = None,
) -> Path | None:
    """Write one part file for these predictions (rows of ``probs`` may be NaN: an empty text
    that got no prediction); returns its path (None for no texts)."""
    if not len(texts):
        return None
    now = now or datetime.now(UTC)
    table = _table(texts, probs, labels, model, status, now, predicted)
    return _write(log_dir, table, f"{now:%Y-%m-%d}", now)


def expire(log_dir: str | Path, retention_days: int | None, now: datetime | None = None) -> int:
    """Delete the day partitions older than ``retention_days`` (None: keep everything); returns
    how many were deleted."""
    if retention_days is None or not Path(log_dir).is_dir():
        return 0
    oldest_kept = f"date={((now or datetime.now(UTC)) - timedelta(days=retention_days)):%Y-%m-%d}"
    expired = sorted(d for d in Path(log_dir).glob("date=*") if d.is_dir() and d.name < oldest_kept)
    for directory in expired:
        shutil.rmtree(directory)
    if expired:
        log.info(
            "prediction log %s: deleted %d day(s) older than %d days (%s to %s; "
            "monitor.log_retention_days)",
            log_dir,
            len(expired),
            retention_days,
            expired[0].name.removeprefix("date="),
            expired[-1].name.removeprefix("date="),
        )
    return len(expired)


class LogWriter:
    """Buffers predictions and writes them from a background thread: one Parquet file once
    ``flush_rows`` rows are held or the oldest is ``flush_seconds`` old, and at :meth:`close`
    (registered to run at interpreter exit). A write that fails is logged as an error with the
    rows it lost; the requests that were logged are not failed after the fact."""

    def __init__(
        self,
        log_dir: str | Path,
        flush_rows: int,
        flush_seconds: float,
        retention_days: int | None = None,
    ) -> None:
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError(
                f"prediction log: flush_rows {flush_rows} must be >= 1 and flush_seconds "
                f"{flush_seconds} > 0 (monitor.log_flush_rows, monitor.log_flush_seconds)"
            )
        self.log_dir = Path(log_dir)
        self.flush_rows, self.flush_seconds = flush_rows, float(flush_seconds)
        self.retention_days = retention_days
        self._pending: list[Any] = []
        self._rows = 0
        self._oldest: float | None = None  # monotonic time the oldest pending row came in
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def append(
        self,
        texts: Sequence[str],
        probs: np.ndarray,
        labels: Sequence[str],
        model: str,
        status: Sequence[str] | None = None,
        now: datetime | None = None,
        predicted: Sequence[str | None] | None = None,
    ) -> None:
        if not len(texts):
            return
        table = _table(texts, probs, labels, model, status, now or datetime.now(UTC), predicted)
        with self._wake:
            if self._closed:
                raise RuntimeError(f"prediction log {self.log_dir}: the writer is closed")
            self._pending.append(table)
            self._rows += table.num_rows
            if self._oldest is None:  # the thread now waits flush_seconds, not for ever
                self._oldest = time.monotonic()
                self._wake.notify()
            elif self._rows >= self.flush_rows:
                self._wake.notify()

    def _due(self) -> bool:
        if self._closed or self._rows >= self.flush_rows:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due():
                    waited = 0.0 if self._oldest is None else time.monotonic() - self._oldest
                    self._wake.wait(None if self._oldest is None else self.flush_seconds - waited)
                pending, self._pending, self._rows, self._oldest = self._pending, [], 0, None
                closing = self._closed
            if pending:
                self._write(pending)
            if closing:
                return

    def _write(self, tables: list[Any]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = pa.concat_tables(tables)
        try:
            days = pc.strftime(table.column("time"), format="%Y-%m-%d")
            for day in pc.unique(days).to_pylist():
                _write(self.log_dir, table.filter(pc.equal(days, day)), day, datetime.now(UTC))
            expire(self.log_dir, self.retention_days)
        except OSError as exc:
            log.error(
                "prediction log %s: could not write %d buffered prediction(s), they are lost: %s",
                self.log_dir,
                table.num_rows,
                exc,
            )

    def close(self) -> None:
        """Write what is buffered and stop the thread (idempotent)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        atexit.unregister(self.close)


def read_log(
    log_dir: str | Path,
    since: timedelta | None,
    now: datetime | None = None,
    retention_days: int | None = None,
) -> pd.DataFrame:
    """The logged rows newer than ``now - since`` (all with ``since`` None), oldest first.

    With ``retention_days``, the older day partitions are deleted first (:func:`expire`) and
    rows older than the retention are ignored, whatever ``since`` says."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    log_dir = Path(log_dir)
    now = now or datetime.now(UTC)
    if retention_days is not None:
        expire(log_dir, retention_days, now)
        kept = timedelta(days=retention_days)
        since = kept if since is None else min(since, kept)
    if not log_dir.is_dir() or not any(log_dir.glob("date=*/*.parquet")):
        kept = f" (days older than {retention_days} are deleted)" if retention_days else ""
        raise DataError(
            f"prediction log {log_dir} holds no Parquet files{kept}: log predictions with "
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
        cutoff = now - since
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
