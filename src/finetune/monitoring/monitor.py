"""``finetune monitor``: a batch of texts seen in use against the model's training data.

:func:`analyse` computes everything from arrays (embeddings, probabilities) and returns the
summary; :func:`run_monitor` does the I/O around it: resolves the model version and its
cached baseline, embeds the batch, writes ``summary.json``, ``report.html`` and
``to_label.csv`` into one new folder (atomically), the last verdict to
``paths.monitor_latest``, and one MLflow run in the monitoring experiment, tagged with the
model version (whose ``monitor.last_*`` tags point back at it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finetune.core.errors import ConfigError, DataError
from finetune.core.schema import MonitorConfig, PipelineConfig
from finetune.monitoring import drift, performance, textstats
from finetune.monitoring import verdict as V
from finetune.monitoring.baseline import Baseline

log = logging.getLogger(__name__)

MIN_TEXTS = 5  # fewer non-empty texts cannot be compared at all
SUMMARY, REPORT, TO_LABEL = "summary.json", "report.html", "to_label.csv"


@dataclass
class Batch:
    texts: list[str]
    labels: list[str | None] | None  # given labels (None: no label column; an item None: blank)
    source: str
    rows: int  # rows read
    empty: int  # rows with an empty text, left out


def batch_from_frame(
    df: pd.DataFrame,
    text_column: str,
    label_column: str | None,
    source: str,
    max_texts: int,
    seed: int,
) -> Batch:
    """The non-empty texts (and labels) of ``df``; at most ``max_texts`` (a seeded sample)."""
    from finetune.data.cleaning import column_texts

    if text_column not in df.columns:
        raise DataError(
            f"{source}: no column {text_column!r} (columns: {list(df.columns)}); "
            "pass --text-column NAME"
        )
    if label_column is not None and label_column not in df.columns:
        raise DataError(
            f"{source}: no label column {label_column!r} (columns: {list(df.columns)}); "
            "pass the right --label-column, or leave it out to monitor without labels"
        )
    texts = column_texts(df[text_column]) if len(df) else []
    keep = [i for i, t in enumerate(texts) if t]
    if len(keep) < MIN_TEXTS:
        raise DataError(
            f"{source}: {len(keep)} non-empty text(s) in column {text_column!r} "
            f"({len(df)} rows); monitoring needs at least {MIN_TEXTS}, and a few hundred to "
            "detect moderate drift"
        )
    if len(keep) > max_texts:
        log.warning(
            "%s: %d texts; monitoring a seeded sample of monitor.max_texts=%d",
            source,
            len(keep),
            max_texts,
        )
        keep = sorted(np.random.default_rng(seed).permutation(keep)[:max_texts].tolist())
    labels = None
    if label_column is not None:
        raw = column_texts(df[label_column])
        labels = [raw[i] or None for i in keep]
    return Batch([texts[i] for i in keep], labels, source, len(df), len(texts) - len(keep))


def _out_of_place(
    texts: list[str], scores: np.ndarray, k: int, extra: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    order = np.argsort(-scores, kind="stable")[:k]
    rows = []
    for i in order:
        row = {"out_of_place": round(float(scores[i]), 4), "text": texts[i]}
        for name, values in (extra or {}).items():
            row[name] = values[i]
        rows.append(row)
    return rows


def analyse(
    spec: MonitorConfig,
    base: Baseline,
    labels: list[str],
    temperature: float,
    batch_texts: list[str],
    batch_embeddings: np.ndarray,
    batch_probs: np.ndarray,
    batch_y: np.ndarray | None,  # label ids, -1 where a row has no label
    reference_stats: pd.DataFrame,
    batch_stats: pd.DataFrame,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, details): every figure of the comparison, and the rows the report lists."""
    level = spec.confidence_level
    domain = drift.domain_classifier(
        base.embeddings, batch_embeddings, spec.folds, spec.bootstrap, level, seed
    )
    mmd = drift.mmd_test(
        base.embeddings, batch_embeddings, spec.permutations, spec.mmd_samples, seed
    )
    text_cmp = textstats.compare(reference_stats, batch_stats)
    test_cal = performance.calibrated(base.test_probs, temperature)
    cal = performance.calibrated(batch_probs, temperature)
    predicted = cal.argmax(axis=1)
    test_predicted = test_cal.argmax(axis=1)
    pred = drift.prediction_drift(test_predicted, predicted, labels)
    test_measured = performance.measured(base.test_y, test_cal, labels)
    perf: dict[str, Any] = {
        "estimated": performance.estimate(cal, spec.bootstrap, level, seed),
        "test": {
            "accuracy": test_measured["accuracy"],
            "f1_macro": test_measured["f1_macro"],
            "recall": test_measured["recall"],
            "estimated_accuracy": float(test_cal.max(axis=1).mean()),  # the estimate's point
            **performance.confidence(test_cal, spec.low_confidence),
        },
        **performance.confidence(cal, spec.low_confidence),
        "temperature": temperature,
        "accuracy": None,
    }
    labelled = batch_y >= 0 if batch_y is not None else np.zeros(len(cal), dtype=bool)
    if labelled.any():
        got = performance.measured(batch_y[labelled], cal[labelled], labels)
        perf.update(got)
        perf["estimate_error"] = perf["estimated"]["accuracy"] - got["accuracy"]
        n_test, n = len(base.test_y), int(labelled.sum())
        perf["drop_p_value"] = performance.drop_p_value(
            round(test_measured["accuracy"] * n_test), n_test, round(got["accuracy"] * n), n
        )
    summary: dict[str, Any] = {
        "input_drift": {
            "domain_classifier": {
                "auc": domain.auc,
                "auc_low": domain.low,
                "auc_high": domain.high,
                "folds": spec.folds,
            },
            "mmd": {
                "mmd2": mmd.mmd2,
                "p_value": mmd.p_value,
                "bandwidth": mmd.bandwidth,
                "permutations": mmd.permutations,
            },
            "text_statistics": text_cmp,
        },
        "prediction_drift": pred,
        "performance": perf,
    }
    top = cal.max(axis=1)
    details = {
        "batch_out_of_place": _out_of_place(
            batch_texts,
            domain.batch_scores,
            spec.out_of_place,
            {
                "predicted": [labels[i] for i in predicted],
                "confidence": [round(float(c), 4) for c in top],
            },
        ),
        "reference_out_of_place": _out_of_place(
            base.texts, 1 - domain.reference_scores, spec.out_of_place
        ),
        "to_label": pd.DataFrame(
            {
                "text": batch_texts,
                "predicted": [labels[i] for i in predicted],
                "confidence": top.round(4),
                "out_of_place": domain.batch_scores.round(4),
                "priority": (domain.batch_scores + (1 - top)).round(4),
                "label": "",
            }
        )
        .sort_values("priority", ascending=False, kind="stable")
        .head(spec.to_label)
        .drop(columns="priority"),
        "domain_scores": (domain.reference_scores, domain.batch_scores),
        "predicted": (test_predicted, predicted),
    }
    return summary, details


