"""evaluate for multi-label models: every label's decision at the thresholds saved with the
model, against the one-vs-rest TF-IDF baseline with thresholds tuned the same way, and the
same figures at a fixed 0.5 threshold (what most tools use) for comparison."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    hamming_loss,
    label_ranking_average_precision_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from finetune.core.labels import prob_columns
from finetune.core.schema import EvaluateConfig, MultiLabelConfig
from finetune.evaluation import metrics as M
from finetune.evaluation.baseline import fit_predict_multilabel_baseline, verdict
from finetune.modeling import decisions, truncation
from finetune.modeling.inference import predict_proba
from finetune.modeling.tokens import token_counts

log = logging.getLogger(__name__)

HEADLINE = (
    "accuracy",  # subset accuracy: every label of a text right
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "f1_samples",
    "precision_micro",
    "recall_micro",
    "precision_macro",
    "recall_macro",
    "hamming_loss",
    "lrap",
    "roc_auc_macro",
    "pr_auc_macro",
)
NONE = "(none)"  # the label-vs-none confusion's name for "not this label"


def _auc(fn: Any, truth: np.ndarray, scores: np.ndarray) -> float | None:
    if truth.sum() in (0, len(truth)):
        return None
    return round(float(fn(truth, scores)), 6)


def split_metrics(
    y: np.ndarray, probs: np.ndarray, pred: np.ndarray, labels: list[str], n_bins: int
) -> dict[str, Any]:
    """Every multi-label figure of one split: truth ``y`` and decisions ``pred`` are (n, L) 0/1,
    ``probs`` the label probabilities."""
    y, pred = np.asarray(y, dtype=bool), np.asarray(pred, dtype=bool)
    present = np.flatnonzero(y.any(axis=0) | pred.any(axis=0)).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, average=None, zero_division=0, labels=list(range(len(labels)))
    )
    per_class: dict[str, dict[str, Any]] = {}
    for j, label in enumerate(labels):
        per_class[label] = {
            "precision": round(float(precision[j]), 6),
            "recall": round(float(recall[j]), 6),
            "f1": round(float(f1[j]), 6),
            "support": int(support[j]),
            "predicted": int(pred[:, j].sum()),
            "roc_auc": _auc(roc_auc_score, y[:, j], probs[:, j]),
            "pr_auc": _auc(average_precision_score, y[:, j], probs[:, j]),
            "ece": round(M.label_calibration_error(probs[:, j], y[:, j], n_bins), 6),
        }
    rocs = [v["roc_auc"] for v in per_class.values() if v["roc_auc"] is not None]
    prs = [v["pr_auc"] for v in per_class.values() if v["pr_auc"] is not None]

    def averaged(fn: Any, how: str) -> float:
        if how == "macro" and not present:
            return 0.0
        kw = {"labels": present} if how == "macro" else {}
        return round(float(fn(y, pred, average=how, zero_division=0, **kw)), 6)

    has_label = y.any(axis=1)
    return {
        "accuracy": round(float((y == pred).all(axis=1).mean()), 6) if len(y) else 0.0,
        "f1_micro": round(M.multilabel_f1(y, pred, "micro"), 6),
        "f1_macro": round(M.multilabel_f1(y, pred, "macro"), 6),
        "f1_weighted": round(M.multilabel_f1(y, pred, "weighted"), 6),
        "f1_samples": round(M.multilabel_f1(y, pred, "samples"), 6),
        "precision_micro": averaged(precision_score, "micro"),
        "recall_micro": averaged(recall_score, "micro"),
        "precision_macro": averaged(precision_score, "macro"),
        "recall_macro": averaged(recall_score, "macro"),
        "hamming_loss": round(float(hamming_loss(y, pred)), 6),
        # over the texts with at least one label (the ranking of a text with none is undefined)
        "lrap": round(
            float(label_ranking_average_precision_score(y[has_label], probs[has_label])), 6
        )
        if has_label.any()
        else None,
        "roc_auc_macro": round(float(np.mean(rocs)), 6) if rocs else None,
        "pr_auc_macro": round(float(np.mean(prs)), 6) if prs else None,
        "ece": round(M.label_calibration_error(probs, y, n_bins), 6),
        "labels_per_text": round(float(pred.sum(axis=1).mean()), 4) if len(y) else 0.0,
        "texts_without_label": int((~pred.any(axis=1)).sum()),
        "num_examples": len(y),
        "per_class": per_class,
    }


def label_confusion(
    y: np.ndarray, pred: np.ndarray, labels: list[str]
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Label vs none: one record per (text, label) that is true or predicted: ``actual`` is the
    label or (none) (a false positive), ``predicted`` the label or (none) (a false negative); and
    the matching (L+1) x (L+1) matrix for the DVC confusion plot and its image."""
    y, pred = np.asarray(y, dtype=bool), np.asarray(pred, dtype=bool)
    names = [*labels, NONE]
    actual: list[str] = []
    predicted: list[str] = []
    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    none = len(labels)
    for j, label in enumerate(labels):
        tp = int((y[:, j] & pred[:, j]).sum())
        fn = int((y[:, j] & ~pred[:, j]).sum())
        fp = int((~y[:, j] & pred[:, j]).sum())
        cm[j, j], cm[j, none], cm[none, j] = tp, fn, fp
        actual += [label] * tp + [label] * fn + [NONE] * fp
        predicted += [label] * tp + [NONE] * fn + [label] * fp
    return pd.DataFrame({"actual": actual, "predicted": predicted}), cm, names


