"""The HTML error report page from everything the analysis computed."""

from __future__ import annotations

import time
from typing import Any

from finetune.analysis.previous import LOWER_IS_BETTER
from finetune.reporting import html as H


def render_html(ctx: dict[str, Any]) -> str:
    """The report page from everything ``analyse_all`` computed."""
    s, ev = ctx["summary"], ctx["eval_metrics"]
    sections: dict[str, str] = {}
    comp = ctx["comparison"]
    comp_html = (
        "<table><thead><tr><th>metric</th><th>current</th><th>previous</th><th>change</th>"
        "<th>TF-IDF baseline</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{H.esc(r.metric)}</td><td class='num'>{H.fmt(r.current)}</td>"
            f"<td class='num'>{H.fmt(r.previous)}</td>"
            f"<td class='num'>{H.signed(r.change, 3, r.metric not in LOWER_IS_BETTER)}</td>"
            f"<td class='num'>{H.fmt(r.baseline_tfidf)}</td></tr>"
            for r in comp.itertuples()
        )
        + "</tbody></table>"
    )
    inf = ev.get("inference") or {}
    sections["summary"] = (
        H.cards(
            [
                ("accuracy", H.fmt(s["accuracy"])),
                ("macro-F1", H.fmt(s["f1_macro"])),
                ("errors", f"{s['num_errors']} / {s['num_examples']}"),
                (
                    "vs TF-IDF macro-F1",
                    H.signed((ev.get("delta_vs_baseline") or {}).get("f1_macro")),
                ),
                ("likely label errors", str(s["label_issues_cv"])),
                ("weak slices", str(s["weak_slices"])),
                ("samples/s", H.fmt(inf.get("samples_per_second"), 1)),
            ]
        )
        + f"<p class='muted'>Split: {H.esc(ev.get('split', 'test'))}. Compared with "
        f"{H.esc(ctx['previous_source'])}. The change column is current minus previous; "
        "the baseline column is the TF-IDF + logistic regression trained in the evaluate stage "
        "on the same splits.</p>"
        + comp_html
        + f"<p class='muted'>Inference: {H.fmt(inf.get('samples_per_second'), 1)} samples/s, "
        f"batch latency p50 {H.fmt(inf.get('batch_latency_ms_p50'), 1)} ms, "
        f"p95 {H.fmt(inf.get('batch_latency_ms_p95'), 1)} ms (batch size "
        f"{H.esc(inf.get('batch_size', '–'))}, texts sorted by length).</p>"
    )
    conf = [H.image(ctx["confusion_uri"], "confusion matrix")]
    conf.append(H.table(ctx["pairs"].head(ctx["spec"]["top_confusions"])))
    for (true, pred), texts in ctx["examples"].items():
        conf.append(f"<h3>{H.esc(true)} → {H.esc(pred)}</h3><ul>")
        conf.extend(f"<li>{H.esc(t)}</li>" for t in texts)
        conf.append("</ul>")
    sections["confusions"] = "".join(conf)
    errors = ctx["errors"]
    shown = int(ctx["spec"].get("shown_errors", 30))
    sections["errors"] = (
        f"<p class='muted'>{len(errors)} misclassified (of {s['num_examples']}); the "
        f"{min(shown, len(errors))} most confident are shown, all are in tables/errors.csv.</p>"
        + H.table(
            errors.head(shown),
            ["id", "true_label", "predicted_label", "confidence", "text"],
        )
    )
    sl = ctx["slices"]
    sections["slices"] = (
        "<p class='muted'>Accuracy per slice with a 95% bootstrap confidence interval. Red rows "
        "are weak: their whole interval lies below overall accuracy (or, when none does, the "
        f"lowest {ctx['spec']['slices'].get('weakest_k', 3)} slices of at least "
        f"{ctx['spec']['slices'].get('min_slice_size', 10)} examples).</p>"
        + (H.image(ctx["slices_uri"], "slice accuracy") if ctx.get("slices_uri") else "")
        + H.table(sl, highlight="weak")
    )
    li_test, li_cv, recall = ctx["label_issues_test"], ctx["label_issues_cv"], ctx["recall"]
    n_li = int(ctx["spec"]["label_errors"].get("shown", 40))
    recall_html = ""
    if recall:
        recall_html = (
            f"<p>Known-mislabel manifest: {recall['found_in_top_2x']} of "
            f"{recall['known_in_scope']} listed rows are in the first "
            f"{2 * recall['known_in_scope']} entries of the cross-validated list "
            f"(recall@2× = {H.fmt(recall['recall_at_2x'])}).</p>"
        )
    sections["label-errors"] = (
        "<p class='muted'>Confident learning (cleanlab) flags rows whose given label is "
        "unlikely under out-of-sample probabilities, ranked by self-confidence (lowest first). "
        f"<b>Labelled data ({', '.join(ctx['cv_splits'])})</b>: probabilities from a "
        f"{ctx['spec']['label_errors'].get('folds', 5)}-fold cross-validated logistic regression "
        "on frozen, mean-pooled sentence embeddings of the trained model. <b>Test split</b>: "
        "the fine-tuned model's own predictions.</p>"
        + recall_html
        + f"<h3>Labelled data: {int(li_cv['flagged'].sum()) if len(li_cv) else 0} flagged by "
        f"cleanlab; the review queue continues with the next-lowest label quality</h3>"
        + H.table(
            li_cv.head(n_li),
            [
                "rank",
                "flagged",
                "split",
                "id",
                "given_label",
                "suggested_label",
                "label_quality",
                "text",
            ],
        )
        + f"<h3>Test split: {len(li_test)} flagged</h3>"
        + H.table(
            li_test.head(n_li),
            ["rank", "id", "given_label", "suggested_label", "label_quality", "text"],
        )
    )
    rob, rob_ex = ctx["robustness"], ctx["robustness_examples"]
    sections["robustness"] = (
        "<p class='muted'>Each test edits the texts in a way that must not change the class "
        "(typos: adjacent letters swapped; casing: upper case; punctuation: removed; "
        "contractions: expanded or contracted; person names: swapped). The flip rate is over "
        "the texts the edit changed.</p>"
        + (H.image(ctx["robustness_uri"], "flip rates") if ctx.get("robustness_uri") else "")
        + H.table(rob)
        + "<h3>Flipped examples</h3>"
        + H.table(
            rob_ex,
            ["test", "label", "original_prediction", "perturbed_prediction", "perturbed_text"],
        )
    )
    attr_html = [
        "<p class='muted'>Integrated gradients on the input embeddings, towards the (wrong) "
        "predicted class: <span style='background:rgba(214,39,40,.6)'>red</span> words push "
        "towards it, <span style='background:rgba(31,119,180,.6)'>blue</span> away from it.</p>"
    ]
    for a in ctx["attributions"]:
        attr_html.append(
            f"<h3>{H.esc(a['id'])}: {H.esc(a['true_label'])} predicted as "
            f"{H.esc(a['predicted_label'])} ({a['confidence']:.2f})</h3>"
            + H.attribution_html(a["words"])
        )
    if not ctx["attributions"]:
        attr_html.append("<p class='muted'>no errors to explain</p>")
    sections["explanations"] = "".join(attr_html)
    sections["next-steps"] = (
        "<ol class='next'>" + "".join(f"<li>{H.esc(x)}</li>" for x in ctx["next_steps"]) + "</ol>"
    )
    return H.page(
        "Error analysis",
        f"{s['num_examples']} {ev.get('split', 'test')} examples · model run "
        f"{ctx.get('run_id') or '–'} · generated {time.strftime('%Y-%m-%d %H:%M:%S')}",
        sections,
    )