# --------------------------------------------------------------------------- the command


@dataclass
class MonitorResult:
    summary: dict[str, Any]
    out_dir: Path
    exit_code: int  # 0 nothing flagged, V.EXIT_DRIFT drift or a performance drop


def _batch_label_ids(batch: Batch, labels: list[str]) -> np.ndarray | None:
    from finetune.monitoring.baseline import label_ids

    if batch.labels is None:
        return None
    given = [v for v in batch.labels if v is not None]
    ids = iter(label_ids(given, labels, f"{batch.source} (label column)"))
    return np.asarray([next(ids) if v is not None else -1 for v in batch.labels], dtype=np.int64)


def default_out_dir(cfg: PipelineConfig, batch: Batch, now: datetime) -> Path:
    stem = Path(batch.source).stem if not batch.source.startswith("log ") else "log"
    return Path(cfg.paths.monitor_dir) / f"{stem}-{now.strftime('%Y%m%d-%H%M%S')}"


def flat_metrics(summary: dict[str, Any], labels: list[str]) -> dict[str, float]:
    from finetune.core.labels import safe_names

    inp, pred, perf = summary["input_drift"], summary["prediction_drift"], summary["performance"]
    est = perf["estimated"]
    out = {
        "drift": float(summary["drift"]),
        "batch_texts": float(summary["batch"]["texts"]),
        "domain_auc": inp["domain_classifier"]["auc"],
        "domain_auc_low": inp["domain_classifier"]["auc_low"],
        "domain_auc_high": inp["domain_classifier"]["auc_high"],
        "mmd2": inp["mmd"]["mmd2"],
        "mmd_p_value": inp["mmd"]["p_value"],
        "script_shift": inp["text_statistics"]["script_shift"],
        "prediction_chi2_p_value": pred["p_value"],
        "prediction_psi": pred["psi"],
        "estimated_accuracy": est["accuracy"],
        "estimated_accuracy_low": est["accuracy_low"],
        "estimated_accuracy_high": est["accuracy_high"],
        "estimated_f1_macro": est["f1_macro"],
        "mean_confidence": perf["mean_confidence"],
        "low_confidence_share": perf["low_confidence_share"],
    }
    if perf.get("accuracy") is not None:
        out.update(accuracy=perf["accuracy"], f1_macro=perf["f1_macro"])
    names = safe_names(labels)
    out.update({f"share_{names[k]}": float(v) for k, v in pred["batch_share"].items()})
    return {k: float(v) for k, v in out.items()}


