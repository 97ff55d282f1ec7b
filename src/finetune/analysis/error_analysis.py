"""error_analysis: one self-contained HTML report a practitioner acts on, plus tables.

Sections: summary (with the change against the previous experiment), confusions, errors (most
confident first), slices with bootstrap CIs, likely label errors (cleanlab), robustness
(invariance tests), token attributions (integrated gradients) and what to look at next.
A short Markdown report with the same headline content is written too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from finetune.analysis import report_html as H
from finetune.core.errors import DataError
from finetune.core.io import StagedOutputs, read_json, write_json
from finetune.tracking import runs as tracking

log = logging.getLogger(__name__)

HEADLINE = ("accuracy", "f1_macro", "f1_weighted", "mcc", "roc_auc_ovr", "log_loss", "ece")
LOWER_IS_BETTER = {"log_loss", "ece", "ece_temperature_scaled"}

ERROR_COLUMNS = ["id", "text", "label", "predicted", "confidence"]


def misclassified(predictions: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Wrong predictions, the most confident first (ties broken by id for stability)."""
    wrong = predictions[~predictions["correct"]].sort_values(
        ["confidence", "id"], ascending=[False, True], kind="stable"
    )
    extra = [c for c in wrong.columns if c not in ERROR_COLUMNS and c.startswith("prob_")]
    keep = [c for c in ERROR_COLUMNS if c in wrong.columns] + extra
    wrong = wrong[keep].rename(columns={"label": "true_label", "predicted": "predicted_label"})
    return (wrong.head(limit) if limit else wrong).reset_index(drop=True)


def confusion_pairs(predictions: pd.DataFrame) -> pd.DataFrame:
    """(true, predicted) pairs among errors, most frequent first."""
    wrong = predictions[~predictions["correct"]]
    pairs = (
        wrong.groupby(["label", "predicted"])
        .size()
        .rename("count")
        .reset_index()
        .rename(columns={"label": "true_label", "predicted": "predicted_label"})
    )
    pairs["share_of_errors"] = pairs["count"] / max(len(wrong), 1)
    return pairs.sort_values(["count", "true_label"], ascending=[False, True]).reset_index(
        drop=True
    )


def known_mislabel_check(predictions: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, Any]:
    """How the model's errors line up with a manifest of rows known to be mislabelled."""
    merged = predictions.merge(manifest, on="id", how="inner")
    flagged = merged[~merged["correct"]]
    return {
        "known_mislabelled_in_split": len(merged),
        "flagged_as_errors": len(flagged),
        "predicted_true_label": int((flagged["predicted"] == flagged["true_label"]).sum()),
        "rows": merged[["id", "text", "given_label", "true_label", "predicted", "confidence"]]
        .sort_values("confidence", ascending=False)
        .to_dict("records"),
    }


def _md_cell(value: Any) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_\n"
    head = "| " + " | ".join(df.columns) + " |\n| " + " | ".join("---" for _ in df.columns) + " |\n"
    rows = "".join(
        "| " + " | ".join(_md_cell(v) for v in row) + " |\n" for row in df.itertuples(index=False)
    )
    return head + rows


