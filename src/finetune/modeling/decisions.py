"""From logits to decisions: softmax for one class per text; for a set of labels per text
(multi-label), a sigmoid per label and a threshold per label tuned on validation.

Per label, the threshold is the cut of its validation scores with the best F1 for that label. A
label with fewer than ``min_positives`` validation positives gets no threshold of its own (an F1
from two positives is noise): it falls back to one global threshold, the cut with the best
micro-F1 over every label's validation scores. The thresholds are saved in the model's config
(:meth:`Thresholds.config`) and read back wherever the model predicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

MULTI_LABEL = "multi_label_classification"  # transformers' problem_type


def _get(config: Any, key: str, default: Any = None) -> Any:
    """A setting of a transformers config object or of its config.json read as a dict."""
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def is_multi_label(config: Any) -> bool:
    """``config``: a transformers config, or a model's config.json as a dict."""
    return _get(config, "problem_type") == MULTI_LABEL


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.clip(np.asarray(logits, dtype=np.float64), -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def probabilities(logits: np.ndarray, config: Any) -> np.ndarray:
    """Softmax over the classes, or (multi-label) a sigmoid per label."""
    return sigmoid(logits) if is_multi_label(config) else softmax(logits)


def multi_hot(label_ids: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """(n, num_labels) 0/1 float32 from each row's label ids."""
    out = np.zeros((len(label_ids), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_ids):
        out[row, np.asarray(ids, dtype=np.int64)] = 1.0
    return out


def at_least_one(setting: bool | str, labels_per_row: np.ndarray) -> bool:
    """``auto``: a text must get a label when every train row has one (an empty set is never
    right there); else the setting."""
    if setting == "auto":
        counts = np.asarray(labels_per_row)
        return bool(len(counts)) and bool((counts > 0).all())
    return bool(setting)


class Thresholds(NamedTuple):
    values: np.ndarray  # (num_labels,) a label is predicted when its probability >= its value
    fallback: tuple[int, ...]  # labels with too few validation positives: the global value
    global_value: float
    at_least_one: bool  # a text with no label above its threshold gets its most likely one
    how: str  # "tuned on validation" or "fixed"

    def config(self) -> dict[str, Any]:
        """For ``model.config.update``: saved in config.json with the model."""
        return {
            "decision_thresholds": [round(float(v), 6) for v in self.values],
            "decision_fallback": list(self.fallback),
            "decision_global_threshold": round(float(self.global_value), 6),
            "decision_at_least_one": bool(self.at_least_one),
            "decision_how": self.how,
        }

    def describe(self, labels: Sequence[str]) -> str:
        own = len(self.values) - len(self.fallback)
        fell = [labels[i] for i in self.fallback]
        return (
            f"thresholds {self.how}: {own} label(s) with their own, {len(fell)} on the global "
            f"{self.global_value:.3f}"
            + (f" ({', '.join(fell[:10])}{' ...' if len(fell) > 10 else ''})" if fell else "")
            + ("; at least one label per text" if self.at_least_one else "")
        )


def from_config(config: Any) -> Thresholds:
    """The thresholds a multi-label model was saved with (0.5 each when it has none)."""
    values = _get(config, "decision_thresholds")
    if values is None:
        n = _get(config, "num_labels") or len(_get(config, "id2label") or {})
        return fixed(int(n), 0.5, False)
    return Thresholds(
        np.asarray(values, dtype=np.float64),
        tuple(int(i) for i in _get(config, "decision_fallback", ())),
        float(_get(config, "decision_global_threshold", 0.5)),
        bool(_get(config, "decision_at_least_one", False)),
        str(_get(config, "decision_how", "tuned on validation")),
    )


def fixed(num_labels: int, value: float, at_least_one: bool) -> Thresholds:
    return Thresholds(
        np.full(num_labels, float(value)), (), float(value), at_least_one, f"fixed at {value:g}"
    )


def best_cut(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) of the cut of ``scores`` with the best F1 against the 0/1 ``truth``;
    the threshold lies halfway between the lowest score kept and the highest one left out, so
    it does not sit on a validation score. No positive: (inf, 0.0)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    positives = int(t.sum())
    if positives == 0 or len(s) == 0:
        return float("inf"), 0.0
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    tp = np.cumsum(t)
    k = np.arange(1, len(s) + 1)
    f1 = 2.0 * tp / (k + positives)
    boundary = np.r_[s[:-1] > s[1:], True]  # a cut between two different scores
    f1 = np.where(boundary, f1, -1.0)
    best = int(np.argmax(f1))
    below = s[best + 1] if best + 1 < len(s) else min(s[best] - 1e-6, 0.0)
    return float((s[best] + below) / 2.0), float(f1[best])


def tune(y: np.ndarray, probs: np.ndarray, min_positives: int, at_least_one: bool) -> Thresholds:
    """Per-label thresholds from validation truth ``y`` (n, L) and probabilities (n, L)."""
    y = np.asarray(y, dtype=bool)
    global_value, _ = best_cut(probs, y)
    if not np.isfinite(global_value):
        global_value = 0.5
    values = np.full(y.shape[1], global_value)
    fallback: list[int] = []
    for j in range(y.shape[1]):
        if int(y[:, j].sum()) < min_positives:
            fallback.append(j)
            continue
        values[j] = best_cut(probs[:, j], y[:, j])[0]
    return Thresholds(values, tuple(fallback), global_value, at_least_one, "tuned on validation")


def choose(
    setting: str | float, min_positives: int, y: np.ndarray, probs: np.ndarray, at_least_one: bool
) -> Thresholds:
    """``train.multi_label.thresholds``: ``tuned`` on (``y``, ``probs``), or one fixed value."""
    if setting == "tuned":
        return tune(y, probs, min_positives, at_least_one)
    return fixed(np.asarray(probs).shape[1], float(setting), at_least_one)


def decide(probs: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """(n, L) boolean label sets: each label at or above its threshold; with ``at_least_one``,
    a text with none gets its most likely label."""
    probs = np.asarray(probs)
    out = probs >= thresholds.values[None, :]
    if thresholds.at_least_one and len(probs):
        empty = ~out.any(axis=1)
        out[np.flatnonzero(empty), probs[empty].argmax(axis=1)] = True
    return out


def label_sets(decisions: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    return [[labels[j] for j in np.flatnonzero(row)] for row in np.asarray(decisions)]
