"""How well the model probably does on a batch: estimated without labels from its calibrated
probabilities, measured with them.

The estimate is confidence-based performance estimation (CBPE, as NannyML does it; NannyML
itself pulls xgboost, lightgbm and cloud SDKs, so the few lines are here): with calibrated
probabilities, the expected accuracy is the mean top probability, and the expected confusion
matrix gives macro-F1. The interval comes from drawing each text's label from its calibrated
distribution, which is what "calibrated" promises the labels look like.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finetune.evaluation.metrics import apply_temperature, macro_f1


def calibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    return apply_temperature(probs, temperature)


def _macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Macro-F1 over the last axis (classes) of expected or counted TP, FP, FN."""
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=float), where=denom > 0)
    present = denom > 0
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def estimate(probs: np.ndarray, draws: int, level: float, seed: int) -> dict[str, float]:
    """Expected accuracy and macro-F1 of argmax predictions under calibrated ``probs``, and
    their intervals from ``draws`` label draws."""
    n, k = probs.shape
    predicted = probs.argmax(axis=1)
    onehot_pred = np.eye(k)[predicted]
    tp = (probs * onehot_pred).sum(axis=0)
    fp = ((1 - probs) * onehot_pred).sum(axis=0)
    fn = (probs * (1 - onehot_pred)).sum(axis=0)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs, axis=1)
    cumulative[:, -1] = 1.0
    pred_1h = np.eye(k, dtype=bool)[predicted]  # (n, k)
    accuracy, f1 = np.empty(draws), np.empty(draws)
    chunk = max(1, 4_000_000 // max(n * k, 1))  # draws at a time: a few MB whatever the batch
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        drawn = (rng.random((size, n, 1)) > cumulative[None]).sum(axis=2)  # sampled labels
        accuracy[start : start + size] = (drawn == predicted[None]).mean(axis=1)
        true_1h = np.eye(k, dtype=bool)[drawn]  # (size, n, k)
        d_tp = (true_1h & pred_1h[None]).sum(axis=1).astype(float)
        d_fp = pred_1h.sum(axis=0)[None] - d_tp
        d_fn = true_1h.sum(axis=1) - d_tp
        f1[start : start + size] = _macro_f1(d_tp, d_fp, d_fn)
    tail = (1 - level) / 2
    acc_low, acc_high = np.quantile(accuracy, [tail, 1 - tail])
    f1_low, f1_high = np.quantile(f1, [tail, 1 - tail])
    return {
        "accuracy": float(probs.max(axis=1).mean()),
        "accuracy_low": float(acc_low),
        "accuracy_high": float(acc_high),
        "f1_macro": float(_macro_f1(tp, fp, fn)),
        "f1_macro_low": float(f1_low),
        "f1_macro_high": float(f1_high),
    }


def measured(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and each class's recall (None for a class absent from ``y``)."""
    from sklearn.metrics import recall_score

    predicted = probs.argmax(axis=1)
    classes = list(range(len(labels)))
    present = sorted(set(y.tolist()))
    recall = recall_score(y, predicted, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": float((predicted == y).mean()),
        "f1_macro": macro_f1(y, predicted),
        "recall": {
            label: (float(recall[i]) if i in present else None) for i, label in enumerate(labels)
        },
        "num_labelled": len(y),
    }


def confidence(probs: np.ndarray, low: float) -> dict[str, float]:
    """Mean confidence and the share below ``low``; a text's confidence is its top class's
    probability."""
    return summarise_confidence(probs.max(axis=1), low)


def summarise_confidence(sure: np.ndarray, low: float) -> dict[str, float]:
    """Mean of the per-text confidences ``sure`` and the share below ``low``."""
    return {
        "mean_confidence": float(sure.mean()),
        "low_confidence_share": float((sure < low).mean()),
    }


def drop_p_value(test_accuracy: float, test_total: int, accuracy: float, total: int) -> float:
    """One-sided Fisher exact test that the batch's accuracy (over ``total`` texts) is below
    the test split's (over ``test_total``), on the counts of right and wrong texts
    (``scipy.stats.fisher_exact``): small when the drop is more than chance."""
    from scipy.stats import fisher_exact

    test_correct, correct = round(test_accuracy * test_total), round(accuracy * total)
    table = [[test_correct, test_total - test_correct], [correct, total - correct]]
    return float(fisher_exact(table, alternative="greater").pvalue)
