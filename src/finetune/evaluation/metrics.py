"""Classification metrics from class probabilities: quality, ranking, calibration, curves."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

EPS = 1e-7


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(y), num_classes), dtype=np.float64)
    out[np.arange(len(y)), y] = 1.0
    return out


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: |accuracy - confidence| per equal-width confidence bin, weighted by size."""
    if len(y) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Per confidence bin: mean confidence, accuracy and count (the reliability diagram)."""
    return _bins(probs.max(axis=1), probs.argmax(axis=1) == y, n_bins)


def _bins(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> list[dict[str, Any]]:
    """Equal-width bins of ``conf``: mean confidence, share of ``correct`` and count."""
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            rows.append(
                {
                    "bin": f"{b / n_bins:.1f}-{(b + 1) / n_bins:.1f}",
                    "confidence": round(float(conf[mask].mean()), 4),
                    "accuracy": round(float(correct[mask].mean()), 4),
                    "count": int(mask.sum()),
                }
            )
    return rows


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the same as scaling the logits, since softmax ignores a shift."""
    logits = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises negative log-likelihood on (validation) ``probs``."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        scaled = apply_temperature(probs, float(np.exp(log_t)))
        return float(-np.log(np.clip(scaled[np.arange(len(y)), y], EPS, 1.0)).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def _clipped(probs: np.ndarray) -> np.ndarray:
    """Probabilities kept away from 0 (log loss) and still summing to one per row (float32
    softmax outputs and clipping both move the sums off 1, which scikit-learn warns about)."""
    clipped = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float | None:
    """A metric that is undefined (e.g. one class absent from the split) is None, not a crash."""
    try:
        value = float(fn(*args, **kwargs))
    except ValueError:
        return None
    return None if np.isnan(value) else value


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Macro-F1 over the classes a split has as labels or as predictions (scikit-learn's default,
    what Hugging Face's ``evaluate`` reports): a class with neither rows nor predictions in the
    split is left out, not averaged in as a zero. One definition for every stage."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Every headline metric of one split from true label ids and class probabilities."""
    ids = list(range(len(labels)))
    y_true = np.asarray(y_true, dtype=int)
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    present = [i for i in ids if (y_true == i).any()]
    onehot = one_hot(y_true, len(labels))
    roc_per_class = {labels[i]: _safe(roc_auc_score, onehot[:, i], probs[:, i]) for i in present}
    pr_per_class = {
        labels[i]: _safe(average_precision_score, onehot[:, i], probs[:, i]) for i in present
    }
    defined_roc = [v for v in roc_per_class.values() if v is not None]
    defined_pr = [v for v in pr_per_class.values() if v is not None]
    return {
        "num_examples": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": macro_f1(y_true, y_pred),
        "f1_weighted": float(
            f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)
        ),
        "mcc": float(matthews_corrcoef(y_true, y_pred)) if len(y_true) else 0.0,
        # One-vs-rest, macro-averaged over the classes present in the split.
        "roc_auc_ovr": float(np.mean(defined_roc)) if defined_roc else None,
        "pr_auc_ovr": float(np.mean(defined_pr)) if defined_pr else None,
        "log_loss": _safe(log_loss, y_true, _clipped(probs), labels=ids),
        "ece": expected_calibration_error(probs, y_true),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "roc_auc": roc_per_class.get(label),
                "pr_auc": pr_per_class.get(label),
            }
            for i, label in enumerate(labels)
        },
    }


def _thin(rows: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    if len(rows) <= max_points:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, max_points).round().astype(int))
    return [rows[i] for i in keep]


def micro_curves(
    y_true: np.ndarray, probs: np.ndarray, num_classes: int, max_points: int = 200
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Micro-averaged one-vs-rest PR and ROC curves (``y_true``: class ids, or a multi-label
    0/1 matrix): one line per run, so `dvc plots diff`
    overlays experiments. Thinned to ``max_points`` points to keep the plot files small."""
    y_true = np.asarray(y_true)
    # multi-label: the 0/1 label matrix itself
    onehot = (
        y_true.astype(int).ravel()
        if y_true.ndim == 2
        else one_hot(y_true.astype(int), num_classes).ravel()
    )
    scores = probs.ravel()
    if onehot.sum() == 0 or onehot.sum() == len(onehot):
        return [], []
    precision, recall, _ = precision_recall_curve(onehot, scores)
    fpr, tpr, _ = roc_curve(onehot, scores)
    pr = [
        {"recall": round(float(r), 5), "precision": round(float(p), 5)}
        for r, p in zip(recall[::-1], precision[::-1], strict=True)
    ]
    roc = [
        {"fpr": round(float(f), 5), "tpr": round(float(t), 5)}
        for f, t in zip(fpr, tpr, strict=True)
    ]
    return _thin(pr, max_points), _thin(roc, max_points)


def inference_figures(seconds: list[float], n: int, batch_size: int) -> dict[str, Any]:
    """Throughput and batch latency of the evaluated split's ``n`` texts (``seconds`` per
    batch, texts sorted by length)."""
    return {
        "batch_size": batch_size,
        "num_batches": len(seconds),
        "samples_per_second": round(n / sum(seconds), 2) if seconds else None,
        "batch_latency_ms_p50": percentile_ms(seconds, 50),
        "batch_latency_ms_p95": percentile_ms(seconds, 95),
        "sorted_by_length": True,
    }


def percentile_ms(seconds: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(seconds) * 1000.0, q)), 3) if seconds else None


def compare(model: dict[str, Any], baseline: dict[str, Any], keys: tuple[str, ...]) -> dict:
    """model - baseline for each headline metric both define."""
    out: dict[str, float | None] = {}
    for key in keys:
        a, b = model.get(key), baseline.get(key)
        out[key] = None if a is None or b is None else round(float(a) - float(b), 6)
    return out


def versus_baseline(
    model: dict[str, dict[str, Any]],
    baseline: dict[str, dict[str, Any]],
    eval_name: str,
    val_name: str,
    keys: tuple[str, ...],
    validation_keys: tuple[str, ...],
    baseline_name: str,
) -> dict[str, Any]:
    """The result's baseline block: the baseline's ``keys`` (and ECE) on the evaluated split and
    the model's differences from them; the same for validation when it is another split, with
    the model's ``validation_keys`` beside them."""
    out: dict[str, Any] = {
        "baseline": {"name": baseline_name, **{k: baseline[eval_name][k] for k in (*keys, "ece")}},
        "delta_vs_baseline": compare(model[eval_name], baseline[eval_name], keys),
    }
    if val_name in model and val_name != eval_name:
        val = model[val_name]
        out["validation"] = {
            **{k: val[k] for k in validation_keys},
            "baseline": {k: baseline[val_name][k] for k in keys},
            "delta_vs_baseline": compare(val, baseline[val_name], keys),
        }
    return out


