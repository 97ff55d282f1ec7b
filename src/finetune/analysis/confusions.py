"""Errors and confusions: wrong predictions, frequent (true, predicted) pairs, known mislabels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from finetune.core.errors import DataError

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


def confusion_examples(
    predictions: pd.DataFrame, pairs: pd.DataFrame, top: int, per_pair: int
) -> dict[tuple[str, str], list[str]]:
    """The most confident wrong texts of each of the top confusion pairs (true, predicted)."""
    wrong = predictions[~predictions["correct"]].sort_values("confidence", ascending=False)
    return {
        (r.true_label, r.predicted_label): wrong[
            (wrong["label"] == r.true_label) & (wrong["predicted"] == r.predicted_label)
        ]["text"]
        .head(per_pair)
        .tolist()
        for r in pairs.head(top).itertuples()
    }


def load_manifest(path: str | None) -> pd.DataFrame | None:
    """The known-mislabel manifest ``data.known_mislabels`` (id,given_label,true_label)."""
    if not path:
        return None
    if not Path(path).is_file():
        raise DataError(
            f"data.known_mislabels={path} does not exist: point it at a CSV with the columns "
            "id,given_label,true_label, or set it to null (no manifest)"
        )
    manifest = pd.read_csv(path, dtype=str)
    missing = {"id", "given_label", "true_label"} - set(manifest.columns)
    if missing:
        raise DataError(
            f"{path}: missing column(s) {sorted(missing)} (needs id,given_label,true_label)"
        )
    return manifest