@contextmanager
def monitoring_run(
    cfg: PipelineConfig, version: Any, summary: dict[str, Any], labels: list[str]
) -> Iterator[Any]:
    """The monitoring run with its tags and metrics; the caller logs the files in it. On an
    error it ends FAILED (``tracking.active_run``)."""
    import mlflow

    from finetune.tracking import runs as tracking

    experiment_id = tracking.setup(
        cfg.tracking.model_copy(update={"experiment_name": cfg.monitor.experiment_name})
    )
    name = f"monitor {version.title} {summary['created_at']}"
    with tracking.active_run(None, experiment_id, name) as run:
        mlflow.set_tags(
            {
                "monitor.model": version.source,
                "monitor.model_name": version.name or "",
                "monitor.model_version": version.version or "",
                "monitor.model_run_id": version.run_id,
                "monitor.data_version": version.data_version or "",
                "monitor.batch": summary["batch"]["source"],
                "monitor.drift": str(summary["drift"]).lower(),
                "monitor.reasons": "; ".join(summary["reasons"])[:4900] or "none",
            }
        )
        mlflow.log_metrics(flat_metrics(summary, labels))
        yield run


def _tag_version(client: Any, version: Any, run_id: str, summary: dict[str, Any]) -> None:
    if not (version.name and version.version):
        return
    for key, value in {
        "monitor.last_run_id": run_id,
        "monitor.last_drift": str(summary["drift"]).lower(),
        "monitor.last_time": summary["created_at"],
    }.items():
        client.set_model_version_tag(version.name, version.version, key, value)


