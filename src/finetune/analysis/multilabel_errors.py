"""error_analysis for a multi-label model: per label, what it adds that is not there (false
positives) and what it misses (false negatives), with examples; which labels it swaps for one
another (a true label missed and another predicted on the same text); label co-occurrence, given
against predicted; and the likely label errors of the evaluated split (cleanlab's
``multilabel_classification``: the model never trained on these rows, so its probabilities are
out of sample). Robustness and explanations score one predicted class per text and are not run
for multi-label models; the report says so."""

from __future__ import annotations

import logging
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from finetune.core.labels import prob_columns
from finetune.core.schema import ErrorAnalysisConfig
from finetune.evaluation.metrics import multilabel_f1
from finetune.modeling import decisions
from finetune.reporting.markdown import md_table

log = logging.getLogger(__name__)

NOT_RUN = (
    "Robustness tests and explanations score one predicted class per text; they are not run "
    "for multi-label models."
)


def label_matrices(
    predictions: pd.DataFrame, labels: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, decisions, probabilities) as (n, L) arrays from evaluate's predictions."""
    n = len(labels)
    y = decisions.multi_hot(predictions["label_ids"].tolist(), n) > 0
    pred = decisions.multi_hot(predictions["predicted_ids"].tolist(), n) > 0
    probs = predictions[prob_columns(labels)].to_numpy(dtype=np.float64)
    return y, pred, probs