def predictions_frame(
    df: pd.DataFrame, probs: np.ndarray, pred: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    """One row per text: its predicted set (as the ``label`` column writes sets), whether the
    whole set is right, and every label's probability."""
    y = decisions.multi_hot(df["label_ids"].tolist(), len(labels)) > 0
    out = df.copy()
    out["predicted"] = ["|".join(s) for s in decisions.label_sets(pred, labels)]
    out["predicted_ids"] = [np.flatnonzero(row).tolist() for row in pred]
    out["confidence"] = probs.max(axis=1) if probs.shape[1] else 0.0
    out["correct"] = (y == pred).all(axis=1)
    columns = pd.DataFrame(probs, columns=prob_columns(labels), index=out.index)
    return pd.concat([out, columns], axis=1)


def evaluate_multilabel(
    model: Any,
    tokenizer: Any,
    splits: dict[str, pd.DataFrame],
    train_df: pd.DataFrame,
    labels: list[str],
    ev: EvaluateConfig,
    settings: MultiLabelConfig,
    max_length: int,
    seed: int,
    train_metrics: dict[str, Any] | None = None,
    require_beat_baseline: bool = True,
) -> dict[str, Any]:
    """Pure step, as :func:`finetune.evaluation.evaluate.evaluate` for a multi-label model."""
    eval_name, val_name = ev.split, ev.validation_split
    train_metrics = train_metrics or {}
    n = len(labels)
    chosen = decisions.from_config(model.config)
    at_half = decisions.fixed(n, 0.5, chosen.at_least_one)
    preds = {
        name: predict_proba(model, tokenizer, df["text"].tolist(), ev.batch_size, max_length)
        for name, df in splits.items()
    }
    ys = {name: decisions.multi_hot(df["label_ids"].tolist(), n) > 0 for name, df in splits.items()}
    decided = {name: decisions.decide(p.probabilities, chosen) for name, p in preds.items()}
    model_metrics = {
        name: split_metrics(ys[name], p.probabilities, decided[name], labels, ev.calibration_bins)
        for name, p in preds.items()
    }
    for name, p in preds.items():  # the same model at 0.5 for every label
        half = split_metrics(
            ys[name], p.probabilities, decisions.decide(p.probabilities, at_half), labels, 2
        )
        for key in ("accuracy", "f1_micro", "f1_macro"):
            model_metrics[name][f"{key}_at_0_5"] = half[key]
    baseline_probs = fit_predict_multilabel_baseline(
        train_df["text"].tolist(),
        decisions.multi_hot(train_df["label_ids"].tolist(), n),
        {name: df["text"].tolist() for name, df in splits.items()},
        ev.baseline,
        seed,
    )
    tuned_on = val_name if val_name in splits else eval_name
    base_chosen = decisions.choose(
        settings.thresholds,
        settings.min_positives,
        ys[tuned_on],
        baseline_probs[tuned_on],
        chosen.at_least_one,
    )
    base_decided = {k: decisions.decide(p, base_chosen) for k, p in baseline_probs.items()}
    baseline_metrics = {
        name: split_metrics(ys[name], p, base_decided[name], labels, ev.calibration_bins)
        for name, p in baseline_probs.items()
    }
    test = preds[eval_name]
    seconds = test.batch_seconds
    head = model_metrics[eval_name]
    inference = M.inference_figures(seconds, len(ys[eval_name]), ev.batch_size)
    counts = token_counts(tokenizer, splits[eval_name]["text"].tolist())
    long_text = truncation.settings(model.config)
    cut = (counts > max_length) & (not long_text.reads_all)
    judged = val_name if val_name in model_metrics else eval_name
    train_counts = decisions.multi_hot(train_df["label_ids"].tolist(), n).sum(axis=0)
    headline = [*HEADLINE, "accuracy_at_0_5", "f1_micro_at_0_5", "f1_macro_at_0_5"]
    result: dict[str, Any] = {
        **verdict(
            model_metrics[judged]["f1_macro"],
            baseline_metrics[judged]["f1_macro"],
            train_metrics,
            train_counts,
            float(cut.mean()) if len(cut) else 0.0,
            require_beat_baseline,
            test=(head["f1_macro"], baseline_metrics[eval_name]["f1_macro"], len(ys[eval_name]))
            if judged != eval_name
            else None,
            long_text=long_text.mode,
        ),
        "task": "multi_label",
        "split": eval_name,
        **{k: head[k] for k in headline},
        "ece": head["ece"],
        "labels_per_text": head["labels_per_text"],
        "texts_without_label": head["texts_without_label"],
        "num_examples": head["num_examples"],
        "inference_samples_per_second": inference["samples_per_second"],
        "num_classes": n,
        "thresholds": chosen.how,
        "thresholds_fallback": len(chosen.fallback),
        "min_class_f1": min(
            (v["f1"] for v in head["per_class"].values() if v["support"]), default=0.0
        ),
        "inference": inference,
        **M.versus_baseline(
            model_metrics,
            baseline_metrics,
            eval_name,
            val_name,
            HEADLINE,
            (*headline, "ece", "num_examples"),
            "tfidf_logreg_one_vs_rest",
        ),
    }
    df = splits[eval_name]
    frame = predictions_frame(df, test.probabilities, decided[eval_name], labels)
    frame["num_tokens"] = counts
    frame["truncated"] = cut
    frame["baseline_predicted"] = [
        "|".join(s) for s in decisions.label_sets(base_decided[eval_name], labels)
    ]
    frame["baseline_confidence"] = baseline_probs[eval_name].max(axis=1)
    by_length = M.by_length(
        counts, ys[eval_name], decided[eval_name], base_decided[eval_name], max_length
    )
    pr, roc = M.micro_curves(ys[eval_name], test.probabilities, n, ev.curve_points)
    per_class = {
        label: {
            **values,
            "threshold": round(float(chosen.values[j]), 6),
            "own_threshold": j not in chosen.fallback,
            "baseline_f1": baseline_metrics[eval_name]["per_class"][label]["f1"],
        }
        for j, (label, values) in enumerate(head["per_class"].items())
    }
    return {
        "metrics": result,
        "per_class": per_class,
        "by_length": by_length,
        "frame": frame,
        "probs": test.probabilities,
        "y": ys[eval_name],
        "decided": decided[eval_name],
        "pr_curve": pr,
        "roc_curve": roc,
        "reliability": M.label_reliability_bins(test.probabilities, ys[eval_name]),
    }
