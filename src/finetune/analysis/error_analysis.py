"""error_analysis: one self-contained HTML report a practitioner acts on, plus tables.

Sections: summary (with the change against the previous experiment), confusions, errors (most
confident first), slices with bootstrap CIs, likely label errors (cleanlab), robustness
(invariance tests), explanations (integrated gradients, SHAP and LIME side by side, with their
faithfulness measured) and what to look at next.
A short Markdown report with the same headline content is written too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finetune.analysis import label_errors as L
from finetune.analysis.confusions import (
    confusion_examples,
    confusion_pairs,
    known_mislabel_check,
    load_manifest,
    misclassified,
)
from finetune.analysis.explain import explain_rows, render_page, report_rows
from finetune.analysis.explain import metrics as explanation_metrics
from finetune.analysis.previous import compare_headline, previous_metrics
from finetune.analysis.recommendations import next_steps
from finetune.analysis.render import render_html
from finetune.analysis.report_md import render_report
from finetune.core.errors import DataError
from finetune.core.io import StagedOutputs, read_json, write_json
from finetune.core.labels import prob_columns
from finetune.core.schema import ErrorAnalysisConfig, PipelineConfig
from finetune.core.validate import parse
from finetune.evaluation.metrics import macro_f1
from finetune.modeling import decisions
from finetune.reporting.plots import confusion_uri, robustness_figure, slices_figure
from finetune.tracking import runs as tracking

log = logging.getLogger(__name__)

# explainers.csv: one row per explainer (finetune.analysis.explainers.summarise)
EXPLAINER_COLUMNS = ["method", "title", "comprehensiveness", "sufficiency", "faithfulness",
                     "seconds_per_text", "beats_random"]  # fmt: skip


def confusion_table(predictions: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The whole confusion matrix (rows: true label, columns: predicted), for any number of
    classes (the figure shows at most the most confused ones)."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(predictions["label"], predictions["predicted"], labels=labels)
    return pd.DataFrame(
        cm, index=pd.Index(labels, name="true_label"), columns=pd.Index(labels, name="predicted")
    )


def analyse(
    predictions: pd.DataFrame,
    spec: ErrorAnalysisConfig,
    manifest: pd.DataFrame | None,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, dict[tuple[str, str], list[str]], str]:
    """Pure step: predictions in; summary metrics, error table, confusion pairs, their
    examples and the Markdown report out."""
    errors = misclassified(predictions, spec.max_errors)
    pairs = confusion_pairs(predictions)
    n_err = int((~predictions["correct"]).sum())
    summary: dict[str, Any] = {
        "num_examples": len(predictions),
        "num_errors": n_err,
        "error_rate": n_err / max(len(predictions), 1),
        "accuracy": float(predictions["correct"].mean()) if len(predictions) else 0.0,
    }
    summary["f1_macro"] = macro_f1(predictions["label"], predictions["predicted"])
    examples = confusion_examples(
        predictions, pairs, spec.top_confusions, spec.examples_per_confusion
    )
    known = known_mislabel_check(predictions, manifest) if manifest is not None else None
    if known is not None:
        summary["known_mislabelled_in_split"] = known["known_mislabelled_in_split"]
        summary["known_mislabelled_flagged"] = known["flagged_as_errors"]
    report = render_report(summary, errors, pairs, examples, known, spec.shown_errors)
    return summary, errors, pairs, examples, report


# --------------------------------------------------------------------------- orchestration


def analyse_all(
    model: Any,
    tokenizer: Any,
    predictions: pd.DataFrame,
    labelled: pd.DataFrame,
    labels: list[str],
    spec: ErrorAnalysisConfig,
    eval_metrics: dict[str, Any],
    manifest: pd.DataFrame | None,
    max_length: int,
    seed: int,
    split_name: str,
    slice_columns: list[str],
    sources: Mapping[str, L.Source],
) -> dict[str, Any]:
    """Every section's data (no file I/O). ``labelled``: rows ranked for label errors, with a
    ``split`` column; ``predictions``: evaluate's per-example output for the evaluated split
    (``split_name``); ``slice_columns``: the data columns to slice by; ``sources``: the
    out-of-sample probabilities of the labelled rows, by source (:func:`label_error_sources`)."""
    from finetune.analysis.robustness import run_invariance
    from finetune.analysis.slices import slice_metrics
    from finetune.modeling import truncation
    from finetune.modeling.inference import predict_proba

    timings: dict[str, float] = {}
    began = time.perf_counter()
    summary, errors, pairs, examples, md = analyse(predictions, spec, manifest)
    timings["confusions_errors"] = time.perf_counter() - began

    began = time.perf_counter()
    slices = slice_metrics(predictions, spec.slices, slice_columns, seed)
    timings["slices"] = time.perf_counter() - began

    began = time.perf_counter()
    label_map = {label: i for i, label in enumerate(labels)}
    test_ids = predictions["label"].map(label_map).to_numpy()
    probs = predictions[prob_columns(labels)].to_numpy()
    li_test = L.rank_label_issues(predictions.assign(split=split_name), test_ids, probs, labels)
    le = spec.label_errors
    bs = spec.batch_size
    y = labelled["label"].map(label_map).to_numpy()
    oos_probs, source_seconds, weights = L.out_of_sample_probs(labelled, y, len(labels), sources)
    rows = len(labelled) if le.rows is None else le.rows
    li_cv = L.rank_label_issues(labelled, y, oos_probs, labels, rows)
    recall = L.manifest_recall(li_cv, manifest, set(labelled["id"].astype(str)))
    timings["label_errors"] = time.perf_counter() - began
    timings.update({f"label_errors.{name}": s for name, s in source_seconds.items()})

    began = time.perf_counter()

    def predict(texts: list[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, texts, bs, max_length).probabilities

    robustness, robustness_examples = run_invariance(
        predictions, predict, labels, spec.robustness, seed
    )
    timings["robustness"] = time.perf_counter() - began

    began = time.perf_counter()
    ex = spec.explanations
    explained = explain_rows(
        report_rows(predictions, errors, ex.top_errors, ex.correct, seed),
        labels,
        predict,
        ex,
        seed,
        model=model,
        tokenizer=tokenizer,
        max_length=max_length,
        long_text=truncation.settings(model.config),
        batch_size=bs,
    )
    timings["explanations"] = time.perf_counter() - began
    summary.update({f"faithfulness_{r['method']}": r["faithfulness"] for r in explained["table"]})
    summary["explained_texts"] = len(explained["examples"])  # of explained["candidates"]

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
        "source_weights": weights,
        "cv_splits": sorted(labelled["split"].unique().tolist()) if len(labelled) else [],
        "recall": recall,
        "robustness": robustness,
        "robustness_examples": robustness_examples,
        "explanations": explained,
        "eval_metrics": eval_metrics,
        "spec": spec,
        "split": split_name,
        "timings": timings,
    }


def finish_report(ctx: dict[str, Any], previous: dict[str, Any] | None, source: str) -> str:
    """Add the comparison, figures and next steps to ``ctx``; return the HTML page."""
    warning = (ctx["eval_metrics"] or {}).get("baseline_warning")
    if warning:  # the first lines of the Markdown report too
        tips = "".join(f"\n- {t}" for t in ctx["eval_metrics"].get("what_to_try", []))
        head, _, rest = ctx["markdown"].partition("\n")
        ctx["markdown"] = f"{head}\n\n> **Warning.** {warning}\n\nWhat to try:{tips}\n{rest}"
    ctx["comparison"] = compare_headline(ctx["eval_metrics"] or ctx["summary"], previous)
    ctx["previous_source"] = source
    ctx["next_steps"] = next_steps(
        ctx["summary"],
        ctx["pairs"],
        ctx["slices"],
        ctx["label_issues_cv"],
        ctx["robustness"],
        [e for e in ctx["explanations"]["examples"] if not e["correct"]],
        ctx["eval_metrics"],
        ctx["comparison"],
    )
    ctx["slices_uri"] = (
        slices_figure(ctx["slices"], ctx["summary"]["accuracy"]) if len(ctx["slices"]) else None
    )
    ctx["robustness_uri"] = robustness_figure(ctx["robustness"]) if len(ctx["robustness"]) else None
    return render_html(ctx)


def label_error_sources(
    cfg: PipelineConfig, model: Any, tokenizer: Any, labels: list[str], max_length: int
) -> dict[str, L.Source]:
    """The out-of-sample probability sources ``error_analysis.label_errors.sources`` names, each
    a function of the labelled rows and their label ids (models load when a source runs)."""
    from functools import partial

    from finetune.evaluation.baseline import build_baseline
    from finetune.modeling.backbones import embedding_length, load_encoder
    from finetune.modeling.inference import sentence_embeddings

    le, bs, seed = cfg.error_analysis.label_errors, cfg.error_analysis.batch_size, cfg.seed

    def on_embeddings(encoder: Any, length: int, rows: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        emb = sentence_embeddings(encoder, tokenizer, rows["text"].tolist(), bs, length)
        return L.cross_validated_probs(emb, y, le.folds, seed, le.C)

    def backbone(rows: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        name = cfg.model.name_or_path
        return on_embeddings(load_encoder(name), embedding_length(name, max_length), rows, y)

    def tfidf(rows: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        estimator = build_baseline(cfg.evaluate.baseline, seed)
        return L.cross_validated_probs(
            rows["text"].tolist(), y, le.folds, seed, estimator=estimator
        )

    def finetuned(rows: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        from finetune.training.kfold import out_of_fold_probs

        return out_of_fold_probs(
            rows.assign(label_id=y), labels, cfg.model, cfg.train, le.folds,
            le.finetune_epochs, seed, max_length,
        )  # fmt: skip

    made: dict[str, L.Source] = {
        "backbone": backbone,
        "tfidf": tfidf,
        "embeddings": partial(on_embeddings, model, max_length),
        "finetuned": finetuned,
    }
    return {name: made[name] for name in dict.fromkeys(le.sources)}


def run(cfg: PipelineConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Stage entry: predictions + model + splits -> HTML report, Markdown, tables, summary."""
    import mlflow

    from finetune.core.artifacts import load_split
    from finetune.modeling.backbones import inference_max_length, load_trained

    started = time.perf_counter()
    cfg = parse(cfg)
    paths, spec = cfg.paths, cfg.error_analysis
    columns = cfg.data.extra_columns if spec.slices.columns is None else spec.slices.columns
    pred_path = Path(paths.predictions)
    if not pred_path.is_file():
        raise DataError(f"{pred_path} is missing: run `dvc repro evaluate` first")
    predictions = pd.read_parquet(pred_path)
    eval_path = Path(paths.evaluate_metrics)
    eval_metrics = read_json(eval_path) if eval_path.is_file() else {}
    model, tokenizer = load_trained(paths.model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    max_length = inference_max_length(cfg.model.max_length, tokenizer)
    missing = [column for column in prob_columns(labels) if column not in predictions]
    if missing:
        raise DataError(
            f"{pred_path} lacks {missing}: it was written for another model; "
            "run `dvc repro evaluate` again"
        )
    if decisions.is_multi_label(model.config):
        return _run_multilabel(cfg, predictions, model, labels, eval_metrics, started)
    labelled = pd.concat(
        [
            load_split(paths.processed_dir, name).assign(split=name)
            for name in spec.label_errors.splits
        ],
        ignore_index=True,
    )
    manifest = load_manifest(cfg.data.known_mislabels)
    sources = label_error_sources(cfg, model, tokenizer, labels, max_length)
    ctx = analyse_all(
        model,
        tokenizer,
        predictions,
        labelled,
        labels,
        spec,
        eval_metrics,
        manifest,
        max_length,
        cfg.seed,
        cfg.evaluate.split,
        list(columns),
        sources,
    )
    ctx["confusion_uri"] = confusion_uri(predictions, labels)
    run_id = read_json(paths.run_info).get("run_id")
    ctx["run_id"] = run_id
    with (
        tracking.train_run(paths.run_info, cfg.tracking, stage="error_analysis"),
        StagedOutputs() as out,
    ):
        previous, source = (None, "comparison switched off (error_analysis.compare_to=none)")
        if spec.compare_to != "none":
            previous, source = previous_metrics(paths.evaluate_metrics, spec.compare_to, run_id)
        page = finish_report(ctx, previous, source)
        summary = ctx["summary"]
        Path(out.file(paths.error_report_html)).write_text(page, encoding="utf-8")
        Path(out.file(paths.error_report)).write_text(ctx["markdown"])
        tables = out.dir(paths.error_tables)
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
        confusion_table(predictions, labels).to_csv(tables / "confusion_matrix.csv")
        write_json(tables / "explanations.json", ctx["explanations"])
        pd.DataFrame(ctx["explanations"]["table"], columns=EXPLAINER_COLUMNS).to_csv(
            tables / "explainers.csv", index=False
        )
        write_json(tables / "next_steps.json", ctx["next_steps"])
        ctx["timings"]["total"] = time.perf_counter() - started
        write_json(tables / "timings.json", {k: round(v, 2) for k, v in ctx["timings"].items()})
        write_json(out.file(paths.error_metrics), summary)
        _log_report(page, ctx["markdown"], summary, tables)
        mlflow.log_metrics(explanation_metrics(ctx["explanations"]))
        mlflow.log_text(
            render_page(ctx["explanations"], paths.model_dir, "pytorch"),
            "error_analysis/explanations.html",
        )
    log.info(
        "error analysis: %d errors of %d, %d likely label errors, %d weak slices in %.1f s; "
        "report %s",
        summary["num_errors"],
        len(predictions),
        summary["label_issues_cv"],
        summary["weak_slices"],
        ctx["timings"]["total"],
        paths.error_report_html,
    )
    return summary


def _log_report(page: str, markdown: str, summary: dict[str, Any], tables: Path) -> None:
    """The report's numbers as ``errors_*`` metrics, and its page, Markdown, summary and tables
    as artifacts of the model's MLflow run (the active one)."""
    import mlflow

    mlflow.log_metrics(
        {
            f"errors_{k}": float(v)
            for k, v in summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    mlflow.log_text(page, "error_analysis/report.html")
    mlflow.log_text(markdown, "error_analysis/report.md")
    mlflow.log_dict(summary, "error_analysis/summary.json")
    mlflow.log_artifacts(str(tables), "error_analysis/tables")


def _run_multilabel(
    cfg: PipelineConfig,
    predictions: pd.DataFrame,
    model: Any,
    labels: list[str],
    eval_metrics: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """The multi-label report (:mod:`finetune.analysis.multilabel_errors`) to the same outputs."""

    from finetune.analysis import multilabel_errors as ML

    paths = cfg.paths
    if "label_ids" not in predictions or "predicted_ids" not in predictions:
        raise DataError(
            f"{paths.predictions} holds no label sets: it was written for another model; "
            "run `dvc repro evaluate` again"
        )
    result = ML.analyse(
        predictions, labels, decisions.from_config(model.config), cfg.error_analysis, eval_metrics
    )
    summary = result["summary"]
    with (
        tracking.train_run(paths.run_info, cfg.tracking, stage="error_analysis"),
        StagedOutputs() as out,
    ):
        page = ML.render_html(result, paths.model_dir)
        Path(out.file(paths.error_report_html)).write_text(page, encoding="utf-8")
        Path(out.file(paths.error_report)).write_text(result["markdown"])
        tables = out.dir(paths.error_tables)
        for name, frame in result["tables"].items():
            frame.to_csv(tables / f"{name}.csv", index=False)
        write_json(tables / "timings.json", {"total": round(time.perf_counter() - started, 2)})
        write_json(out.file(paths.error_metrics), summary)
        _log_report(page, result["markdown"], summary, tables)
    log.info(
        "error analysis (multi-label): %d of %d texts with a wrong label set, %d labels added, "
        "%d missed, %d likely label errors; report %s",
        summary["num_errors"],
        summary["num_examples"],
        summary["false_positives"],
        summary["false_negatives"],
        summary["label_issues_test"],
        paths.error_report_html,
    )
    return summary