# Buckets of token counts relative to the model's max_length L: (0, L/2], (L/2, L], (L, 2L], >2L.
LENGTH_BUCKETS = ("within_half", "within", "beyond", "beyond_twice")


def by_length(
    num_tokens: np.ndarray,
    y_true: np.ndarray,
    predicted: np.ndarray,
    baseline_predicted: np.ndarray,
    max_length: int,
) -> dict[str, dict[str, Any]]:
    """Accuracy and macro-F1 of the model and of the baseline by text length in tokens, in
    buckets relative to ``max_length`` (L): up to L/2, up to L, up to 2L (cut by the model), past
    2L (more than half unread). Every bucket is present; an empty one has no metrics (None).
    Multi-label (0/1 matrices): subset accuracy and macro-F1 over labels."""
    num_tokens = np.asarray(num_tokens)
    y_true = np.asarray(y_true)
    half = max(1, max_length // 2)
    edges = [(0, half), (half, max_length), (max_length, 2 * max_length), (2 * max_length, None)]
    out: dict[str, dict[str, Any]] = {}
    for key, (low, high) in zip(LENGTH_BUCKETS, edges, strict=True):
        rows = (num_tokens > low) & (num_tokens <= high if high is not None else True)
        n = int(rows.sum())
        span = f"{low + 1}-{high}" if high is not None else f"{low + 1}+"

        def score(pred: np.ndarray, rows: np.ndarray = rows, n: int = n) -> tuple[Any, Any]:
            if not n:
                return None, None
            truth, guess = y_true[rows], pred[rows]
            if truth.ndim == 2:  # multi-label: subset accuracy, macro-F1 over labels
                exact = float((truth == guess).all(axis=1).mean())
                return round(exact, 6), round(multilabel_f1(truth, guess, "macro"), 6)
            return round(float((truth == guess).mean()), 6), round(macro_f1(truth, guess), 6)

        accuracy, f1 = score(np.asarray(predicted))
        base_accuracy, base_f1 = score(np.asarray(baseline_predicted))
        out[key] = {
            "tokens": span,
            "num_examples": n,
            "accuracy": accuracy,
            "f1_macro": f1,
            "baseline_accuracy": base_accuracy,
            "baseline_f1_macro": base_f1,
        }
    return out


def multilabel_f1(y_true: Any, y_pred: Any, average: str) -> float:
    """F1 of 0/1 label matrices: ``micro``, ``samples``, or ``macro``/``weighted`` over the labels
    the split has as truth or as predictions (a label with neither is left out, as
    :func:`macro_f1` leaves out a class)."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    if average in ("micro", "samples"):
        return float(f1_score(y_true, y_pred, average=average, zero_division=0))
    present = np.flatnonzero(y_true.any(axis=0) | y_pred.any(axis=0))
    if not len(present):
        return 0.0
    return float(
        f1_score(y_true, y_pred, average=average, labels=present.tolist(), zero_division=0)
    )


def label_reliability_bins(
    probs: np.ndarray, y: np.ndarray, n_bins: int = 10
) -> list[dict[str, Any]]:
    """Multi-label calibration: every (text, label) probability binned; per bin the mean
    probability (``confidence``), the share that are true labels (``accuracy``) and the count."""
    p, t = np.asarray(probs, dtype=np.float64).ravel(), np.asarray(y, dtype=bool).ravel()
    return _bins(p, t, n_bins)


def label_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE of label probabilities: |share true - mean probability| per equal-width bin,
    weighted by the bin's share of the (text, label) pairs."""
    rows = label_reliability_bins(probs, y, n_bins)
    total = sum(r["count"] for r in rows)
    if not total:
        return 0.0
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows))