def render_report(
    metrics: dict[str, Any],
    errors: pd.DataFrame,
    pairs: pd.DataFrame,
    examples: dict[tuple[str, str], list[str]],
    known: dict[str, Any] | None,
    shown_errors: int = 30,
) -> str:
    n_err = int(metrics["num_errors"])
    lines = [
        "# Error analysis\n",
        "## Summary\n",
        f"- test examples: {metrics['num_examples']}",
        f"- accuracy: {metrics['accuracy']:.4f}, macro-F1: {metrics['f1_macro']:.4f}",
        f"- misclassified: {n_err} ({metrics['error_rate']:.1%})\n",
        "## Most frequent confusions\n",
        _md_table(
            pairs.head(len(examples)).assign(
                share_of_errors=lambda d: d["share_of_errors"].round(3)
            )
        ),
    ]
    for (true, pred), texts in examples.items():
        lines.append(f"**{true} → {pred}**\n")
        lines.extend(f"- {_md_cell(t)}" for t in texts)
        lines.append("")
    lines += [
        f"## Misclassified examples, most confident first "
        f"(top {min(shown_errors, len(errors))} of {n_err})\n",
        _md_table(
            errors.head(shown_errors)[["id", "true_label", "predicted_label", "confidence", "text"]]
        ),
    ]
    if known is not None:
        lines += [
            "## Known label errors (demo manifest)\n",
            f"{known['known_mislabelled_in_split']} rows of this split are listed as mislabelled; "
            f"the model disagrees with the given label on {known['flagged_as_errors']} of them and "
            f"predicts the true label on {known['predicted_true_label']}.\n",
            _md_table(pd.DataFrame(known["rows"])),
        ]
    return "\n".join(lines) + "\n"


def confusion_examples(
    predictions: pd.DataFrame, pairs: pd.DataFrame, spec: dict[str, Any]
) -> dict[tuple[str, str], list[str]]:
    """The most confident wrong texts of each of the top confusion pairs (true, predicted)."""
    wrong = predictions[~predictions["correct"]].sort_values("confidence", ascending=False)
    return {
        (r.true_label, r.predicted_label): wrong[
            (wrong["label"] == r.true_label) & (wrong["predicted"] == r.predicted_label)
        ]["text"]
        .head(int(spec["examples_per_confusion"]))
        .tolist()
        for r in pairs.head(int(spec["top_confusions"])).itertuples()
    }


def analyse(
    predictions: pd.DataFrame,
    spec: dict[str, Any],
    manifest: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, str]:
    """Pure step: predictions in; summary metrics, error table, confusion pairs and report out."""
    errors = misclassified(predictions, int(spec["max_errors"]))
    pairs = confusion_pairs(predictions)
    n_err = int((~predictions["correct"]).sum())
    summary: dict[str, Any] = {
        "num_examples": len(predictions),
        "num_errors": n_err,
        "error_rate": n_err / max(len(predictions), 1),
        "accuracy": float(predictions["correct"].mean()) if len(predictions) else 0.0,
    }
    from sklearn.metrics import f1_score

    summary["f1_macro"] = float(
        f1_score(predictions["label"], predictions["predicted"], average="macro", zero_division=0)
    )
    examples = confusion_examples(predictions, pairs, spec)
    known = known_mislabel_check(predictions, manifest) if manifest is not None else None
    if known is not None:
        summary["known_mislabelled_in_split"] = known["known_mislabelled_in_split"]
        summary["known_mislabelled_flagged"] = known["flagged_as_errors"]
    report = render_report(summary, errors, pairs, examples, known)
    return summary, errors, pairs, report


def load_manifest(path: str | None) -> pd.DataFrame | None:
    if not path:
        return None
    if not Path(path).is_file():
        log.warning("error_analysis.known_mislabels=%s does not exist; skipping that check", path)
        return None
    manifest = pd.read_csv(path, dtype=str)
    missing = {"id", "given_label", "true_label"} - set(manifest.columns)
    if missing:
        raise DataError(
            f"{path}: missing column(s) {sorted(missing)} (needs id,given_label,true_label)"
        )
    return manifest


# --------------------------------------------------------------------------- previous experiment


