"""error_analysis: what the model gets wrong, most-confident errors first, as a report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from finetune import tracking
from finetune.errors import DataError
from finetune.io import StagedOutputs, write_json

log = logging.getLogger(__name__)

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
    top = pairs.head(int(spec["top_confusions"]))
    wrong = predictions[~predictions["correct"]].sort_values("confidence", ascending=False)
    examples = {
        (r.true_label, r.predicted_label): wrong[
            (wrong["label"] == r.true_label) & (wrong["predicted"] == r.predicted_label)
        ]["text"]
        .head(int(spec["examples_per_confusion"]))
        .tolist()
        for r in top.itertuples()
    }
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


def run(cfg: Any) -> dict[str, Any]:
    """Stage entry: evaluate's predictions -> report (Markdown), tables, summary metrics."""
    import mlflow

    paths, spec = cfg["paths"], cfg["error_analysis"]
    pred_path = Path(paths["predictions"])
    if not pred_path.is_file():
        raise DataError(f"{pred_path} is missing: run `dvc repro evaluate` first")
    predictions = pd.read_parquet(pred_path)
    summary, errors, pairs, report = analyse(
        predictions, spec, load_manifest(spec.get("known_mislabels"))
    )
    with tracking.train_run(paths["run_info"], cfg["tracking"]), StagedOutputs() as out:
        Path(out.file(paths["error_report"])).write_text(report)
        tables = out.dir(paths["error_tables"])
        errors.to_csv(tables / "errors.csv", index=False)
        pairs.to_csv(tables / "confusion_pairs.csv", index=False)
        write_json(out.file(paths["error_metrics"]), summary)
        mlflow.log_metrics({f"errors_{k}": float(v) for k, v in summary.items()})
        mlflow.log_text(report, "error_analysis/report.md")
        mlflow.log_dict(summary, "error_analysis/summary.json")
        mlflow.log_text(errors.to_csv(index=False), "error_analysis/errors.csv")
        mlflow.log_text(pairs.to_csv(index=False), "error_analysis/confusion_pairs.csv")
    log.info(
        "error analysis: %d errors of %d; report %s",
        summary["num_errors"],
        len(predictions),
        paths["error_report"],
    )
    return summary
