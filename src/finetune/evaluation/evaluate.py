"""evaluate: metrics on test and validation next to an in-stage TF-IDF baseline, calibration,
inference cost, DVC plots (confusion, PR, ROC, reliability) and per-example predictions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from finetune.core.artifacts import load_split
from finetune.core.io import StagedOutputs, read_json, write_json, write_parquet
from finetune.core.labels import prob_columns, safe_names
from finetune.core.schema import EvaluateConfig, PipelineConfig
from finetune.core.validate import parse
from finetune.evaluation import metrics as M
from finetune.evaluation.baseline import fit_predict_baseline, verdict
from finetune.evaluation.multilabel import HEADLINE as MULTI_HEADLINE
from finetune.evaluation.multilabel import evaluate_multilabel, label_confusion
from finetune.modeling import decisions, truncation
from finetune.modeling.backbones import inference_max_length, load_trained
from finetune.modeling.inference import predict_proba
from finetune.modeling.tokens import token_counts
from finetune.reporting.plots import confusion_figure, curves_figure, reliability_figure
from finetune.tracking import runs as tracking

log = logging.getLogger(__name__)

HEADLINE = ("accuracy", "f1_macro", "f1_weighted", "mcc", "roc_auc_ovr", "pr_auc_ovr", "log_loss")


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1 and per-class P/R/F1/support from hard predictions."""
    probs = M.one_hot(np.asarray(y_pred, dtype=int), len(labels))
    full = M.classification_metrics(y_true, probs, labels)
    keep = ("precision", "recall", "f1", "support")
    return {
        "accuracy": full["accuracy"],
        "f1_macro": full["f1_macro"],
        "f1_weighted": full["f1_weighted"],
        "per_class": {k: {m: v[m] for m in keep} for k, v in full["per_class"].items()},
    }


