"""Two-sample tests between the reference (training data) and a batch seen in use.

Why these are written here and not taken from a drift library: Evidently 0.7's embedding drift
(``ModelDriftMethod``) scores one 50/50 split with no interval and its ``MMDDriftMethod``
thresholds a bootstrap of the reference alone, with no p-value; alibi-detect 0.13 (MMD with
permutations) needs numpy<2 and transformers<4.58, NannyML 0.13 pulls xgboost, lightgbm and
cloud SDKs. The statistics themselves come from scikit-learn (cross-validated classifier,
ROC-AUC) and SciPy (the permutation test, chi-square); only the MMD kernel sum and the PSI
formula are a few lines of numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PSI_EPS = 1e-4  # a class absent on one side counts as this share, so the PSI stays finite


@dataclass
class DomainResult:
    """A classifier that tells batch texts from reference texts: ROC-AUC 0.5 means it
    cannot (no drift); 1.0 that the batch is wholly different."""

    auc: float
    low: float
    high: float
    batch_scores: np.ndarray  # out-of-fold P(batch) of each batch row
    reference_scores: np.ndarray  # the same for each reference row


def domain_classifier(
    reference: np.ndarray,
    batch: np.ndarray,
    folds: int,
    bootstrap: int,
    level: float,
    seed: int,
) -> DomainResult:
    """Cross-validated logistic regression (standardised embeddings, balanced classes);
    ROC-AUC of its out-of-fold scores with a percentile bootstrap interval."""
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([reference, batch])
    y = np.r_[np.zeros(len(reference), dtype=int), np.ones(len(batch), dtype=int)]
    folds = max(2, min(folds, len(reference), len(batch)))
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000),
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    rng = np.random.default_rng(seed)
    ref, cur = scores[y == 0], scores[y == 1]
    # Stratified bootstrap (each side resampled within itself); ROC-AUC = U / (n1 n0), the
    # Mann-Whitney statistic, which SciPy computes ten times faster than roc_auc_score.
    cur_draws = cur[rng.integers(0, len(cur), (bootstrap, len(cur)))]
    ref_draws = ref[rng.integers(0, len(ref), (bootstrap, len(ref)))]
    u = mannwhitneyu(cur_draws, ref_draws, axis=1, method="asymptotic").statistic
    aucs = u / (len(cur) * len(ref))
    tail = (1 - level) / 2
    low, high = np.quantile(aucs, [tail, 1 - tail])
    return DomainResult(auc, float(low), float(high), cur, ref)


@dataclass
class MmdResult:
    mmd2: float  # squared maximum mean discrepancy (biased estimate), RBF kernel
    p_value: float
    bandwidth: float
    permutations: int


def mmd_test(
    reference: np.ndarray, batch: np.ndarray, permutations: int, max_samples: int, seed: int
) -> MmdResult:
    """Kernel two-sample test (Gretton et al. 2012): MMD² with a Gaussian kernel whose width is
    the median pairwise distance, its p-value from ``scipy.stats.permutation_test`` permuting
    which rows are reference and which batch over one precomputed kernel matrix."""
    from scipy.spatial.distance import cdist, pdist
    from scipy.stats import permutation_test

    rng = np.random.default_rng(seed)
    ref = reference[rng.permutation(len(reference))[:max_samples]]
    cur = batch[rng.permutation(len(batch))[:max_samples]]
    x = np.vstack([ref, cur]).astype(np.float64)
    distances = pdist(x)
    bandwidth = float(np.median(distances)) or 1.0
    kernel = np.exp(-(cdist(x, x, "sqeuclidean")) / (2 * bandwidth**2)).astype(np.float32)
    m, n = len(ref), len(cur)

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> Any:
        a, b = np.atleast_2d(a).astype(int), np.atleast_2d(b).astype(int)
        weights = np.zeros((a.shape[0], m + n), dtype=np.float32)
        rows = np.arange(a.shape[0])[:, None]
        weights[rows, a] = 1.0 / m
        weights[rows, b] = -1.0 / n
        values = np.einsum("ij,ij->i", weights @ kernel, weights)  # w' K w per permutation
        return values if values.shape[0] > 1 else values[0]

    result = permutation_test(
        (np.arange(m), np.arange(m, m + n)),
        statistic,
        permutation_type="independent",
        vectorized=True,
        n_resamples=permutations,
        alternative="greater",
        batch=50,
        rng=rng,
    )
    return MmdResult(float(result.statistic), float(result.pvalue), bandwidth, permutations)


def shares(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(predicted, minlength=num_classes).astype(float)
    return counts / max(counts.sum(), 1.0)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum (a - e) ln(a / e) over classes (shares)."""
    e = np.clip(expected, PSI_EPS, None)
    a = np.clip(actual, PSI_EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def prediction_drift(
    reference_predicted: np.ndarray, batch_predicted: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Predicted-label distribution of the batch against the reference's: chi-square test of
    homogeneity (``scipy.stats.chi2_contingency``) and PSI."""
    from scipy.stats import chi2_contingency

    k = len(labels)
    table = np.vstack(
        [np.bincount(reference_predicted, minlength=k), np.bincount(batch_predicted, minlength=k)]
    )
    used = table.sum(axis=0) > 0
    if used.sum() >= 2:
        chi2, p_value, dof, _ = chi2_contingency(table[:, used])
    else:  # one class predicted on both sides: nothing can have moved
        chi2, p_value, dof = 0.0, 1.0, 0
    ref_share, cur_share = shares(reference_predicted, k), shares(batch_predicted, k)
    return {
        "chi2": float(chi2),
        "dof": int(dof),
        "p_value": float(p_value),
        "psi": psi(ref_share, cur_share),
        "reference_share": dict(zip(labels, ref_share.round(4).tolist(), strict=True)),
        "batch_share": dict(zip(labels, cur_share.round(4).tolist(), strict=True)),
    }
