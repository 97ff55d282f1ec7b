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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from finetune.core.errors import DataError
from finetune.core.schema import MonitorConfig, PipelineConfig
from finetune.monitoring import drift, performance, textstats
from finetune.monitoring import verdict as V
from finetune.monitoring.baseline import Baseline

if TYPE_CHECKING:
    from finetune.modeling.decisions import Thresholds

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
    if label_column is not None:  # a list (JSONL, Parquet) is a label set: joined by "|"
        raw = column_texts(
            df[label_column].map(
                lambda v: "|".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else v
            )
        )
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
    temperature: float | None,
    batch_texts: list[str],
    batch_embeddings: np.ndarray,
    batch_probs: np.ndarray,
    batch_y: np.ndarray | None,  # label ids, -1 where a row has no label (multi-label: 0/1 sets)
    reference_stats: pd.DataFrame,
    batch_stats: pd.DataFrame,
    seed: int,
    thresholds: Thresholds | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, details): every figure of the comparison, and the rows the report lists.
    ``thresholds``: a multi-label model's (``batch_y`` is then an (n, k) 0/1 matrix); the label
    side comes from :mod:`finetune.monitoring.multilabel`."""
    level = spec.confidence_level
    domain = drift.domain_classifier(
        base.embeddings, batch_embeddings, spec.folds, spec.bootstrap, level, seed
    )
    mmd = drift.mmd_test(
        base.embeddings, batch_embeddings, spec.permutations, spec.mmd_samples, seed
    )
    text_cmp = textstats.compare(reference_stats, batch_stats)
    if thresholds is not None:
        pred, perf, predicted_names, top, shares = _label_sets(
            spec, base, labels, batch_probs, batch_y, thresholds
        )
    else:
        pred, perf, predicted_names, top, shares = _classes(
            spec, base, labels, temperature, batch_probs, batch_y, seed
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
    details = {
        "batch_out_of_place": _out_of_place(
            batch_texts,
            domain.batch_scores,
            spec.out_of_place,
            {"predicted": predicted_names, "confidence": [round(float(c), 4) for c in top]},
        ),
        "reference_out_of_place": _out_of_place(
            base.texts, 1 - domain.reference_scores, spec.out_of_place
        ),
        "to_label": pd.DataFrame(
            {
                "text": batch_texts,
                "predicted": predicted_names,
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
        "shares": shares,
    }
    return summary, details


def _classes(
    spec: MonitorConfig,
    base: Baseline,
    labels: list[str],
    temperature: float,
    batch_probs: np.ndarray,
    batch_y: np.ndarray | None,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any], list[str], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """One class per text: (prediction drift, performance, each text's predicted class, its
    confidence, the classes' shares of predictions on test and batch)."""
    level = spec.confidence_level
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
        perf["drop_p_value"] = performance.drop_p_value(
            test_measured["accuracy"], len(base.test_y), got["accuracy"], int(labelled.sum())
        )
    top = cal.max(axis=1)
    k = len(labels)
    shares = (drift.shares(test_predicted, k), drift.shares(predicted, k))
    return pred, perf, [labels[i] for i in predicted], top, shares


def _label_sets(
    spec: MonitorConfig,
    base: Baseline,
    labels: list[str],
    batch_probs: np.ndarray,
    batch_y: np.ndarray | None,
    thresholds: Thresholds,
) -> tuple[dict[str, Any], dict[str, Any], list[str], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Label sets (multi-label): as :func:`_classes`, the shares being each label's share of
    texts; no label-free estimate (:data:`finetune.monitoring.multilabel.NO_ESTIMATE`)."""
    from finetune.modeling import decisions
    from finetune.monitoring import multilabel as ML

    test_decided = decisions.decide(base.test_probs, thresholds)
    decided = decisions.decide(batch_probs, thresholds)
    pred = ML.prediction_drift(test_decided, decided, labels, spec.thresholds.prediction_p_value)
    test_measured = ML.measured(base.test_y > 0, test_decided, labels)
    sure = ML.text_confidence(batch_probs, decided)
    low = spec.low_confidence
    perf: dict[str, Any] = {
        "basis": "subset accuracy",
        "estimated": None,
        "estimate_unavailable": ML.NO_ESTIMATE,
        "test": {
            **{key: test_measured[key] for key in ("accuracy", "f1_micro", "f1_macro", "recall")},
            **performance.summarise_confidence(
                ML.text_confidence(base.test_probs, test_decided), low
            ),
        },
        **performance.summarise_confidence(sure, low),
        "temperature": None,
        "accuracy": None,
    }
    if batch_y is not None:  # every row has its set (a blank one: no label)
        got = ML.measured(batch_y > 0, decided, labels)
        perf.update(got)
        perf["drop_p_value"] = performance.drop_p_value(
            test_measured["accuracy"], len(base.test_y), got["accuracy"], len(batch_y)
        )
    names = [ML.SEPARATOR.join(s) for s in decisions.label_sets(decided, labels)]
    shares = (test_decided.mean(axis=0), decided.mean(axis=0))
    return pred, perf, names, sure, shares


# --------------------------------------------------------------------------- the command


@dataclass
class MonitorResult:
    summary: dict[str, Any]
    out_dir: Path
    exit_code: int  # 0 nothing flagged, V.EXIT_DRIFT drift or a performance drop


def _batch_label_ids(batch: Batch, labels: list[str], multi_label: bool) -> np.ndarray | None:
    """The batch's labels as class ids (-1 where none is given), or for a multi-label model as
    an (n, k) 0/1 matrix (a blank value is a text with no label)."""
    from finetune.monitoring.baseline import label_ids
    from finetune.monitoring.multilabel import label_matrix

    if batch.labels is None:
        return None
    if multi_label:
        return label_matrix(batch.labels, labels, f"{batch.source} (label column)")
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
        # chi-square over the classes; multi-label: Fisher per label, Bonferroni-corrected
        "prediction_chi2_p_value" if est else "prediction_p_value": pred["p_value"],
        "prediction_psi": pred["psi"],
        "mean_confidence": perf["mean_confidence"],
        "low_confidence_share": perf["low_confidence_share"],
    }
    if est:  # multi-label models have no label-free estimate
        out.update(
            estimated_accuracy=est["accuracy"],
            estimated_accuracy_low=est["accuracy_low"],
            estimated_accuracy_high=est["accuracy_high"],
            estimated_f1_macro=est["f1_macro"],
        )
    if perf.get("accuracy") is not None:
        out.update(accuracy=perf["accuracy"], f1_macro=perf["f1_macro"])
        if "f1_micro" in perf:
            out["f1_micro"] = perf["f1_micro"]
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
    labels = classifier.labels
    batch_y = _batch_label_ids(batch, labels, classifier.thresholds is not None)
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
        classifier.thresholds,
    )
    rows = V.checks(summary, spec.thresholds)
    reasons = V.reasons(rows)
    perf, est = summary["performance"], summary["performance"]["estimated"]
    head: dict[str, Any] = {
        "drift": bool(reasons),
        "reasons": reasons,
        "estimated_accuracy": est and est["accuracy"],
        "estimated_accuracy_interval": est and [est["accuracy_low"], est["accuracy_high"]],
        "estimated_f1_macro": est and est["f1_macro"],
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
            "labelled": int((batch_y >= 0).reshape(len(batch_y), -1).all(axis=1).sum())
            if batch_y is not None
            else 0,
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
        "monitor %s on %s (%d texts): %s; %s%s; %s (%.1f s)",
        version.title,
        batch.source,
        len(batch.texts),
        "DRIFT: " + " | ".join(reasons) if reasons else "no drift",
        "estimated accuracy {:.3f} [{:.3f}, {:.3f}]".format(
            head["estimated_accuracy"], *head["estimated_accuracy_interval"]
        )
        if est
        else "no label-free estimate (multi-label)",
        f", {perf.get('basis', 'accuracy')} {head['accuracy']:.3f}" if "accuracy" in head else "",
        out_dir / REPORT,
        summary["seconds"],
    )
    return MonitorResult(summary, out_dir, code)