def per_label(
    y: np.ndarray, pred: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> pd.DataFrame:
    """Support, predictions, TP/FP/FN, precision, recall and F1 per label; most errors first."""
    tp = (y & pred).sum(axis=0)
    fp = (~y & pred).sum(axis=0)
    fn = (y & ~pred).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    table = pd.DataFrame(
        {
            "label": labels,
            "support": y.sum(axis=0),
            "predicted": pred.sum(axis=0),
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "precision": np.round(precision, 4),
            "recall": np.round(recall, 4),
            "f1": np.round(f1, 4),
            "threshold": np.round(thresholds, 4),
        }
    )
    table["errors"] = table["false_positives"] + table["false_negatives"]
    return table.sort_values(["errors", "support"], ascending=[False, False], kind="stable")


def error_examples(
    predictions: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    order: list[str],
    per_kind: int,
) -> pd.DataFrame:
    """For each label in ``order``: its surest false positives (highest probability) and its
    worst false negatives (lowest probability), ``per_kind`` of each."""
    rows: list[dict[str, Any]] = []
    position = {label: j for j, label in enumerate(labels)}
    for label in order:
        j = position[label]
        for kind, mask, descending in (
            ("false_positive", ~y[:, j] & pred[:, j], True),
            ("false_negative", y[:, j] & ~pred[:, j], False),
        ):
            hits = np.flatnonzero(mask)
            ranked = hits[np.argsort(-probs[hits, j] if descending else probs[hits, j])]
            for i in ranked[:per_kind]:
                rows.append(
                    {
                        "label": label,
                        "kind": kind,
                        "id": predictions["id"].iloc[i],
                        "probability": round(float(probs[i, j]), 4),
                        "given": predictions["label"].iloc[i],
                        "predicted": predictions["predicted"].iloc[i],
                        "text": predictions["text"].iloc[i],
                    }
                )
    columns = ["label", "kind", "id", "probability", "given", "predicted", "text"]
    return pd.DataFrame(rows, columns=columns)


def swaps(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Label pairs (missed, added): texts where ``missed`` is a true label the model left out
    and ``added`` one it gave that is not there: the multi-label counterpart of a confusion."""
    missed = y & ~pred
    added = ~y & pred
    counts = missed.T.astype(np.int64) @ added.astype(np.int64)
    i, j = np.nonzero(counts)
    table = pd.DataFrame(
        {"missed": [labels[a] for a in i], "added": [labels[b] for b in j], "texts": counts[i, j]}
    )
    return table.sort_values("texts", ascending=False, kind="stable").reset_index(drop=True)


def cooccurrence(y: np.ndarray, pred: np.ndarray, labels: list[str], top: int) -> pd.DataFrame:
    """The ``top`` label pairs that occur together most (given or predicted): texts with both
    given, with both predicted."""
    given = y.T.astype(np.int64) @ y.astype(np.int64)
    predicted = pred.T.astype(np.int64) @ pred.astype(np.int64)
    rows = [
        {
            "label_a": labels[a],
            "label_b": labels[b],
            "given_together": int(given[a, b]),
            "predicted_together": int(predicted[a, b]),
        }
        for a, b in combinations(range(len(labels)), 2)
        if given[a, b] or predicted[a, b]
    ]
    columns = ["label_a", "label_b", "given_together", "predicted_together"]
    table = pd.DataFrame(rows, columns=columns)
    table["most"] = table[["given_together", "predicted_together"]].max(axis=1)
    table = table.sort_values("most", ascending=False, kind="stable").head(top)
    return table.drop(columns="most").reset_index(drop=True)


def label_issues(
    predictions: pd.DataFrame, y: np.ndarray, probs: np.ndarray, labels: list[str], shown: int
) -> pd.DataFrame:
    """The evaluated split's rows cleanlab's multi-label filter flags, worst label quality
    first (at most ``shown``)."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    columns = ["id", "label_quality", "given", "predicted", "text"]
    present = np.flatnonzero(y.any(axis=0))
    if len(predictions) < 2 or len(present) < 2:
        return pd.DataFrame(columns=columns)
    # cleanlab needs every label it scores to occur: the split's labels only
    index = {j: k for k, j in enumerate(present)}
    given = [[index[j] for j in np.flatnonzero(row) if j in index] for row in y]
    scores = probs[:, present]
    flagged = find_label_issues(given, scores)
    quality = get_label_quality_scores(given, scores)
    rows = np.flatnonzero(flagged)
    rows = rows[np.argsort(quality[rows], kind="stable")][:shown]
    return pd.DataFrame(
        {
            "id": predictions["id"].iloc[rows].to_numpy(),
            "label_quality": np.round(quality[rows], 4),
            "given": predictions["label"].iloc[rows].to_numpy(),
            "predicted": predictions["predicted"].iloc[rows].to_numpy(),
            "text": predictions["text"].iloc[rows].to_numpy(),
        },
        columns=columns,
    ).assign(flagged_total=int(flagged.sum()))


def analyse(
    predictions: pd.DataFrame,
    labels: list[str],
    thresholds: decisions.Thresholds,
    spec: ErrorAnalysisConfig,
    eval_metrics: dict[str, Any],
) -> dict[str, Any]:
    """Pure step: evaluate's predictions in; summary, tables and the Markdown report out."""
    y, pred, probs = label_matrices(predictions, labels)
    table = per_label(y, pred, labels, thresholds.values)
    worst = table[table["errors"] > 0]["label"].head(spec.top_confusions).tolist()
    examples = error_examples(
        predictions, y, pred, probs, labels, worst, spec.examples_per_confusion
    )
    swapped = swaps(y, pred, labels)
    together = cooccurrence(y, pred, labels, spec.top_confusions)
    issues = label_issues(predictions, y, probs, labels, spec.label_errors.shown)
    wrong = ~(y == pred).all(axis=1)
    summary: dict[str, Any] = {
        "task": "multi_label",
        "num_examples": len(predictions),
        "num_errors": int(wrong.sum()),
        "error_rate": float(wrong.mean()) if len(wrong) else 0.0,
        "accuracy": float(1 - wrong.mean()) if len(wrong) else 0.0,
        "f1_micro": multilabel_f1(y, pred, "micro"),
        "f1_macro": multilabel_f1(y, pred, "macro"),
        "false_positives": int((~y & pred).sum()),
        "false_negatives": int((y & ~pred).sum()),
        "texts_without_predicted_label": int((~pred.any(axis=1)).sum()),
        "label_issues_test": int(issues["flagged_total"].iloc[0]) if len(issues) else 0,
    }
    markdown = render_markdown(summary, table, examples, swapped, together, issues, eval_metrics)
    return {
        "summary": summary,
        "tables": {
            "per_label": table,
            "errors": examples,
            "label_swaps": swapped,
            "cooccurrence": together,
            "label_issues_test": issues.drop(columns="flagged_total", errors="ignore"),
        },
        "markdown": markdown,
    }


def render_markdown(
    summary: dict[str, Any],
    table: pd.DataFrame,
    examples: pd.DataFrame,
    swapped: pd.DataFrame,
    together: pd.DataFrame,
    issues: pd.DataFrame,
    eval_metrics: dict[str, Any],
) -> str:
    base = eval_metrics.get("baseline", {})
    lines = [
        "# Error analysis (multi-label)",
        "",
        f"{summary['num_examples']} texts; {summary['num_errors']} with a label set that is not "
        f"exactly right (subset accuracy {summary['accuracy']:.4f}); "
        f"{summary['false_positives']} labels added that are not there, "
        f"{summary['false_negatives']} missed. Micro-F1 {summary['f1_micro']:.4f}, macro-F1 "
        f"{summary['f1_macro']:.4f}"
        + (
            f" (one-vs-rest TF-IDF baseline: {base['f1_micro']:.4f} / {base['f1_macro']:.4f})."
            if "f1_micro" in base
            else "."
        ),
        "",
        "## Labels by errors",
        "",
        md_table(table.drop(columns="errors").head(30)),
        "",
        "## Labels swapped (a true label missed, another added on the same text)",
        "",
        md_table(swapped.head(15)) if len(swapped) else "None.",
        "",
        "## Label pairs given / predicted together",
        "",
        md_table(together) if len(together) else "No text has two labels.",
        "",
        "## Examples: surest false positives and worst false negatives",
        "",
    ]
    if len(examples):
        shown = examples.assign(text=examples["text"].str.slice(0, 160))
        lines.append(md_table(shown.drop(columns="id")))
    else:
        lines.append("None: every label of every text is right.")
    lines += ["", "## Likely label errors (cleanlab, multi-label)", ""]
    if len(issues):
        lines.append(
            f"{int(issues['flagged_total'].iloc[0])} row(s) flagged; the worst {len(issues)}:"
        )
        shown = issues.drop(columns="flagged_total").assign(text=issues["text"].str.slice(0, 160))
        lines += ["", md_table(shown)]
    else:
        lines.append("None flagged.")
    lines += ["", "## Not run", "", NOT_RUN, ""]
    return "\n".join(lines)


def render_html(result: dict[str, Any], model_dir: str) -> str:
    from finetune.pages.html import render

    tables = result["tables"]
    sections = [
        ("summary", "Summary"),
        ("labels", "Labels by errors"),
        ("swaps", "Labels swapped"),
        ("cooccurrence", "Co-occurrence"),
        ("examples", "Examples"),
        ("label-issues", "Likely label errors"),
    ]
    return render(
        "multilabel_errors.html.j2",
        title="Error analysis (multi-label)",
        subtitle=f"model {model_dir}",
        sections=sections,
        summary=result["summary"],
        not_run=NOT_RUN,
        per_label=tables["per_label"].drop(columns="errors"),
        swaps=tables["label_swaps"].head(30),
        together=tables["cooccurrence"],
        examples=tables["errors"],
        issues=tables["label_issues_test"],
    )