def predictions_frame(df: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """One row per example: true/predicted label, confidence and every class probability."""
    pred = probs.argmax(axis=1)
    out = df.copy()
    out["predicted"] = [labels[i] for i in pred]
    out["predicted_id"] = pred
    out["confidence"] = probs.max(axis=1)
    out["correct"] = out["predicted_id"].to_numpy() == out["label_id"].to_numpy()
    columns = pd.DataFrame(probs, columns=prob_columns(labels), index=out.index)
    return pd.concat([out, columns], axis=1)  # one block, however many classes


def split_metrics(
    y: np.ndarray, probs: np.ndarray, labels: list[str], temperature: float, n_bins: int
) -> dict[str, Any]:
    """All metrics of one split, plus ECE and log loss after temperature scaling."""
    out = M.classification_metrics(y, probs, labels)
    out["ece"] = M.expected_calibration_error(probs, y, n_bins)
    scaled = M.apply_temperature(probs, temperature)
    out["ece_temperature_scaled"] = M.expected_calibration_error(scaled, y, n_bins)
    out["log_loss_temperature_scaled"] = M.classification_metrics(y, scaled, labels)["log_loss"]
    return out


def _at_position_limit(model: Any, max_length: int) -> int | None:
    """The model's position limit when ``max_length`` is at it (within the two positions
    RoBERTa-style models reserve), else None: raising model.max_length is no advice then."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(positions) if positions and max_length >= int(positions) - 2 else None


def evaluate(
    model: Any,
    tokenizer: Any,
    splits: dict[str, pd.DataFrame],
    train_df: pd.DataFrame,
    labels: list[str],
    ev: EvaluateConfig,
    max_length: int,
    seed: int,
    train_metrics: dict[str, Any] | None = None,
    require_beat_baseline: bool = True,
) -> dict[str, Any]:
    """Pure step: model + splits in; metrics, predictions and plot data out (no file I/O).
    ``train_metrics`` (the train stage's) explain a model that loses to the baseline."""
    eval_name, val_name = ev.split, ev.validation_split
    train_metrics = train_metrics or {}
    batch_size, n_bins = ev.batch_size, ev.calibration_bins
    preds = {
        name: predict_proba(model, tokenizer, df["text"].tolist(), batch_size, max_length)
        for name, df in splits.items()
    }
    ys = {name: df["label_id"].to_numpy().astype(int) for name, df in splits.items()}
    temperature = (
        M.fit_temperature(preds[val_name].probabilities, ys[val_name]) if val_name in preds else 1.0
    )
    model_metrics = {
        name: split_metrics(ys[name], p.probabilities, labels, temperature, n_bins)
        for name, p in preds.items()
    }
    baseline_probs = fit_predict_baseline(
        train_df["text"].tolist(),
        train_df["label_id"].to_numpy().astype(int),
        {name: df["text"].tolist() for name, df in splits.items()},
        len(labels),
        ev.baseline,
        seed,
    )
    baseline_metrics = {
        name: M.classification_metrics(ys[name], p, labels) for name, p in baseline_probs.items()
    }
    test = preds[eval_name]
    seconds = test.batch_seconds
    inference = M.inference_figures(seconds, len(ys[eval_name]), batch_size)
    head = model_metrics[eval_name]
    counts = token_counts(tokenizer, splits[eval_name]["text"].tolist())
    long_text = truncation.settings(model.config)
    # the texts the model reads only part of (with chunks it reads every token)
    cut = (counts > max_length) & (not long_text.reads_all)
    judged = val_name if val_name in model_metrics else eval_name  # validation when there is one
    result: dict[str, Any] = {
        **verdict(
            model_metrics[judged]["f1_macro"],
            baseline_metrics[judged]["f1_macro"],
            train_metrics,
            np.bincount(train_df["label_id"].to_numpy().astype(int), minlength=len(labels)),
            float(cut.mean()) if len(cut) else 0.0,
            require_beat_baseline,
            test=(head["f1_macro"], baseline_metrics[eval_name]["f1_macro"], len(ys[eval_name]))
            if judged != eval_name
            else None,
            length_limit=_at_position_limit(model, max_length),
            long_text=long_text.mode,
        ),
        "split": eval_name,
        **{k: head[k] for k in (*HEADLINE, "ece", "ece_temperature_scaled")},
        "log_loss_temperature_scaled": head["log_loss_temperature_scaled"],
        "temperature": round(temperature, 4),
        "num_examples": head["num_examples"],
        "inference_samples_per_second": inference["samples_per_second"],
        "num_classes": len(labels),
        "min_class_f1": min(v["f1"] for v in head["per_class"].values()),
        "min_class_recall": min(v["recall"] for v in head["per_class"].values()),
        "inference": inference,
        **M.versus_baseline(
            model_metrics,
            baseline_metrics,
            eval_name,
            val_name,
            HEADLINE,
            (*HEADLINE, "ece", "ece_temperature_scaled", "num_examples"),
            "tfidf_logreg",
        ),
    }
    df = splits[eval_name]
    frame = predictions_frame(df, test.probabilities, labels)
    frame["num_tokens"] = counts
    frame["truncated"] = cut
    baseline_test = baseline_probs[eval_name]
    frame["baseline_predicted"] = [labels[i] for i in baseline_test.argmax(axis=1)]
    frame["baseline_confidence"] = baseline_test.max(axis=1)
    # Do texts the model reads only in part (past max_length) fare worse, and than the baseline?
    by_length = M.by_length(
        counts, ys[eval_name], test.probabilities.argmax(axis=1), baseline_test.argmax(axis=1),
        max_length,
    )  # fmt: skip
    pr, roc = M.micro_curves(ys[eval_name], test.probabilities, len(labels), ev.curve_points)
    # Per-class figures in a file of their own (paths.evaluate_per_class).
    per_class = {
        label: {**values, "baseline_f1": baseline_metrics[eval_name]["per_class"][label]["f1"]}
        for label, values in head["per_class"].items()
    }
    return {
        "metrics": result,
        "per_class": per_class,
        "by_length": by_length,
        "frame": frame,
        "probs": test.probabilities,
        "y": ys[eval_name],
        "pr_curve": pr,
        "roc_curve": roc,
        "reliability": M.reliability_bins(test.probabilities, ys[eval_name]),
    }


def dvc_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluate stage's DVC metrics (``paths.metrics_evaluate``): the test figures `dvc
    metrics show` and `dvc exp show` list per experiment beside the TF-IDF baseline's, whether
    the model beats it (on validation and on test, as the gate judges) and the calibration
    error. Every figure stays in ``paths.evaluate_metrics``."""
    return {
        "accuracy": metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "tfidf_f1_macro": metrics["baseline"]["f1_macro"],
        "beats_tfidf": bool(metrics["beats_baseline"]),
        "ece": metrics["ece"],
    }


def mlflow_metrics(
    metrics: dict[str, Any], per_class: dict[str, Any], by_length: dict[str, Any] | None = None
) -> dict[str, float]:
    """The flat numbers logged to MLflow: test_*, val_*, baseline_test_*, delta_test_*,
    test_<metric>_<label's safe name> per class and test_<metric>_length_<bucket>."""
    out: dict[str, float] = {}
    for key in (
        *dict.fromkeys((*HEADLINE, *MULTI_HEADLINE)),
        "accuracy_at_0_5",
        "f1_micro_at_0_5",
        "f1_macro_at_0_5",
        "ece",
        "ece_temperature_scaled",
        "temperature",
        "min_class_f1",
        "num_examples",
    ):
        if metrics.get(key) is not None:
            out[f"test_{key}"] = float(metrics[key])
    out["beats_baseline"] = float(metrics["beats_baseline"])
    names = safe_names(per_class)
    for label, per in per_class.items():
        for name in ("precision", "recall", "f1", "roc_auc", "pr_auc"):
            if per.get(name) is not None:
                out[f"test_{name}_{names[label]}"] = float(per[name])
    for key, value in metrics["baseline"].items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            out[f"baseline_test_{key}"] = float(value)
    for key, value in metrics["delta_vs_baseline"].items():
        if value is not None:
            out[f"delta_vs_baseline_test_{key}"] = float(value)
    for key, value in metrics.get("validation", {}).items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            out[f"val_{key}"] = float(value)
    for bucket, values in (by_length or {}).items():
        for key in ("accuracy", "f1_macro", "baseline_f1_macro"):
            if values[key] is not None:
                out[f"test_{key}_length_{bucket}"] = float(values[key])
    for key, value in metrics["inference"].items():
        if isinstance(value, float | int) and not isinstance(value, bool) and value is not None:
            out[f"inference_{key}"] = float(value)
    return out


def _figures(
    cm: np.ndarray,
    cm_names: list[str],
    y: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    reliability: list[tuple[str, Any]],
) -> dict[str, Any]:
    """The confusion matrix (multi-label: label vs none), a PR and ROC curve per class or
    label, and the ``reliability`` series (caption, bins)."""
    return {
        "confusion_matrix.png": confusion_figure(cm, cm_names),
        "pr_curves.png": curves_figure(y, probs, labels, "pr"),
        "roc_curves.png": curves_figure(y, probs, labels, "roc"),
        "reliability.png": reliability_figure(reliability),
    }


def _reliability(
    y: np.ndarray, probs: np.ndarray, metrics: dict[str, Any]
) -> list[tuple[str, Any]]:
    """The model's probabilities and their temperature-scaled ones (one class per text)."""
    scaled = M.apply_temperature(probs, metrics["temperature"])
    return [
        (f"model, ECE {metrics['ece']:.3f}", M.reliability_bins(probs, y)),
        (
            f"temperature-scaled (T={metrics['temperature']:.2f}), ECE "
            f"{metrics['ece_temperature_scaled']:.3f}",
            M.reliability_bins(scaled, y),
        ),
    ]


def _log(metrics: dict[str, Any], n: int) -> None:
    log.info(
        "test accuracy %.4f, macro-F1 %.4f (baseline %.4f, delta %+.4f), ECE %.3f -> %.3f "
        "(T=%.2f), %.1f samples/s, batch p95 %.1f ms on %d examples",
        metrics["accuracy"],
        metrics["f1_macro"],
        metrics["baseline"]["f1_macro"],
        metrics["delta_vs_baseline"]["f1_macro"],
        metrics["ece"],
        metrics["ece_temperature_scaled"],
        metrics["temperature"],
        metrics["inference"]["samples_per_second"] or 0.0,
        metrics["inference"]["batch_latency_ms_p95"] or 0.0,
        n,
    )


def _log_multilabel(metrics: dict[str, Any], n: int) -> None:
    base = metrics["baseline"]
    log.info(
        "test (multi-label, %d texts, thresholds %s): micro-F1 %.4f (at 0.5: %.4f; baseline "
        "%.4f), macro-F1 %.4f (at 0.5: %.4f; baseline %.4f), subset accuracy %.4f (baseline "
        "%.4f), Hamming loss %.4f, LRAP %s, label ECE %.3f, %.1f samples/s",
        n,
        metrics["thresholds"],
        metrics["f1_micro"],
        metrics["f1_micro_at_0_5"],
        base["f1_micro"],
        metrics["f1_macro"],
        metrics["f1_macro_at_0_5"],
        base["f1_macro"],
        metrics["accuracy"],
        base["accuracy"],
        metrics["hamming_loss"],
        metrics["lrap"],
        metrics["ece"],
        metrics["inference"]["samples_per_second"] or 0.0,
    )


def run(cfg: PipelineConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Stage entry: model + splits -> metrics JSON, DVC plot files, figures, predictions."""
    import matplotlib.pyplot as plt
    import mlflow

    cfg = parse(cfg)
    paths, ev = cfg.paths, cfg.evaluate
    model, tokenizer = load_trained(paths.model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    names = list(dict.fromkeys(n for n in (ev.split, ev.validation_split) if n is not None))
    splits = {name: load_split(paths.processed_dir, name) for name in names}
    train_df = load_split(paths.processed_dir, "train")
    max_length = inference_max_length(cfg.model.max_length, tokenizer)
    train_metrics = read_json(paths.train_report) if Path(paths.train_report).is_file() else {}
    multi = decisions.is_multi_label(model.config)
    step = partial(evaluate_multilabel, settings=cfg.train.multi_label) if multi else evaluate
    res = step(
        model,
        tokenizer,
        splits,
        train_df,
        labels,
        ev,
        max_length=max_length,
        seed=cfg.seed,
        train_metrics=train_metrics,
        require_beat_baseline=cfg.promotion.require_beat_baseline,
    )
    metrics, frame, y, probs = res["metrics"], res["frame"], res["y"], res["probs"]
    if not metrics["beats_baseline"]:
        log.warning(
            "%s What to try: %s", metrics["baseline_warning"], "; ".join(metrics["what_to_try"])
        )
    if multi:
        records, cm, cm_names = label_confusion(y, res["decided"], labels)
        caption = f"label probabilities (every text-label pair), ECE {metrics['ece']:.3f}"
        reliability = [(caption, M.label_reliability_bins(probs, y))]
    else:
        cm_names = labels
        cm = confusion_matrix(y, probs.argmax(axis=1), labels=list(range(len(labels))))
        records = frame[["label", "predicted"]].rename(columns={"label": "actual"})
        reliability = _reliability(y, probs, metrics)
    figures = _figures(cm, cm_names, y, probs, labels, reliability)
    with tracking.train_run(paths.run_info, cfg.tracking, stage="evaluate"), StagedOutputs() as out:
        write_json(out.file(paths.evaluate_metrics), metrics)
        write_json(out.file(paths.metrics_evaluate), dvc_metrics(metrics))
        write_json(out.file(paths.evaluate_per_class), res["per_class"])
        write_json(out.file(paths.evaluate_by_length), res["by_length"])
        write_parquet(out.file(paths.predictions), frame)
        # DVC "confusion" template: one record per example (multi-label: per true or
        # predicted label of an example), actual vs predicted.
        records.to_csv(out.file(paths.confusion_plot), index=False)
        pd.DataFrame(res["pr_curve"], columns=["recall", "precision"]).to_csv(
            out.file(paths.pr_curve_plot), index=False
        )
        pd.DataFrame(res["roc_curve"], columns=["fpr", "tpr"]).to_csv(
            out.file(paths.roc_plot), index=False
        )
        pd.DataFrame(res["reliability"]).to_csv(out.file(paths.reliability_plot), index=False)
        figure_dir = out.dir(paths.evaluate_figures)
        for name, figure in figures.items():
            target = (
                out.file(paths.confusion_image)
                if name == "confusion_matrix.png"
                else figure_dir / name
            )
            figure.savefig(target, format="png", dpi=110)
            mlflow.log_figure(figure, f"evaluate/{name}")
            plt.close(figure)
        mlflow.log_metrics(mlflow_metrics(metrics, res["per_class"], res["by_length"]))
        mlflow.set_tag("evaluate.beats_baseline", str(metrics["beats_baseline"]).lower())
        mlflow.log_dict(metrics, "evaluate/metrics.json")
        mlflow.log_dict(res["per_class"], "evaluate/per_class.json")
        mlflow.log_dict(res["by_length"], "evaluate/by_length.json")
        mlflow.log_dict(
            {"labels": cm_names, "matrix": cm.tolist()}, "evaluate/confusion_matrix.json"
        )
        for key in ("pr_curve", "roc_curve", "reliability"):
            mlflow.log_dict(res[key], f"evaluate/{key}.json")
    if multi:
        _log_multilabel(metrics, len(frame))
    else:
        _log(metrics, len(frame))
    log.info(
        "by length (max_length %d): %s",
        max_length,
        "; ".join(
            f"{v['tokens']} tokens: {v['num_examples']} texts, macro-F1 {v['f1_macro']:.4f} "
            f"(baseline {v['baseline_f1_macro']:.4f})"
            for v in res["by_length"].values()
            if v["num_examples"]
        ),
    )
    return metrics
