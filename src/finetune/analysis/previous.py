"""The previous experiment's metrics (git HEAD, or the previous MLflow run) and the change."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


def _relative(path: str | Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return p.as_posix()
    return p.as_posix()


def metrics_at_git_head(metrics_path: str | Path) -> dict[str, Any] | None:
    """The evaluate metrics committed at git HEAD (``dvc.api.read`` at rev HEAD: the file as
    the dvc.lock of HEAD records it, from the DVC cache), or None when HEAD has none.

    This is the baseline `dvc metrics diff` compares the workspace with: in `dvc exp run`, HEAD
    is the experiment's baseline commit; after `dvc repro`, it is the last committed result. In
    the temporary copy of `dvc exp run --temp` the real repository (``DVC_ROOT``) is asked too.
    The file read is the evaluate stage's full metrics (an output; the DVC metrics file holds
    only the headline), so every figure of the comparison table is there.
    """
    import dvc.api
    from dvc.exceptions import DvcException

    rel = _relative(metrics_path)
    repos = [None, os.environ["DVC_ROOT"]] if os.environ.get("DVC_ROOT") else [None]
    for repo in repos:
        try:
            found = json.loads(dvc.api.read(rel, repo=repo, rev="HEAD"))
        except (FileNotFoundError, DvcException) as exc:  # not committed, not cached, no git
            log.debug("no metrics %s at HEAD of %s: %s", rel, repo or "the cwd", exc)
            continue
        if found:
            return dict(found)
    return None


def metrics_of_previous_run(current_run_id: str | None) -> tuple[dict[str, Any], str] | None:
    """Headline test metrics of the latest earlier MLflow run of this experiment."""
    import mlflow

    runs = mlflow.search_runs(
        filter_string="metrics.test_f1_macro > -1",
        order_by=["attributes.start_time DESC"],
        max_results=20,
        output_format="list",
    )
    for run in runs:
        if run.info.run_id == current_run_id:
            continue
        found = {
            key: run.data.metrics[f"test_{key}"]
            for key in HEADLINE
            if f"test_{key}" in run.data.metrics
        }
        return found, f"MLflow run {run.info.run_name or run.info.run_id}"
    return None


def previous_metrics(
    metrics_path: str | Path, mode: str, current_run_id: str | None
) -> tuple[dict[str, Any] | None, str]:
    """(metrics, where they came from) for the change-against-previous table."""
    if mode in ("git", "auto"):
        found = metrics_at_git_head(metrics_path)
        if found is not None:
            return found, "metrics at git HEAD (dvc.lock + DVC cache, as `dvc metrics diff`)"
    if mode in ("mlflow", "auto"):
        from mlflow.exceptions import MlflowException

        try:
            prev = metrics_of_previous_run(current_run_id)
        except MlflowException as exc:  # the server went away mid-stage: the report still renders
            log.warning("could not read the previous MLflow run: %s", exc)
            prev = None
        if prev is not None:
            return prev[0], f"the previous {prev[1]} (no committed metrics at git HEAD)"
    return None, "no previous experiment found (no committed metrics, no earlier MLflow run)"


def compare_headline(current: dict[str, Any], previous: dict[str, Any] | None) -> pd.DataFrame:
    rows = []
    for key in (*HEADLINE, "ece_temperature_scaled"):
        now = current.get(key)
        if now is None:
            continue
        before = previous.get(key) if previous else None
        rows.append(
            {
                "metric": key,
                "current": float(now),
                "previous": None if before is None else float(before),
                "change": None if before is None else float(now) - float(before),
                "baseline_tfidf": (current.get("baseline") or {}).get(key),
            }
        )
    return pd.DataFrame(rows)


HEADLINE = ("accuracy", "f1_macro", "f1_weighted", "mcc", "roc_auc_ovr", "log_loss", "ece")
LOWER_IS_BETTER = {"log_loss", "ece", "ece_temperature_scaled"}
