"""The monitor's label-side figures for a multi-label model: its label sets (decided by the
thresholds saved with it) on the batch against the test split.

- Prediction drift per label: the share of texts given each label, batch against test, by
  Fisher's exact test per label (``scipy.stats.fisher_exact``), Bonferroni-corrected over the
  labels; the drift's p-value is the smallest corrected one. PSI over how the label decisions
  are spread across the labels (and "no label").
- Performance with labels: subset accuracy, micro- and macro-F1 and each label's recall.
- No label-free estimate: a multi-label model's per-label probabilities are trained with
  positive weights for rare labels (``train.multi_label.pos_weight``), so they are not
  calibrated, and confidence-based estimation needs calibrated probabilities. The summary
  says so (:data:`NO_ESTIMATE`) instead of printing a number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finetune.core.errors import DataError
from finetune.data.label_sets import split_sets
from finetune.evaluation.metrics import multilabel_f1
from finetune.monitoring.drift import psi

SEPARATOR = "|"  # how predict, the prediction log and the processed splits join a label set
NO_ESTIMATE = (
    "no label-free estimate for a multi-label model: its per-label probabilities are trained "
    "with positive weights and are not calibrated; pass --label-column with labelled texts "
    "to measure its performance"
)


def label_matrix(values: list[str | None], labels: list[str], what: str) -> np.ndarray:
    """(n, k) int8, 1 where a row holds the label. Sets are joined by '|' (list columns are
    joined so when read); a blank value is a text with no label, as in the training data."""
    index = {label: j for j, label in enumerate(labels)}
    sets = split_sets([v or "" for v in values], SEPARATOR)
    unknown = sorted({x for s in sets for x in s if x not in index})
    if unknown:
        raise DataError(
            f"{what} has label(s) {unknown[:10]} the model does not know (its labels: {labels}); "
            f"a row's labels are joined by {SEPARATOR!r} or given as a list"
        )
    out = np.zeros((len(values), len(labels)), dtype=np.int8)
    for i, found in enumerate(sets):
        out[i, [index[x] for x in found]] = 1
    return out


def _spread(decided: np.ndarray) -> np.ndarray:
    """Shares of the label decisions over the labels and, last, the texts given none."""
    counts = np.append(decided.sum(axis=0), (~decided.any(axis=1)).sum()).astype(float)
    return counts / max(counts.sum(), 1.0)


def prediction_drift(
    reference: np.ndarray, batch: np.ndarray, labels: list[str], p_value: float
) -> dict[str, Any]:
    """Each label's share of texts, test split (``reference``, boolean (n, k)) against the
    batch (boolean (m, k)): Fisher's exact test per label, Bonferroni over the k labels; the
    labels whose corrected p-value is below ``p_value`` (monitor.thresholds) have moved."""
    from scipy.stats import fisher_exact

    k = len(labels)
    n, m = len(reference), len(batch)
    ref_pos, cur_pos = reference.sum(axis=0), batch.sum(axis=0)
    raw = np.ones(k)
    for j in range(k):
        if ref_pos[j] + cur_pos[j] == 0:
            continue  # given to no text on either side: nothing can have moved
        table = [[int(ref_pos[j]), n - int(ref_pos[j])], [int(cur_pos[j]), m - int(cur_pos[j])]]
        raw[j] = fisher_exact(table).pvalue
    corrected = np.minimum(raw * k, 1.0)
    ref_share, cur_share = ref_pos / max(n, 1), cur_pos / max(m, 1)
    moved = int(np.argmin(corrected))
    return {
        "test": "fisher_exact_per_label_bonferroni",
        "p_value": float(corrected[moved]),
        "most_moved_label": labels[moved] if corrected[moved] < 1.0 else None,
        "labels_moved": [labels[j] for j in np.flatnonzero(corrected < p_value)],
        "per_label_p_value": dict(zip(labels, corrected.round(6).tolist(), strict=True)),
        "psi": psi(_spread(reference), _spread(batch)),
        "reference_share": dict(zip(labels, ref_share.round(4).tolist(), strict=True)),
        "batch_share": dict(zip(labels, cur_share.round(4).tolist(), strict=True)),
        "reference_no_label_share": round(float((~reference.any(axis=1)).mean()), 4) if n else 0.0,
        "batch_no_label_share": round(float((~batch.any(axis=1)).mean()), 4) if m else 0.0,
    }


def measured(y: np.ndarray, decided: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Subset accuracy, micro- and macro-F1 (labels with neither a given nor a decided text
    left out) and each label's recall (None for a label no row holds)."""
    y, decided = y.astype(bool), decided.astype(bool)
    support = y.sum(axis=0)
    hits = (y & decided).sum(axis=0)
    return {
        "accuracy": float((y == decided).all(axis=1).mean()),
        "f1_micro": multilabel_f1(y, decided, "micro"),
        "f1_macro": multilabel_f1(y, decided, "macro"),
        "recall": {
            label: (float(hits[j] / support[j]) if support[j] else None)
            for j, label in enumerate(labels)
        },
        "num_labelled": len(y),
    }


def text_confidence(probs: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """Per text: the least sure of its label decisions (p for a label given, 1 - p for one not
    given)."""
    return np.where(decided, probs, 1.0 - probs).min(axis=1)
