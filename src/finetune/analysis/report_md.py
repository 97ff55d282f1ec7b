"""The short Markdown version of the error report."""

from __future__ import annotations

from typing import Any

import pandas as pd

from finetune.reporting.markdown import md_cell, md_table


def render_report(
    metrics: dict[str, Any],
    errors: pd.DataFrame,
    pairs: pd.DataFrame,
    examples: dict[tuple[str, str], list[str]],
    known: dict[str, Any] | None,
    shown_errors: int,
) -> str:
    n_err = int(metrics["num_errors"])
    lines = [
        "# Error analysis\n",
        "## Summary\n",
        f"- test examples: {metrics['num_examples']}",
        f"- accuracy: {metrics['accuracy']:.4f}, macro-F1: {metrics['f1_macro']:.4f}",
        f"- misclassified: {n_err} ({metrics['error_rate']:.1%})\n",
        "## Most frequent confusions\n",
        md_table(
            pairs.head(len(examples)).assign(
                share_of_errors=lambda d: d["share_of_errors"].round(3)
            )
        ),
    ]
    for (true, pred), texts in examples.items():
        lines.append(f"**{true} → {pred}**\n")
        lines.extend(f"- {md_cell(t)}" for t in texts)
        lines.append("")
    lines += [
        f"## Misclassified examples, most confident first "
        f"(top {min(shown_errors, len(errors))} of {n_err})\n",
        md_table(
            errors.head(shown_errors)[["id", "true_label", "predicted_label", "confidence", "text"]]
        ),
    ]
    if known is not None:
        lines += [
            "## Known label errors (demo manifest)\n",
            f"{known['known_mislabelled_in_split']} rows of this split are listed as mislabelled; "
            f"the model disagrees with the given label on {known['flagged_as_errors']} of them and "
            f"predicts the true label on {known['predicted_true_label']}.\n",
            md_table(pd.DataFrame(known["rows"])),
        ]
    return "\n".join(lines) + "\n"
