"""The registry lock: one file lock that every registry write and alias move holds.

``finetune retrain`` holds it for its whole run (append, ``dvc repro``, registration, gate,
ledger); ``finetune promote`` (the gate), ``finetune register`` and the train stage's
registration take it for what they do. So no two of them move ``champion``/``challenger`` at
once, and a promote during a retrain waits for it (``--wait``) or exits with
:data:`EXIT_LOCKED`.

The lock is a file (``retrain.lock_file``, relative to the repository root unless absolute;
``filelock``: an OS lock the kernel drops when the holder exits, also on a crash). A file lock
serializes the processes of ONE machine that use the same file: with the default tracking
store (sqlite inside the repository) that is every writer of the store. Clones on one machine
that share a store must set ``retrain.lock_file`` to the same absolute path. With a remote
tracking server the lock does not reach other machines: run the registry commands (retrain,
promote, register) from one machine, or two of them may still race; the gate then still
re-reads the champion before it moves it and stops when it changed (see ``registry.gate``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.schema import PipelineConfig

log = logging.getLogger(__name__)

EXIT_LOCKED = 75  # EX_TEMPFAIL: another registry command holds the lock; try again later


class RegistryLocked(PipelineError):
    """Another retrain, promote or registration holds the registry lock."""


def lock_path(cfg: PipelineConfig, root: str | Path | None = None) -> Path:
    """``retrain.lock_file`` under ``root`` (default: the working directory, which is the
    repository root for the stages and the ``finetune`` commands)."""
    return Path(root or Path.cwd()) / cfg.retrain.lock_file


def holder_file(lock_path: Path) -> Path:
    """Who holds the lock (pid, command, since when): next to it, for the message a second
    process sees."""
    return lock_path.with_name(lock_path.name + ".holder")


@contextmanager
def exclusive_lock(
    path: str | Path, timeout_s: float | None = 0, poll_s: float = 0.5
) -> Iterator[None]:
    """Hold the registry lock ``path``: wait up to ``timeout_s`` (None: as long as it takes),
    then raise RegistryLocked saying who holds it. Not reentrant: a function called while its
    caller holds the lock is told so (``locked=True``) instead of taking it again."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    holder = holder_file(path)
    if timeout_s is None or timeout_s:
        log.info(
            "waiting %s for %s if another retrain, promote or registration holds it",
            "as long as it takes" if timeout_s is None else f"up to {timeout_s:g} s",
            path,
        )
    try:
        lock.acquire(timeout=-1 if timeout_s is None else timeout_s, poll_interval=poll_s)
    except Timeout as exc:
        who = holder.read_text().strip() if holder.is_file() else "unknown process"
        raise RegistryLocked(
            f"another `finetune retrain`, `finetune promote` or registration is running ({who}; "
            f"lock {path}); "
            + (f"waited {timeout_s:g} s. " if timeout_s else "")
            + "Nothing was done: try again later, or pass --wait SECONDS to wait for it"
        ) from exc
    try:
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:3]))
        holder.write_text(
            f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}: {command}"
        )
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
