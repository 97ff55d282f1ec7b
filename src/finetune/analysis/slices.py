"""Slice metrics with bootstrap confidence intervals: where is the model weak?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune.augment.text import NEGATION_RE
from finetune.core.schema import SlicesConfig


def has_negation(texts: pd.Series) -> pd.Series:
    return texts.str.contains(NEGATION_RE, regex=True)


def length_bins(words: pd.Series, edges: list[int]) -> pd.Series:
    """Word-count bins such as "1-10", "11-25", "26-50", "51+" from ascending upper edges."""
    labels, lower = [], 1
    for edge in edges:
        labels.append(f"{lower}-{edge} words")
        lower = edge + 1
    labels.append(f"{lower}+ words")
    return pd.cut(words, bins=[0, *edges, np.inf], labels=labels, right=True).astype(str)


def bootstrap_ci(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of 0/1 ``values``."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def slice_frame(predictions: pd.DataFrame, spec: SlicesConfig, columns: list[str]) -> pd.DataFrame:
    """Per example: the value of every slicing dimension (columns ``slice_<dimension>``)."""
    out = pd.DataFrame(index=predictions.index)
    words = predictions["text"].str.split().str.len()
    out["length"] = length_bins(words, list(spec.length_bins))
    out["class"] = predictions["label"].astype(str)
    out["negation"] = np.where(has_negation(predictions["text"]), "with negation", "no negation")
    if "truncated" in predictions:
        out["truncation"] = np.where(predictions["truncated"], "truncated", "not truncated")
    for column in columns:
        if column in predictions:
            out[column] = predictions[column].fillna("<missing>").astype(str)
    return out


def slice_metrics(
    predictions: pd.DataFrame, spec: SlicesConfig, columns: list[str], seed: int
) -> pd.DataFrame:
    """Accuracy (with bootstrap CI) and error count per slice of every dimension.

    ``weak`` marks slices of at least ``min_slice_size`` examples whose accuracy CI lies
    entirely below overall accuracy, or (when none does) the ``weakest_k`` lowest ones.
    """
    rng = np.random.default_rng(seed)
    n_boot, min_size = spec.bootstrap, spec.min_slice_size
    dims = slice_frame(predictions, spec, columns)
    correct = predictions["correct"].to_numpy().astype(float)
    overall = float(correct.mean()) if len(correct) else 0.0
    rows = []
    for dim in dims.columns:
        for value, idx in dims.groupby(dim).indices.items():
            values = correct[idx]
            low, high = bootstrap_ci(values, n_boot, rng)
            rows.append(
                {
                    "dimension": dim,
                    "slice": str(value),
                    "n": len(idx),
                    "errors": int((1 - values).sum()),
                    "accuracy": float(values.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "gap_vs_overall": float(values.mean()) - overall,
                }
            )
    table = pd.DataFrame(
        rows,
        columns=[
            "dimension",
            "slice",
            "n",
            "errors",
            "accuracy",
            "ci_low",
            "ci_high",
            "gap_vs_overall",
        ],
    )
    big = table["n"] >= min_size
    table["weak"] = big & (table["ci_high"] < overall)
    if not table["weak"].any() and big.any():
        k = spec.weakest_k
        weakest = table[big & (table["accuracy"] < overall)].nsmallest(k, "accuracy").index
        table.loc[weakest, "weak"] = True
    return table.sort_values(["dimension", "slice"], kind="stable").reset_index(drop=True)
