"""What to look at next: short, concrete actions derived from the error analysis."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd


def next_steps(
    summary: dict[str, Any],
    pairs: pd.DataFrame,
    slices: pd.DataFrame,
    label_issues: pd.DataFrame,
    robustness: pd.DataFrame,
    attributions: list[dict[str, Any]],
    eval_metrics: dict[str, Any],
    comparison: pd.DataFrame,
) -> list[str]:
    """Short, concrete actions derived from the findings, most important first."""
    steps: list[str] = []
    if not comparison.empty:
        f1 = comparison.set_index("metric").get("change", pd.Series(dtype=float)).get("f1_macro")
        if f1 is not None and not pd.isna(f1) and f1 < -0.01:
            steps.append(
                f"Macro-F1 dropped by {-f1:.3f} against the previous experiment: diff the params "
                "(`dvc params diff`) and data versions before anything else."
            )
    flagged = (
        label_issues[label_issues["flagged"].astype(bool)] if len(label_issues) else label_issues
    )
    if len(flagged):
        top = ", ".join(flagged["id"].astype(str).head(5))
        steps.append(
            f"{len(flagged)} labelled rows look mislabelled (confident learning). Review the "
            f"top of the list (e.g. {top}), fix the labels in the raw data and retrain: noisy "
            "training labels cap what any model can learn."
        )
    weak = slices[slices["weak"]] if len(slices) else slices
    for row in weak.sort_values("accuracy").head(3).itertuples():
        steps.append(
            f"Weak slice {row.dimension} = {row.slice}: accuracy {row.accuracy:.2f} "
            f"(95% CI {row.ci_low:.2f}–{row.ci_high:.2f}, n={row.n}) vs "
            f"{summary['accuracy']:.2f} overall. Read its errors and add training examples "
            "like them."
        )
    if len(pairs):
        top = pairs.iloc[0]
        steps.append(
            f"The most frequent confusion is {top['true_label']} → {top['predicted_label']} "
            f"({int(top['count'])} errors, {top['share_of_errors']:.0%} of all): check the "
            "labelling guideline that separates these classes and the examples in Confusions."
        )
    if len(robustness):
        worst = robustness.dropna(subset=["flip_rate"]).sort_values("flip_rate").tail(1)
        for row in worst.itertuples():
            if row.flip_rate >= 0.02:
                steps.append(
                    f"{row.flip_rate:.1%} of predictions flip under '{row.test}' edits "
                    f"({row.flipped}/{row.applicable}): add such edits to augmentation "
                    "(conf/augment) and re-check this flip rate."
                )
    if attributions:
        words = Counter(a["top_word"].lower() for a in attributions if a.get("top_word"))
        common = [(w, n) for w, n in words.most_common(3) if n >= 2]
        if common:
            listed = ", ".join(f"'{w}' ({n}×)" for w, n in common)
            steps.append(
                f"The word(s) pushing hardest towards the wrong class in the top errors: "
                f"{listed}. Look for spurious cues tied to these words in the training data."
            )
    ece, scaled = eval_metrics.get("ece"), eval_metrics.get("ece_temperature_scaled")
    if ece is not None and scaled is not None and ece > 0.05 and scaled < ece:
        steps.append(
            f"Confidence is miscalibrated (ECE {ece:.3f}); temperature scaling with "
            f"T={eval_metrics.get('temperature', 1):.2f} brings it to {scaled:.3f}: apply it "
            "before using confidence thresholds."
        )
    delta = (eval_metrics.get("delta_vs_baseline") or {}).get("f1_macro")
    if delta is not None and delta < 0.01:
        steps.append(
            f"The transformer beats the TF-IDF baseline by only {delta:+.3f} macro-F1: "
            "the extra cost buys little on this data; try a larger backbone or more data."
        )
    truncated = slices[(slices["dimension"] == "truncation") & (slices["slice"] == "truncated")]
    if len(truncated) and int(truncated["errors"].iloc[0]) > 0:
        steps.append(
            f"{int(truncated['errors'].iloc[0])} errors are on truncated texts: raise "
            "model.max_length or keep the end of long messages."
        )
    if not steps:
        steps.append("No clear weakness found: collect a harder test set.")
    return steps
