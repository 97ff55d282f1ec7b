"""Likely label errors with confident learning (cleanlab).

Two rankings:

- on the evaluated split, from the fine-tuned model's own predicted probabilities (these rows
  were not trained on, so the probabilities are out-of-sample);
- on the labelled data the model was trained on, with out-of-sample probabilities from a
  cross-validated logistic regression on frozen sentence embeddings of the trained model
  (mean-pooled last hidden states). The model itself saw (and partly memorised) those labels, so
  its own probabilities would hide the errors; the held-out folds do not.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = [
    "rank",
    "flagged",
    "split",
    "id",
    "text",
    "given_label",
    "suggested_label",
    "label_quality",
    "given_label_probability",
    "suggested_label_probability",
]


def rank_label_issues(
    frame: pd.DataFrame,
    labels_ids: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    min_rows: int = 0,
) -> pd.DataFrame:
    """Rows cleanlab flags as label issues (``flagged``), most likely first (lowest
    self-confidence), then, up to ``min_rows`` rows in all, the next-lowest-quality rows: a
    review queue, since cleanlab's estimate of the number of issues is itself noisy."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    empty = pd.DataFrame(columns=COLUMNS)
    labels_ids = np.asarray(labels_ids, dtype=int)
    if len(labels_ids) == 0:
        return empty
    present = np.unique(labels_ids)
    # cleanlab needs every class column to have at least one given label; restrict to those.
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    remap = {c: i for i, c in enumerate(present)}
    given = np.array([remap[c] for c in labels_ids])
    if len(present) < 2:
        return empty
    ranked = find_label_issues(given, sub, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(given, sub, method="self_confidence")
    suggested = present[sub.argmax(axis=1)]
    flagged = set(int(i) for i in ranked)
    rest = [int(i) for i in np.argsort(quality, kind="stable") if int(i) not in flagged]
    order = [int(i) for i in ranked] + rest[: max(0, min_rows - len(ranked))]
    rows = [
        {
            "rank": r + 1,
            "flagged": i in flagged,
            "split": frame["split"].iloc[i] if "split" in frame else "",
            "id": frame["id"].iloc[i],
            "text": frame["text"].iloc[i],
            "given_label": labels[labels_ids[i]],
            "suggested_label": labels[suggested[i]],
            "label_quality": float(quality[i]),
            "given_label_probability": float(probs[i, labels_ids[i]]),
            "suggested_label_probability": float(probs[i, suggested[i]]),
        }
        for r, i in enumerate(order)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def cross_validated_probs(
    embeddings: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, c: float = 1.0
) -> np.ndarray:
    """Out-of-sample class probabilities: each row predicted by a model that never saw it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(y)
    # Every class must be in every training fold, or the probability columns would not align.
    folds = max(2, min(folds, int(counts[counts > 0].min())))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    classes = np.unique(y)
    out = np.zeros((len(y), int(y.max()) + 1 if len(y) else 0))
    out[:, classes] = cross_val_predict(clf, embeddings, y, cv=cv, method="predict_proba")
    return out


def manifest_recall(
    ranked: pd.DataFrame, manifest: pd.DataFrame | None, ids_in_scope: set[str]
) -> dict[str, Any] | None:
    """Of the manifest rows present in the ranked data, how many are in the first 2x entries."""
    if manifest is None:
        return None
    known = set(manifest["id"].astype(str)) & ids_in_scope
    if not known:
        return {"known_in_scope": 0, "found_in_top_2x": 0, "recall_at_2x": None, "found": 0}
    top = ranked.head(2 * len(known))
    found_top = set(top["id"].astype(str)) & known
    return {
        "known_in_scope": len(known),
        "found_in_top_2x": len(found_top),
        "recall_at_2x": len(found_top) / len(known),
        "found": len(set(ranked["id"].astype(str)) & known),
    }