def run_monitor(
    cfg: PipelineConfig, root: Path, source: str, batch: Batch, out_dir: Path | None = None
) -> MonitorResult:
    """Monitor ``batch`` for the model ``source``; see the module docstring."""
    import mlflow

    from finetune.core.io import StagedOutputs, atomic_path, write_json
    from finetune.monitoring import render
    from finetune.monitoring.baseline import baseline, embed
    from finetune.monitoring.reference import resolve
    from finetune.registry.aliases import client as registry_client

    began = time.perf_counter()
    now = datetime.now(UTC)
    spec = cfg.monitor
    client = registry_client(cfg.tracking)
    version, classifier = resolve(cfg, source, client)
    if classifier.thresholds is not None:
        raise ConfigError(
            f"finetune monitor: {source} is a multi-label model; the monitor's prediction "
            "drift, calibration and label-free accuracy estimate assume one class per text "
            "and are not available for multi-label models yet (its input drift would be; "
            "predict --log-dir still logs the label sets)"
        )
    labels = classifier.labels
    batch_y = _batch_label_ids(batch, labels)
    max_length = classifier.saved_max_length  # what the model was trained with
    base = baseline(cfg, version, classifier, max_length, root)
    if len(batch.texts) < spec.min_batch:
        log.warning(
            "%s: only %d texts (monitor.min_batch %d): the tests have little power, a "
            "'no drift' verdict means little",
            batch.source,
            len(batch.texts),
            spec.min_batch,
        )
    embeddings, probs = embed(classifier, batch.texts, spec.batch_size, max_length)
    summary, details = analyse(
        spec,
        base,
        labels,
        version.temperature,
        batch.texts,
        embeddings,
        probs,
        batch_y,
        textstats.per_text(base.test_texts, classifier.tokenizer, base.vocabulary),
        textstats.per_text(batch.texts, classifier.tokenizer, base.vocabulary),
        cfg.seed,
    )
    rows = V.checks(summary, spec.thresholds)
    reasons = V.reasons(rows)
    perf = summary["performance"]
    head: dict[str, Any] = {
        "drift": bool(reasons),
        "reasons": reasons,
        "estimated_accuracy": perf["estimated"]["accuracy"],
        "estimated_accuracy_interval": [
            perf["estimated"]["accuracy_low"],
            perf["estimated"]["accuracy_high"],
        ],
        "estimated_f1_macro": perf["estimated"]["f1_macro"],
    }
    if perf.get("accuracy") is not None:
        head.update(accuracy=perf["accuracy"], f1_macro=perf["f1_macro"])
    summary = {
        **head,
        "checks": rows,
        "created_at": now.isoformat(timespec="seconds"),
        "model": {
            "source": version.source,
            "name": version.name,
            "version": version.version,
            "run_id": version.run_id,
            "data_version": version.data_version,
            "labels": labels,
        },
        "batch": {
            "source": batch.source,
            "rows": batch.rows,
            "empty": batch.empty,
            "texts": len(batch.texts),
            "labelled": int((batch_y >= 0).sum()) if batch_y is not None else 0,
        },
        "reference": {
            "texts": len(base.texts),
            "test_texts": len(base.test_y),
            "source": base.source,
        },
        "thresholds": spec.thresholds.model_dump(),
        **summary,
    }
    out_dir = Path(out_dir or default_out_dir(cfg, batch, now))
    with StagedOutputs() as out:
        folder = out.dir(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with monitoring_run(cfg, version, summary, labels) as run:
            summary["mlflow_run_id"] = run.info.run_id
            summary["seconds"] = round(time.perf_counter() - began, 2)
            write_json(folder / SUMMARY, summary)
            (folder / REPORT).write_text(render.render_html(summary, details), encoding="utf-8")
            details["to_label"].to_csv(folder / TO_LABEL, index=False)
            mlflow.log_artifacts(str(folder), "monitor")
        _tag_version(client, version, run.info.run_id, summary)
    with atomic_path(cfg.paths.monitor_latest) as tmp:
        write_json(
            tmp,
            {
                "mlflow_run_id": summary["mlflow_run_id"],
                "created_at": summary["created_at"],
                "drift": summary["drift"],
                "reasons": reasons,
                "summary": str(out_dir / SUMMARY),
                "model": version.title,
            },
        )
    code = V.EXIT_DRIFT if reasons else 0
    log.info(
        "monitor %s on %s (%d texts): %s; estimated accuracy %.3f [%.3f, %.3f]%s; %s (%.1f s)",
        version.title,
        batch.source,
        len(batch.texts),
        "DRIFT: " + " | ".join(reasons) if reasons else "no drift",
        head["estimated_accuracy"],
        *head["estimated_accuracy_interval"],
        f", accuracy {head['accuracy']:.3f}" if "accuracy" in head else "",
        out_dir / REPORT,
        summary["seconds"],
    )
    return MonitorResult(summary, out_dir, code)
