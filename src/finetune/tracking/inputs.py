"""The data and augment reports a trained model's MLflow run records as its inputs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finetune.core.io import read_json
from finetune.core.labels import safe_names
from finetune.core.schema import PathsConfig

log = logging.getLogger(__name__)


# Files logged to MLflow by log_to_mlflow, when they exist.
ARTIFACT_KEYS = (
    "preprocess_report",
    "preprocess_report_md",
    "preprocess_class_counts",
    "token_length_plot",
    "token_length_image",
    "augment_report",
    "augment_samples",
)


def _numeric(data: Mapping[str, Any], prefix: str) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(_numeric(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def _by_safe_name(report: Mapping[str, Any]) -> dict[str, Any]:
    """The augment report with its per-class counts keyed by the labels' safe names."""
    out = dict(report)
    labels = set(report.get("by_class", {}))
    for per_method in report.get("by_method_and_class", {}).values():
        labels |= set(per_method)
    names = safe_names(sorted(labels))
    if "by_class" in out:
        out["by_class"] = {names[k]: v for k, v in out["by_class"].items()}
    if "by_method_and_class" in out:
        out["by_method_and_class"] = {
            m: {names[k]: v for k, v in per.items()}
            for m, per in out["by_method_and_class"].items()
        }
    return out


def mlflow_payload(paths: PathsConfig) -> tuple[dict[str, float], list[Path]]:
    """Numeric metrics and existing report files of preprocess and augment."""
    metrics: dict[str, float] = {}
    for key, prefix in (("preprocess_report", "data"), ("augment_report", "augment")):
        path = Path(getattr(paths, key))
        if path.is_file():
            report = read_json(path)
            if key == "augment_report":  # counts keyed by label: the labels' safe names
                report = _by_safe_name(report)
            metrics.update(_numeric(report, prefix))
    counts_path = Path(paths.preprocess_class_counts)
    if counts_path.is_file():
        counts = read_json(counts_path)
        labels = sorted({label for split in counts.values() for label in split})
        names = safe_names(labels)
        for split, per_label in counts.items():
            for label, n in per_label.items():
                metrics[f"data.class_counts.{split}.{names[label]}"] = float(n)
    files = [Path(getattr(paths, k)) for k in ARTIFACT_KEYS]
    return metrics, [f for f in files if f.is_file()]


def log_to_mlflow(paths: PathsConfig) -> None:
    """Log the data and augmentation reports into the active MLflow run (see module doc)."""
    import mlflow

    metrics, files = mlflow_payload(paths)
    if metrics:
        mlflow.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()})
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="data")
    log.info("logged %d data metrics and %d report files to MLflow", len(metrics), len(files))
