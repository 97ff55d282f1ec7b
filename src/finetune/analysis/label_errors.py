"""Likely label errors with confident learning (cleanlab).

Two rankings:

- on the evaluated split, from the fine-tuned model's own predicted probabilities (these rows
  were not trained on, so the probabilities are out-of-sample);
- on the labelled data the model was trained on, with out-of-sample probabilities: each row
  predicted by a model that never saw it. The fine-tuned model itself saw (and partly memorised)
  those labels, so its own probabilities would hide the errors. The sources that
  ``error_analysis.label_errors.sources`` lists, mixed with the weights that best explain the
  given labels (:func:`mixture_weights`):

  - ``backbone``: a cross-validated logistic regression on the pretrained backbone's frozen,
    mean-pooled sentence embeddings (never trained on these labels, so nothing memorised);
  - ``tfidf``: the in-run TF-IDF baseline's model, cross-validated (a view of the words that
    does not share the transformer's mistakes);
  - ``embeddings``: the same regression on the trained model's embeddings (these saw the labels);
  - ``finetuned``: the backbone fine-tuned once per fold (costly).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# What each source is, in the report's words.
DESCRIPTIONS = {
    "backbone": "a logistic regression on the pretrained backbone's frozen sentence embeddings",
    "tfidf": "the TF-IDF baseline's logistic regression",
    "embeddings": "a logistic regression on the trained model's frozen sentence embeddings",
    "finetuned": "the backbone fine-tuned on the other folds",
}

# One source of out-of-sample probabilities: (labelled rows, their label ids) -> (rows, classes).
Source = Callable[[pd.DataFrame, np.ndarray], np.ndarray]

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
    features: Any,
    y: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
    estimator: Any = None,
) -> np.ndarray:
    """Out-of-sample class probabilities: each row predicted by a model that never saw it.
    ``features``: a matrix (with the default estimator, a scaled logistic regression with
    inverse regularisation ``c``) or whatever ``estimator`` (an unfitted scikit-learn model with
    ``predict_proba``) takes, such as a list of texts for a TF-IDF pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(y)
    # Every class must be in every training fold, or the probability columns would not align.
    folds = max(2, min(folds, int(counts[counts > 0].min())))
    if estimator is None:
        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    classes = np.unique(y)
    out = np.zeros((len(y), int(y.max()) + 1 if len(y) else 0))
    out[:, classes] = cross_val_predict(estimator, features, y, cv=cv, method="predict_proba")
    return out


def mixture_weights(parts: list[np.ndarray], y: np.ndarray, iterations: int = 200) -> np.ndarray:
    """The weights of the mixture of the sources' probabilities that best explains the given
    labels (maximum likelihood, by EM): a source that predicts the labels poorly on this data
    (frozen embeddings of long texts, say) gets little weight, one that predicts them well most.
    Label errors are a few percent of the rows, so they barely move the weights."""
    k = len(parts)
    if k == 1:
        return np.ones(1)
    likelihood = np.stack([p[np.arange(len(y)), y] for p in parts], axis=1)  # (rows, sources)
    likelihood = np.clip(likelihood, 1e-12, None)
    weights = np.full(k, 1.0 / k)
    for _ in range(iterations):
        resp = likelihood * weights
        resp /= resp.sum(axis=1, keepdims=True)
        updated = resp.mean(axis=0)
        if np.abs(updated - weights).max() < 1e-6:
            return updated
        weights = updated
    return weights


def combine_probs(
    parts: list[np.ndarray], y: np.ndarray, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sources' probabilities (each padded to ``num_labels`` columns: a source fitted on the
    labelled rows has columns only up to the highest label id present) mixed with
    :func:`mixture_weights`; returns the mixture and the weights."""
    if not parts:
        raise ValueError("no out-of-sample probabilities to combine")
    padded = [np.pad(p, ((0, 0), (0, num_labels - p.shape[1]))) for p in parts]
    weights = mixture_weights(padded, np.asarray(y, dtype=int))
    return np.tensordot(weights, np.stack(padded), axes=1), weights


def out_of_sample_probs(
    rows: pd.DataFrame, y: np.ndarray, num_labels: int, sources: Mapping[str, Source]
) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Each source's probabilities for ``rows``, mixed (:func:`combine_probs`); the seconds
    each source took and its weight in the mixture."""
    parts, seconds = [], {}
    for name, source in sources.items():
        began = time.perf_counter()
        parts.append(source(rows, y))
        seconds[name] = time.perf_counter() - began
        log.info("label errors: %s probabilities for %d rows in %.0f s", name, len(rows),
                 seconds[name])  # fmt: skip
    mixed, weights = combine_probs(parts, y, num_labels)
    weight = dict(zip(sources, (round(float(w), 4) for w in weights), strict=True))
    if len(weight) > 1:
        log.info("label errors: the sources' weights in the mixture: %s", weight)
    return mixed, seconds, weight


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
