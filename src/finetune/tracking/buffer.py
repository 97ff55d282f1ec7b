"""Metric points that survive an unreachable tracking store.

Training must not stop, or lose what it measured, because the MLflow server went away for a
while. :class:`MetricsLog` sends a run's metric points in batches; when the store does not
answer it keeps them, in memory and in a JSONL file next to the checkpoints, and sends them
(with their original step and time) as soon as it answers again: later in the same process, or
in the rerun that resumes the training from its checkpoint. While the store is down, sending is
retried at most every ``retry_after_s`` seconds, so a training step never waits long for it.
Once training is over, :meth:`MetricsLog.drain` keeps trying for a bounded time
(``tracking.outage_wait_s``), so a server that restarts during training costs nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BATCH = 1000  # MLflow's limit of metrics per log_batch call


class MetricsLog:
    def __init__(self, run_id: str, pending_path: Path, retry_after_s: float = 30.0) -> None:
        self.run_id = run_id
        self.pending_path = Path(pending_path)
        self.retry_after_s = retry_after_s
        self.pending: list[dict[str, Any]] = self._read_pending()
        self.down_since: float | None = None
        self._last_try = 0.0
        self.last_error: str | None = None
        if self.pending:
            log.info(
                "%d metric point(s) of run %s from an earlier attempt wait in %s",
                len(self.pending),
                run_id,
                self.pending_path,
            )

    def _read_pending(self) -> list[dict[str, Any]]:
        if not self.pending_path.is_file():
            return []
        lines = self.pending_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _write_pending(self) -> None:
        from finetune.core.io import atomic_path

        with atomic_path(self.pending_path) as tmp:
            tmp.write_text("".join(json.dumps(p) + "\n" for p in self.pending))

    @staticmethod
    def _answers(uri: str) -> bool:
        """A quick look (2 s at most) before paying for the client's retries again."""
        from finetune.core.store import TrackingUnavailable, check_uri

        try:
            check_uri(uri, timeout_s=2.0)
        except TrackingUnavailable:
            return False
        return True

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue ``metrics`` at ``step`` and try to send everything queued."""
        now = int(time.time() * 1000)
        self.pending.extend(
            {"key": k, "value": float(v), "timestamp": now, "step": int(step)}
            for k, v in metrics.items()
        )
        self.flush()

    def drain(self, budget_s: float, every_s: float = 2.0) -> bool:
        """Send until nothing is left, trying every ``every_s`` seconds for at most
        ``budget_s`` (a server restarting); True when everything was sent."""
        deadline = time.monotonic() + budget_s
        if self.flush(force=True):
            return True
        log.warning(
            "MLflow still does not answer: waiting up to %.0f s for it (tracking.outage_wait_s) "
            "before giving up on sending %d metric point(s)",
            budget_s,
            len(self.pending),
        )
        while time.monotonic() < deadline:
            time.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
            if self.flush(force=True):
                return True
        return False

    def flush(self, force: bool = False) -> bool:
        """Send the queued points; True when none is left. While the store is known to be
        down, only every ``retry_after_s`` seconds (or when ``force``)."""
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if not self.pending:
            return True
        waiting = self.down_since is not None and not force
        if waiting and time.monotonic() - self._last_try < self.retry_after_s:
            self._write_pending()
            return False
        self._last_try = time.monotonic()
        client = MlflowClient()
        if self.down_since is not None and not self._answers(client.tracking_uri):
            self._write_pending()
            return False
        try:
            while self.pending:
                chunk = self.pending[:BATCH]
                client.log_batch(self.run_id, metrics=[Metric(**p) for p in chunk])
                del self.pending[:BATCH]
        except MlflowException as exc:
            self.last_error = str(exc).splitlines()[0][:300]
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.warning(
                    "MLflow does not answer (%s): metric points are kept in %s and sent when "
                    "it answers again; training goes on",
                    self.last_error,
                    self.pending_path,
                )
            self._write_pending()
            return False
        if self.down_since is not None:
            log.info("MLflow answers again: queued metric points sent")
            self.down_since = None
        self.pending_path.unlink(missing_ok=True)
        return True
