"""The HTML error report: everything the analysis computed, as the context of the Jinja2 page
``error_report.html.j2`` (:mod:`finetune.pages.html`; every value autoescaped)."""

from __future__ import annotations

import time
from typing import Any

from finetune.analysis import label_errors as L
from finetune.analysis.explain import tables as explanation_page_tables
from finetune.analysis.previous import LOWER_IS_BETTER
from finetune.pages import html as H

SECTIONS = [
    ("summary", "Summary"),
    ("confusions", "Confusions"),
    ("errors", "Errors, most confident first"),
    ("slices", "Slices"),
    ("label-errors", "Likely label errors"),
    ("robustness", "Robustness"),
    ("explanations", "Explanations"),
    ("next-steps", "What to look at next"),
]
ERROR_COLUMNS = ["id", "true_label", "predicted_label", "confidence", "text"]
LABEL_ISSUE_COLUMNS = ["rank", "flagged", "split", "id", "given_label", "suggested_label"]
FLIP_COLUMNS = ["test", "label", "original_prediction", "perturbed_prediction", "perturbed_text"]


def render_html(ctx: dict[str, Any]) -> str:
    """The report page from everything ``analyse_all`` and ``finish_report`` computed."""
    s, ev, spec = ctx["summary"], ctx["eval_metrics"], ctx["spec"]
    inference = {
        "samples_per_second": None,
        "batch_latency_ms_p50": None,
        "batch_latency_ms_p95": None,
        "batch_size": None,
        **(ev.get("inference") or {}),
    }
    errors, li_cv, li_test = ctx["errors"], ctx["label_issues_cv"], ctx["label_issues_test"]
    shown = spec.shown_errors
    cards = [
        ("accuracy", H.fmt(s["accuracy"])),
        ("macro-F1", H.fmt(s["f1_macro"])),
        ("errors", f"{s['num_errors']} / {s['num_examples']}"),
        ("vs TF-IDF macro-F1", H.signed((ev.get("delta_vs_baseline") or {}).get("f1_macro"))),
        ("likely label errors", str(s["label_issues_cv"])),
        ("weak slices", str(s["weak_slices"])),
        ("samples/s", H.fmt(inference["samples_per_second"], 1)),
    ]
    comparison = [
        {**row, "higher_is_better": row["metric"] not in LOWER_IS_BETTER}
        for row in ctx["comparison"].to_dict("records")
    ]
    explanation_tables = explanation_page_tables(ctx["explanations"])
    return H.render(
        "error_report.html.j2",
        title="Error analysis",
        subtitle=(
            f"{s['num_examples']} {ctx['split']} examples · model run {ctx.get('run_id') or '–'}"
            f" · generated {time.strftime('%Y-%m-%d %H:%M:%S')}"
        ),
        sections=SECTIONS,
        baseline_warning=ev.get("baseline_warning"),
        what_to_try=ev.get("what_to_try") or [],
        cards=cards,
        split=ctx["split"],
        previous_source=ctx["previous_source"],
        comparison=comparison,
        inference=inference,
        confusion_uri=ctx["confusion_uri"],
        pairs=H.table(ctx["pairs"].head(spec.top_confusions)),
        examples=list(ctx["examples"].items()),
        num_errors=len(errors),
        num_examples=s["num_examples"],
        shown_errors=min(shown, len(errors)),
        errors=H.table(errors.head(shown), ERROR_COLUMNS),
        weakest_k=spec.slices.weakest_k,
        min_slice_size=spec.slices.min_slice_size,
        slices_uri=ctx.get("slices_uri"),
        slices=H.table(ctx["slices"], highlight="weak"),
        cv_splits=ctx["cv_splits"],
        folds=spec.label_errors.folds,
        label_error_sources=[
            L.DESCRIPTIONS[name] + (f" (weight {w:.2f})" if len(ctx["source_weights"]) > 1 else "")
            for name, w in ctx["source_weights"].items()
        ],
        recall=ctx["recall"],
        flagged_cv=int(li_cv["flagged"].sum()) if len(li_cv) else 0,
        label_issues_cv=H.table(
            li_cv.head(spec.label_errors.shown), [*LABEL_ISSUE_COLUMNS, "label_quality", "text"]
        ),
        flagged_test=len(li_test),
        label_issues_test=H.table(
            li_test.head(spec.label_errors.shown),
            ["rank", "id", "given_label", "suggested_label", "label_quality", "text"],
        ),
        robustness_uri=ctx.get("robustness_uri"),
        robustness=H.table(ctx["robustness"]),
        robustness_examples=H.table(ctx["robustness_examples"], FLIP_COLUMNS),
        explanations=ctx["explanations"],
        explanation_table=explanation_tables[0],
        agreement_table=explanation_tables[1],
        next_steps=ctx["next_steps"],
    )
