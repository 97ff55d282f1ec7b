"""Checkpoints: where they live, which one to resume from, and the MLflow run they belong to."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from finetune.core.io import file_md5
from finetune.core.schema import PathsConfig, PipelineConfig
from finetune.core.store import project_root
from finetune.tracking import runs as tracking
from finetune.training.hardware import dist_info

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
MLFLOW_RUN_FILE = "mlflow_run.json"  # in the checkpoint dir: the run a resumed training continues
PENDING_METRICS_FILE = "pending_metrics.jsonl"  # metric points the store did not take yet


# train.* options that do not change what is learned: not part of the checkpoint key.
NOT_IN_CHECKPOINT_KEY = ("num_threads", "logging_steps", "keep_checkpoints", "progress_bar")


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` (trainer_state.json is written last)."""
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def latest_checkpoint_anywhere(root: str | Path) -> Path | None:
    """The newest complete checkpoint under any ``<root>/<key>/``."""
    found = [c for d in Path(root).glob("*/") if (c := latest_checkpoint(d)) is not None]
    return max(found, key=lambda c: c.stat().st_mtime) if found else None


def drop_incomplete_checkpoints(directory: Path, latest: Path | None) -> None:
    """Remove checkpoint dirs newer than the newest complete one (a kill mid-save)."""
    if not directory.is_dir():
        return
    newest = int(latest.name.split("-")[1]) if latest else -1
    for child in directory.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and int(match.group(1)) > newest:
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", child)
            shutil.rmtree(child, ignore_errors=True)


def checkpoint_key(cfg: PipelineConfig, data_files: list[Path]) -> str:
    """Hash of everything that determines the trained model: seed, model, train, data."""
    payload = {
        "seed": cfg.seed,
        "model": cfg.model.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json", exclude=set(NOT_IN_CHECKPOINT_KEY)),
        "data": {p.name: file_md5(p) for p in data_files},
        "world_size": dist_info()[1],
    }
    return hashlib.md5(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resumable_run_id(checkpoint_dir: Path) -> str | None:
    """The MLflow run an interrupted training of the same key opened (if still in the store)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    path = checkpoint_dir / MLFLOW_RUN_FILE
    if not path.is_file() or latest_checkpoint(checkpoint_dir) is None:
        return None
    run_id = str(json.loads(path.read_text())["run_id"])
    try:
        mlflow.get_run(run_id)
    except MlflowException as exc:
        if not tracking.is_missing(exc):
            raise
        log.warning("MLflow run %s of the interrupted training is not in this store", run_id)
        return None
    log.info("continuing MLflow run %s of the interrupted training", run_id)
    return run_id


def checkpoint_root(paths: PathsConfig) -> Path:
    """Where checkpoints live: ``paths.checkpoints_dir``, relative to the project root.

    Not a DVC output, so `dvc repro` does not delete it before rerunning train; inside
    `dvc exp run --temp` DVC_ROOT points it back at the real repository.
    """
    root = Path(paths.checkpoints_dir)
    return root if root.is_absolute() else project_root() / root
