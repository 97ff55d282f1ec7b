"""Trials as DVC experiments: queued with ``dvc exp run --queue``, run by DVC's queue (one
temporary copy each, ``--run-all -j``), read back from ``dvc exp show``.

A trial that fails (pruned ones too: the train stage stops with an error, so DVC runs neither
evaluate nor error_analysis) stays in the queue as Failed; ``dvc exp show`` lists it with its
params and ``dvc queue logs <name>`` shows why.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.core.errors import PipelineError
from finetune.lifecycle.dvccli import dvc_command, dvc_env

log = logging.getLogger(__name__)

# A killed queue worker lets go of the repository's lock a few seconds after ``dvc queue kill``:
# how long to wait for that (the experiment no longer Running, the lock free).
LOCK_WAIT_S = 60.0

QUEUE_LINE = re.compile(r"^(?P<task>[0-9a-f]{7})\s+(?P<name>\S+)\s+.*\s(?P<status>\w+)\s*$")


class QueueError(PipelineError):
    """DVC could not queue or run the trials."""


@dataclass
class Experiment:
    """One DVC experiment as ``dvc exp show`` has it."""

    name: str
    failed: bool
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


def trial_name(study_name: str, number: int) -> str:
    return f"{study_name}-trial-{number}"


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run(
        dvc_command(*args),
        cwd=root,
        env=dvc_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise QueueError(f"`dvc {' '.join(args[:3])} ...` failed: {' '.join(detail[-3:])}")
    return proc.stdout


def queue(root: Path, name: str, overrides: Sequence[str], targets: Sequence[str]) -> None:
    """``dvc exp run --queue -n <name> -S <override> ... <targets>``, without DVC's run cache:
    a trial always trains (reporting to its Optuna trial, opening its MLflow child run), even
    when an earlier experiment ran the same params. Through DVC's Python API, since the
    command line of ``dvc exp run`` has no ``--no-run-cache``. While another DVC process
    (a worker that is being killed) holds the repository's lock, it waits up to
    ``LOCK_WAIT_S``."""
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo

    logging.getLogger("kombu").setLevel(logging.ERROR)  # "No hostname was supplied": its default
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            with Repo(str(root)) as repo:
                repo.experiments.run(
                    targets=list(targets),
                    params=list(overrides),
                    queue=True,
                    name=name,
                    run_cache=False,
                )
            return
        except LockError as exc:
            if time.monotonic() >= deadline:
                raise QueueError(
                    f"cannot queue DVC experiment {name}: the repository stayed locked for "
                    f"{LOCK_WAIT_S:.0f} s ({exc}); stop the other DVC process and run again"
                ) from exc
            log.info("DVC's repository lock is held; trying again to queue %s", name)
            time.sleep(2)
        except DvcException as exc:
            raise QueueError(f"cannot queue DVC experiment {name}: {exc}") from exc


def run_all(root: Path, jobs: int, env: Mapping[str, str]) -> None:
    """Run every queued experiment, ``jobs`` at a time, and wait for them. The queue's
    workers get ``env``; each experiment's log goes to this process's output."""
    command = dvc_command("exp", "run", "--run-all", "-j", str(jobs))
    proc = subprocess.run(command, cwd=root, env=dvc_env(**env), check=False)
    if proc.returncode != 0:  # a failed experiment is not this: DVC exits 0 and lists it
        raise QueueError(f"`dvc exp run --run-all` exited with {proc.returncode}")


def wait_settled(root: Path, names: Sequence[str], timeout_s: float) -> None:
    """Until DVC's queue has collected every one of ``names`` (Success or Failed): ``--run-all``
    can return while a very short experiment is still being collected."""
    if not _wait_states(root, names, ("Success", "Failed"), timeout_s):
        log.warning("DVC's queue has not collected %s after %.0f s", ", ".join(names), timeout_s)


def _wait_states(
    root: Path, names: Sequence[str], states: Sequence[str | None], timeout_s: float
) -> bool:
    """Until ``dvc queue status`` gives each of ``names`` one of ``states`` (None: not listed);
    False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = queue_status(root)
        if all(status.get(n) in states for n in names):
            return True
        time.sleep(1)
    return False


def queue_status(root: Path) -> dict[str, str]:
    """{experiment name: Queued | Running | Success | Failed} from ``dvc queue status``."""
    out: dict[str, str] = {}
    for line in _dvc(root, "queue", "status").splitlines():
        match = QUEUE_LINE.match(line.strip())
        if match:
            out[match["name"]] = match["status"]
    return out


def stop(root: Path, names: Sequence[str]) -> None:
    """Kill the running and drop the queued experiments among ``names`` (a stale study's)."""
    status = queue_status(root)
    running = [n for n in names if status.get(n) == "Running"]
    queued = [n for n in names if status.get(n) == "Queued"]
    if running:
        log.warning("killing queued experiment(s) still running: %s", ", ".join(running))
        try:
            _dvc(root, "queue", "kill", "--force", *running)
        except QueueError:
            still = [n for n in running if queue_status(root).get(n) == "Running"]
            if still:  # not an experiment that finished between the two calls
                raise
        # until their workers have let go (of the repository's lock too)
        if not _wait_states(root, running, ("Success", "Failed", "Queued", None), LOCK_WAIT_S):
            log.warning("killed experiment(s) still listed as running: %s", ", ".join(running))
    if queued:
        _dvc(root, "queue", "remove", *queued)


def others_queued(root: Path, prefix: str) -> list[str]:
    """Queued experiments that are not this study's (``--run-all`` would run them too)."""
    return [
        name
        for name, state in queue_status(root).items()
        if state == "Queued" and not name.startswith(prefix)
    ]


def show(root: Path) -> dict[str, Experiment]:
    """Every experiment of the workspace's baseline, by name (``dvc exp show --json``)."""
    rows = json.loads(_dvc(root, "exp", "show", "--json"))
    found: dict[str, Experiment] = {}
    for baseline in rows:
        for group in baseline.get("experiments") or []:
            for rev in group.get("revs") or []:
                if not rev.get("name"):
                    continue
                data = rev.get("data") or {}
                found[rev["name"]] = Experiment(
                    name=rev["name"],
                    failed=bool(rev.get("error")),
                    params=(data.get("params") or {}).get("params.yaml", {}).get("data", {}),
                    metrics={k: v.get("data", {}) for k, v in (data.get("metrics") or {}).items()},
                )
    return found


def log_tail(root: Path, name: str, lines: int = 5) -> str:
    """The last lines of a queued experiment's log (why it failed)."""
    try:
        text = _dvc(root, "queue", "logs", name)
    except QueueError as exc:
        return str(exc)
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
