"""MLflow wiring: one run per trained model, shared by train, evaluate and error_analysis.

The tracking store defaults to SQLite at ``<repo>/.mlflow/mlflow.db`` with artifacts in
``<repo>/.mlflow/artifacts``. Inside ``dvc exp run --temp/--queue`` the stage runs in a temporary
copy; DVC sets ``DVC_ROOT`` to the real repository, so every experiment lands in one store.
``tracking.uri`` or, when that is null, ``MLFLOW_TRACKING_URI`` points it at a tracking server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from finetune.core.io import read_json
from finetune.core.schema import TrackingConfig
from finetune.core.secrets import mask_url
from finetune.core.store import artifact_location, tracking_uri

log = logging.getLogger(__name__)

RUN_ID_TAG = "finetune.train_run_id"


def is_missing(exc: Exception) -> bool:
    """True when an MLflow error says the run, model or version does not exist (as opposed
    to the store failing to answer, which must never be read as "absent")."""
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def setup(tracking_cfg: TrackingConfig) -> str:
    """Point mlflow at the store and make sure the experiment exists; returns its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from finetune.core.store import bound_retries

    bound_retries()
    uri = tracking_uri(tracking_cfg.uri)
    mlflow.set_tracking_uri(uri)
    name = tracking_cfg.experiment_name
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = mlflow.create_experiment(
                name,
                artifact_location=artifact_location(uri),
                # Opens on "Training runs" (not the GenAI overview) in the MLflow 3 UI.
                tags={"mlflow.experimentKind": "custom_model_development"},
            )
        except MlflowException as exc:
            # two stages at once (dvc queue start -j 2) both found it missing: the other made it
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment_id = mlflow.get_experiment_by_name(name).experiment_id
    else:
        experiment_id = experiment.experiment_id
    log.info("MLflow: %s, experiment %r", mask_url(uri), name)
    return experiment_id