def _relative(path: str | Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return p.as_posix()
    return p.as_posix()


def metrics_at_git_head(metrics_path: str | Path) -> dict[str, Any] | None:
    """The evaluate metrics recorded in ``dvc.lock`` at git HEAD, read from the DVC cache.

    This is what `dvc metrics diff` compares the workspace with: in `dvc exp run`, HEAD is the
    experiment's baseline commit; after `dvc repro`, it is the last committed result.
    """
    rel = _relative(metrics_path)
    try:
        lock_text = subprocess.run(
            ["git", "show", "HEAD:dvc.lock"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    lock = yaml.safe_load(lock_text) or {}
    md5 = None
    for stage in (lock.get("stages") or {}).values():
        for item in stage.get("outs", []) or []:
            if item.get("path") == rel and item.get("md5"):
                md5 = str(item["md5"])
    if md5 is None:
        return None
    roots = [Path.cwd()]
    if os.environ.get("DVC_ROOT"):
        roots.append(Path(os.environ["DVC_ROOT"]))
    for root in roots:
        cached = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
        if cached.is_file():
            try:
                return read_json(cached)
            except ValueError:
                return None
    return None


def metrics_of_previous_run(current_run_id: str | None) -> tuple[dict[str, Any], str] | None:
    """Headline test metrics of the latest earlier MLflow run of this experiment."""
    import mlflow

    runs = mlflow.search_runs(
        filter_string="metrics.test_f1_macro > -1",
        order_by=["attributes.start_time DESC"],
        max_results=20,
        output_format="list",
    )
    for run in runs:
        if run.info.run_id == current_run_id:
            continue
        found = {
            key: run.data.metrics[f"test_{key}"]
            for key in HEADLINE
            if f"test_{key}" in run.data.metrics
        }
        return found, f"MLflow run {run.info.run_name or run.info.run_id}"
    return None


def previous_metrics(
    metrics_path: str | Path, mode: str, current_run_id: str | None
) -> tuple[dict[str, Any] | None, str]:
    """(metrics, where they came from) for the change-against-previous table."""
    if mode in ("git", "auto"):
        found = metrics_at_git_head(metrics_path)
        if found is not None:
            return found, "metrics at git HEAD (dvc.lock + DVC cache, as `dvc metrics diff`)"
    if mode in ("mlflow", "auto"):
        try:
            prev = metrics_of_previous_run(current_run_id)
        except Exception as exc:  # a tracking server may be unreachable: the report still renders
            log.warning("could not read the previous MLflow run: %s", exc)
            prev = None
        if prev is not None:
            return prev[0], f"the previous {prev[1]} (no committed metrics at git HEAD)"
    return None, "no previous experiment found (no committed metrics, no earlier MLflow run)"


def compare_headline(current: dict[str, Any], previous: dict[str, Any] | None) -> pd.DataFrame:
    rows = []
    for key in (*HEADLINE, "ece_temperature_scaled"):
        now = current.get(key)
        if now is None:
            continue
        before = previous.get(key) if previous else None
        rows.append(
            {
                "metric": key,
                "current": float(now),
                "previous": None if before is None else float(before),
                "change": None if before is None else float(now) - float(before),
                "baseline_tfidf": (current.get("baseline") or {}).get(key),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- what to look at next


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
    if len(label_issues):
        top = ", ".join(label_issues["id"].astype(str).head(5))
        steps.append(
            f"{len(label_issues)} labelled rows look mislabelled (confident learning). Review the "
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


# --------------------------------------------------------------------------- report


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def slices_figure(slices: pd.DataFrame, overall: float) -> Any:
    """Accuracy per slice with its 95% CI; weak slices in red."""
    import matplotlib.pyplot as plt

    data = slices.reset_index(drop=True)
    fig, ax = _figure(8, 0.28 * len(data) + 1.2)
    y = np.arange(len(data))[::-1]
    colours = ["#c0392b" if w else "#2858b8" for w in data["weak"]]
    ax.errorbar(
        data["accuracy"],
        y,
        xerr=[
            (data["accuracy"] - data["ci_low"]).clip(lower=0),
            (data["ci_high"] - data["accuracy"]).clip(lower=0),
        ],
        fmt="none",
        ecolor="#9aa3b5",
        capsize=2,
    )
    ax.scatter(data["accuracy"], y, c=colours, zorder=3, s=22)
    ax.axvline(overall, color="#444", linestyle=":", linewidth=1)
    ax.set_yticks(
        y,
        [
            f"{d}: {s} (n={n})"
            for d, s, n in zip(data["dimension"], data["slice"], data["n"], strict=True)
        ],
        fontsize=8,
    )
    ax.set_xlabel("accuracy (95% bootstrap CI); dotted: overall")
    ax.set_xlim(max(0.0, float(data["ci_low"].min()) - 0.05), 1.01)
    fig.tight_layout()
    uri = H.png_data_uri(fig)
    plt.close(fig)
    return uri


def robustness_figure(table: pd.DataFrame) -> str:
    import matplotlib.pyplot as plt

    data = table.fillna({"flip_rate": 0.0})
    fig, ax = _figure(6, 0.4 * len(data) + 1.0)
    ax.barh(data["test"][::-1], data["flip_rate"][::-1] * 100, color="#2858b8")
    for i, (rate, n) in enumerate(
        zip(data["flip_rate"][::-1], data["applicable"][::-1], strict=True)
    ):
        ax.text(rate * 100, i, f" {rate:.1%} of {n}", va="center", fontsize=8)
    ax.set_xlabel("predictions that flip (%)")
    ax.set_xlim(0, max(5.0, float(data["flip_rate"].max()) * 130))
    fig.tight_layout()
    uri = H.png_data_uri(fig)
    plt.close(fig)
    return uri


def confusion_uri(predictions: pd.DataFrame, labels: list[str]) -> str:
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    from finetune.evaluation.evaluate import confusion_figure

    cm = confusion_matrix(predictions["label"], predictions["predicted"], labels=labels)
    fig = confusion_figure(cm, labels)
    uri = H.png_data_uri(fig)
    plt.close(fig)
    return uri


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


# --------------------------------------------------------------------------- orchestration


def explain_errors(
    model: Any,
    tokenizer: Any,
    errors: pd.DataFrame,
    labels: list[str],
    top: int,
    max_length: int,
    n_steps: int,
) -> list[dict[str, Any]]:
    from finetune.analysis.explain import integrated_gradients

    chosen = errors.head(top)
    if chosen.empty:
        return []
    targets = [labels.index(p) for p in chosen["predicted_label"]]
    words = integrated_gradients(
        model, tokenizer, chosen["text"].tolist(), targets, max_length, n_steps
    )
    out = []
    for row, attribution in zip(chosen.itertuples(), words, strict=True):
        best = max(attribution, key=lambda ws: ws[1], default=("", 0.0))
        out.append(
            {
                "id": row.id,
                "true_label": row.true_label,
                "predicted_label": row.predicted_label,
                "confidence": float(row.confidence),
                "words": [(w, round(float(s), 4)) for w, s in attribution],
                "top_word": best[0] if best[1] > 0 else "",
            }
        )
    return out


def analyse_all(
    model: Any,
    tokenizer: Any,
    predictions: pd.DataFrame,
    labelled: pd.DataFrame,
    labels: list[str],
    spec: dict[str, Any],
    eval_metrics: dict[str, Any],
    manifest: pd.DataFrame | None,
    max_length: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Every section's data (no file I/O). ``labelled``: rows ranked for label errors, with a
    ``split`` column; ``predictions``: evaluate's per-example output for the evaluated split."""
    from finetune.analysis import label_errors as L
    from finetune.analysis.robustness import run_invariance
    from finetune.analysis.slices import slice_metrics
    from finetune.modeling.inference import predict_proba, sentence_embeddings

    timings: dict[str, float] = {}
    began = time.perf_counter()
    summary, errors, pairs, md = analyse(predictions, spec, manifest)
    examples = confusion_examples(predictions, pairs, spec)
    timings["confusions_errors"] = time.perf_counter() - began

    began = time.perf_counter()
    slices = slice_metrics(predictions, spec["slices"], seed)
    timings["slices"] = time.perf_counter() - began

    began = time.perf_counter()
    label_map = {label: i for i, label in enumerate(labels)}
    test_ids = predictions["label"].map(label_map).to_numpy()
    probs = predictions[[f"prob_{label}" for label in labels]].to_numpy()
    li_test = L.rank_label_issues(
        predictions.assign(split=spec.get("split", "test")), test_ids, probs, labels
    )
    le = spec["label_errors"]
    bs = int(spec.get("batch_size", 64))
    emb = sentence_embeddings(model, tokenizer, labelled["text"].tolist(), bs, max_length)
    y = labelled["label"].map(label_map).to_numpy()
    cv_probs = L.cross_validated_probs(
        emb, y, int(le.get("folds", 5)), seed, float(le.get("C", 1.0))
    )
    cv_probs = np.pad(cv_probs, ((0, 0), (0, len(labels) - cv_probs.shape[1])))
    li_cv = L.rank_label_issues(labelled, y, cv_probs, labels, int(le.get("queue", 0)))
    recall = L.manifest_recall(li_cv, manifest, set(labelled["id"].astype(str)))
    timings["label_errors"] = time.perf_counter() - began

    began = time.perf_counter()

    def predict(texts: list[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, texts, bs, max_length).probabilities

    robustness, robustness_examples = run_invariance(
        predictions, predict, labels, spec["robustness"], seed
    )
    timings["robustness"] = time.perf_counter() - began

    began = time.perf_counter()
    ex = spec["explanations"]
    attributions = explain_errors(
        model,
        tokenizer,
        errors,
        labels,
        int(ex.get("top_errors", 20)),
        max_length,
        int(ex.get("n_steps", 32)),
    )
    timings["explanations"] = time.perf_counter() - began

    summary.update(
        {
            "weak_slices": int(slices["weak"].sum()),
            "label_issues_test": len(li_test),
            "label_issues_cv": int(li_cv["flagged"].sum()) if len(li_cv) else 0,
            **{
                f"flip_rate_{r.test}": (None if pd.isna(r.flip_rate) else float(r.flip_rate))
                for r in robustness.itertuples()
            },
        }
    )
    if recall is not None:
        summary["label_errors_manifest_in_scope"] = recall["known_in_scope"]
        summary["label_errors_manifest_recall_at_2x"] = recall["recall_at_2x"]
    return {
        "summary": summary,
        "errors": errors,
        "pairs": pairs,
        "examples": examples,
        "markdown": md,
        "slices": slices,
        "label_issues_test": li_test,
        "label_issues_cv": li_cv,
        "cv_splits": sorted(labelled["split"].unique().tolist()) if len(labelled) else [],
        "recall": recall,
        "robustness": robustness,
        "robustness_examples": robustness_examples,
        "attributions": attributions,
        "eval_metrics": eval_metrics,
        "spec": spec,
        "timings": timings,
    }


def finish_report(ctx: dict[str, Any], previous: dict[str, Any] | None, source: str) -> str:
    """Add the comparison, figures and next steps to ``ctx``; return the HTML page."""
    ctx["comparison"] = compare_headline(ctx["eval_metrics"] or ctx["summary"], previous)
    ctx["previous_source"] = source
    ctx["next_steps"] = next_steps(
        ctx["summary"],
        ctx["pairs"],
        ctx["slices"],
        ctx["label_issues_cv"],
        ctx["robustness"],
        ctx["attributions"],
        ctx["eval_metrics"],
        ctx["comparison"],
    )
    ctx["slices_uri"] = (
        slices_figure(ctx["slices"], ctx["summary"]["accuracy"]) if len(ctx["slices"]) else None
    )
    ctx["robustness_uri"] = robustness_figure(ctx["robustness"]) if len(ctx["robustness"]) else None
    return render_html(ctx)


def run(cfg: Any) -> dict[str, Any]:
    """Stage entry: predictions + model + splits -> HTML report, Markdown, tables, summary."""
    import mlflow

    from finetune.core.artifacts import load_split
    from finetune.modeling.backbones import load_trained

    started = time.perf_counter()
    paths, spec = cfg["paths"], dict(cfg["error_analysis"])
    spec["slices"] = dict(spec.get("slices") or {})
    if spec["slices"].get("columns") is None:
        spec["slices"]["columns"] = list((cfg.get("data") or {}).get("extra_columns") or [])
    spec["split"] = (cfg.get("evaluate") or {}).get("split", "test")
    pred_path = Path(paths["predictions"])
    if not pred_path.is_file():
        raise DataError(f"{pred_path} is missing: run `dvc repro evaluate` first")
    predictions = pd.read_parquet(pred_path)
    eval_path = Path(paths["evaluate_metrics"])
    eval_metrics = read_json(eval_path) if eval_path.is_file() else {}
    model, tokenizer = load_trained(paths["model_dir"])
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    missing = [f"prob_{label}" for label in labels if f"prob_{label}" not in predictions]
    if missing:
        raise DataError(
            f"{pred_path} lacks {missing}: it was written for another model; "
            "run `dvc repro evaluate` again"
        )
    splits = list(spec["label_errors"].get("splits") or ["train"])
    labelled = pd.concat(
        [load_split(paths["processed_dir"], name).assign(split=name) for name in splits],
        ignore_index=True,
    )
    manifest = load_manifest(spec.get("known_mislabels"))
    ctx = analyse_all(
        model,
        tokenizer,
        predictions,
        labelled,
        labels,
        spec,
        eval_metrics,
        manifest,
        int(cfg["model"]["max_length"]),
        int(cfg.get("seed", 0)),
    )
    ctx["confusion_uri"] = confusion_uri(predictions, labels)
    run_id = read_json(paths["run_info"]).get("run_id")
    ctx["run_id"] = run_id
    with tracking.train_run(paths["run_info"], cfg["tracking"]), StagedOutputs() as out:
        previous, source = (None, "comparison switched off (error_analysis.compare_to=none)")
        if spec.get("compare_to", "auto") != "none":
            previous, source = previous_metrics(
                paths["evaluate_metrics"], str(spec.get("compare_to", "auto")), run_id
            )
        page = finish_report(ctx, previous, source)
        summary = ctx["summary"]
        Path(out.file(paths["error_report_html"])).write_text(page, encoding="utf-8")
        Path(out.file(paths["error_report"])).write_text(ctx["markdown"])
        tables = out.dir(paths["error_tables"])
        frames = {
            "errors": ctx["errors"],
            "confusion_pairs": ctx["pairs"],
            "slices": ctx["slices"],
            "label_issues_test": ctx["label_issues_test"],
            "label_issues_cv": ctx["label_issues_cv"],
            "robustness": ctx["robustness"],
            "robustness_examples": ctx["robustness_examples"],
            "comparison": ctx["comparison"],
        }
        for name, frame in frames.items():
            frame.to_csv(tables / f"{name}.csv", index=False)
        write_json(tables / "attributions.json", ctx["attributions"])
        write_json(tables / "next_steps.json", ctx["next_steps"])
        ctx["timings"]["total"] = time.perf_counter() - started
        write_json(tables / "timings.json", {k: round(v, 2) for k, v in ctx["timings"].items()})
        write_json(out.file(paths["error_metrics"]), summary)
        mlflow.log_metrics({f"errors_{k}": float(v) for k, v in summary.items() if v is not None})
        mlflow.log_text(page, "error_analysis/report.html")
        mlflow.log_text(ctx["markdown"], "error_analysis/report.md")
        mlflow.log_dict(summary, "error_analysis/summary.json")
        mlflow.log_artifacts(str(tables), "error_analysis/tables")
    log.info(
        "error analysis: %d errors of %d, %d likely label errors, %d weak slices in %.1f s; "
        "report %s",
        summary["num_errors"],
        len(predictions),
        summary["label_issues_cv"],
        summary["weak_slices"],
        ctx["timings"]["total"],
        paths["error_report_html"],
    )
    return summary
