"""The monitoring report: ``summary.json``'s figures and the texts worth reading, as one
self-contained page (``templates/monitor_report.html.j2``, every value autoescaped)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from finetune.pages import html as H

SECTIONS = [
    ("verdict", "Verdict"),
    ("input", "Input drift"),
    ("texts", "Out of place"),
    ("predictions", "Prediction drift"),
    ("performance", "Performance"),
]


def _figures(details: dict[str, Any], labels: list[str], multi_label: bool) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from finetune.reporting.plots import png_data_uri

    ref_scores, batch_scores = details["domain_scores"]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), layout="constrained")
    bins = np.linspace(0, 1, 26)
    ax.hist(ref_scores, bins=bins, alpha=0.6, density=True, label="reference (train)")
    ax.hist(batch_scores, bins=bins, alpha=0.6, density=True, label="batch")
    ax.set_xlabel("domain classifier: P(batch), out of fold")
    ax.set_ylabel("density")
    ax.legend()
    scores_uri = png_data_uri(fig)
    plt.close(fig)

    ref_share, batch_share = details["shares"]
    k = len(labels)
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.35 * k), layout="constrained")
    y = np.arange(k)
    ax.barh(y - 0.2, ref_share, height=0.4, label="test split")
    ax.barh(y + 0.2, batch_share, height=0.4, label="batch")
    ax.set_yticks(y, [H.fmt(label) for label in labels])
    ax.invert_yaxis()
    ax.set_xlabel("share of texts given the label" if multi_label else "share of predictions")
    ax.legend()
    shares_uri = png_data_uri(fig)
    plt.close(fig)
    return {"scores_uri": scores_uri, "shares_uri": shares_uri}


def render_html(summary: dict[str, Any], details: dict[str, Any]) -> str:
    inp, pred, perf = summary["input_drift"], summary["prediction_drift"], summary["performance"]
    labels = summary["model"]["labels"]
    est = perf["estimated"] or {}  # none for a multi-label model
    cards = [
        ("verdict", "DRIFT" if summary["drift"] else "no drift"),
        ("domain ROC-AUC", H.fmt(inp["domain_classifier"]["auc"])),
        ("MMD p-value", H.fmt(inp["mmd"]["p_value"], 4)),
        ("prediction PSI", H.fmt(pred["psi"])),
        ("estimated accuracy", H.fmt(est.get("accuracy"))),
        (f"{perf.get('basis', 'accuracy')} (labels)", H.fmt(perf.get("accuracy"))),
        ("texts", str(summary["batch"]["texts"])),
    ]
    stats = pd.DataFrame(
        [
            {"statistic": name, **values}
            for name, values in inp["text_statistics"]["numeric"].items()
        ]
    )
    scripts = pd.DataFrame(
        [{"script": name, **v} for name, v in inp["text_statistics"]["scripts"].items()]
    )
    classes = pd.DataFrame(
        {
            "label": labels,
            "test split share": [pred["reference_share"][x] for x in labels],
            "batch share": [pred["batch_share"][x] for x in labels],
            "test recall": [perf["test"]["recall"][x] for x in labels],
            "batch recall": [(perf.get("recall") or {}).get(x) for x in labels],
        }
    )
    model = summary["model"]
    title = (
        f"{model['name']} v{model['version']}"
        if model["name"] and model["version"]
        else f"run {model['run_id'][:8]}"
    )
    return H.render(
        "monitor_report.html.j2",
        title=f"Monitoring: {title}",
        subtitle=(
            f"{summary['batch']['texts']} texts from {summary['batch']['source']} against "
            f"{summary['reference']['texts']} train texts ({summary['reference']['source']}) · "
            f"{summary['created_at']}"
        ),
        sections=SECTIONS,
        cards=cards,
        summary=summary,
        checks=H.table(pd.DataFrame(summary["checks"]), highlight="flagged"),
        stats=H.table(stats),
        scripts=H.table(scripts),
        batch_texts=H.table(pd.DataFrame(details["batch_out_of_place"])),
        reference_texts=H.table(pd.DataFrame(details["reference_out_of_place"])),
        classes=H.table(classes),
        **_figures(details, labels, multi_label=perf["estimated"] is None),
    )