def run_name() -> str:
    """The DVC experiment name inside ``dvc exp run``; else ``repro-<commit>-<UTC time>``."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    commit = git_commit()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"repro-{commit[:7] if commit else 'nogit'}-{stamp}"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 1}} -> {"train.lr": "1"} (lists joined), for mlflow.log_params."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = ",".join(map(str, value))
        else:
            flat[name] = str(value)
    return flat


def git_commit(cwd: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def data_version(lock_path: str | Path, stages: tuple[str, ...]) -> dict[str, str]:
    """Hashes of the named stages' data deps/outs from dvc.lock: {"preprocess.deps.<path>": md5}.

    DVC writes dvc.lock after each stage, so by the time train runs it holds the hashes of the
    exact data preprocess and augment produced.
    """
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return {}
    lock = yaml.safe_load(lock_path.read_text()) or {}
    found: dict[str, str] = {}
    for stage in stages:
        entry = lock.get("stages", {}).get(stage, {})
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                path = item.get("path", "")
                if path.startswith(("src/", "stages/")) or "md5" not in item:
                    continue
                found[f"{stage}.{kind}.{tag_path(path)}"] = str(item["md5"])
    return found


_TAG_CHARS = re.compile(r"[^\w.\- ]")


def tag_path(path: str) -> str:
    """``path`` as part of an MLflow tag key. MLflow refuses keys that are not their own
    normalised path (``../x``, ``/abs``, ``a//b``) or hold characters other than letters,
    digits, ``_ . - /``, space and colon; a data path outside the repository (``../../d``, an
    absolute or symlinked one, ``C++ data (v2)``) becomes ``up/../d``-style segments with such
    characters as ``_`` and a short hash of the exact path, so keys stay distinct."""
    norm = posixpath.normpath(path)
    if (
        norm == path
        and not norm.startswith(("..", "/"))
        and not _TAG_CHARS.search(path.replace("/", "").replace(":", ""))
    ):
        return path
    segments = ["up" if s == ".." else s for s in norm.split("/") if s not in ("", ".")]
    safe = "/".join(_TAG_CHARS.sub("_", s) for s in segments) or "root"
    return f"{safe}-{hashlib.md5(path.encode()).hexdigest()[:8]}"


def version_digest(hashes: Mapping[str, str]) -> str:
    return hashlib.md5(
        "".join(f"{k}={v};" for k, v in sorted(hashes.items())).encode()
    ).hexdigest()[:12]


def run_tags(lock_path: str | Path = "dvc.lock") -> dict[str, str]:
    tags: dict[str, str] = {}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git_commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    hashes = data_version(lock_path, ("preprocess", "augment"))
    if hashes:
        tags["data.version"] = version_digest(hashes)
        tags.update({f"data.md5.{k}": v for k, v in hashes.items()})
    return tags


@contextmanager
def active_run(
    run_id: str | None, experiment_id: str, run_name: str | None = None
) -> Iterator[Any]:
    """Start (run_id None) or resume a run; end it FAILED on any exception and re-raise (or
    with the exception's ``mlflow_status``: a pruned tuning trial ends KILLED).

    If the store itself is what failed, ending the run fails too: that is logged, and the
    original error is the one raised.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name)
    try:
        yield run
    except BaseException as error:
        status = getattr(error, "mlflow_status", "FAILED")
        try:
            mlflow.end_run(status=status)
        except MlflowException as exc:
            log.warning("could not mark MLflow run %s %s: %s", run.info.run_id, status, exc)
        raise
    mlflow.end_run(status="FINISHED")


STAGE_ERROR_CHARS = 4000  # an MLflow tag value holds 8000 characters at most


@contextmanager
def train_run(
    run_info_path: str | Path, tracking_cfg: TrackingConfig, stage: str | None = None
) -> Iterator[Any]:
    """Resume the MLflow run the train stage opened, for evaluate, error_analysis and export.

    The id comes from the train stage's run-info output, also when DVC restored that output
    from its cache. If the run is not in the current store (another machine or store), a new
    run is started, tagged with the original id, and a warning says so.

    ``stage`` (default: the stage :func:`finetune.core.runner.run_stage` is running) records
    its outcome on the run: ``<stage>.status`` is ``succeeded`` or ``failed``, with the error in
    ``<stage>.error``. A failing stage leaves the training run's own status as train left it
    (FINISHED): its model is trained and registered whatever a later stage does. The error is
    re-raised.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from finetune.core.runner import current_stage

    stage = stage or current_stage() or "stage"
    experiment_id = setup(tracking_cfg)
    original = str(read_json(run_info_path)["run_id"])
    run_id: str | None = original
    try:
        status = mlflow.get_run(original).info.status
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        log.warning(
            "MLflow run %s (from %s) is not in %s; logging into a new run instead",
            original,
            run_info_path,
            mask_url(mlflow.get_tracking_uri()),
        )
        run_id = None
    if run_id is None:  # a run of this stage's own: it fails with the stage
        with active_run(None, experiment_id) as run:
            mlflow.set_tags({**run_tags(), RUN_ID_TAG: original})
            with _stage_outcome(run, stage):
                yield run
        return
    run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id)
    try:
        if os.environ.get("DVC_EXP_NAME"):
            mlflow.set_tag("dvc.experiment", os.environ["DVC_EXP_NAME"])
        with _stage_outcome(run, stage):
            yield run
    finally:
        try:
            mlflow.end_run(status=status)  # train's status, not this stage's
        except MlflowException as exc:
            log.warning("could not end MLflow run %s: %s", run.info.run_id, exc)


@contextmanager
def _stage_outcome(run: Any, stage: str) -> Iterator[None]:
    """``<stage>.status`` (and ``<stage>.error`` on failure) on ``run``; errors re-raised."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        yield
    except BaseException as error:
        message = f"{type(error).__name__}: {error}"[:STAGE_ERROR_CHARS]
        try:
            client.set_tag(run.info.run_id, f"{stage}.status", "failed")
            client.set_tag(run.info.run_id, f"{stage}.error", message)
        except MlflowException as exc:
            log.warning("could not record %s's failure on run %s: %s", stage, run.info.run_id, exc)
        raise
    client.set_tag(run.info.run_id, f"{stage}.status", "succeeded")
    if f"{stage}.error" in client.get_run(run.info.run_id).data.tags:
        client.delete_tag(run.info.run_id, f"{stage}.error")  # from an earlier failed attempt
