"""On the demo data with the real default model: the likely-label-error list finds the known
mislabels (data/raw/mislabelled.csv), and the error_analysis stage stays fast."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from finetune.analysis import error_analysis
from finetune.augment import augment
from finetune.data import preprocess
from finetune.evaluation import evaluate
from finetune.training import train
from tests.conftest import REPO, base_params

pytestmark = pytest.mark.slow


def test_label_error_list_finds_the_demo_mislabels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)
    cfg = copy.deepcopy(base_params())  # the committed defaults: demo data, default backbone
    cfg["paths"] = {k: str(tmp_path / v) for k, v in cfg["paths"].items()}
    cfg["data"]["path"] = str(REPO / cfg["data"]["path"])
    manifest_path = REPO / cfg["data"]["known_mislabels"]
    cfg["data"]["known_mislabels"] = str(manifest_path)
    cfg["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg["train"].update({"progress_bar": False, "epochs": 2})  # enough for the ranking
    cfg["augment"]["enabled"] = False  # the ranking needs the real texts only: half the steps
    for stage in (preprocess, augment, train, evaluate):
        stage.run(cfg)
    began = time.perf_counter()
    summary = error_analysis.run(cfg)
    seconds = time.perf_counter() - began
    print(f"error_analysis on the demo data: {seconds:.1f} s")

    tables = Path(cfg["paths"]["error_tables"])
    ranked = pd.read_csv(tables / "label_issues_cv.csv", dtype={"id": str})
    manifest = pd.read_csv(manifest_path, dtype=str)
    labelled = {
        i
        for split in cfg["error_analysis"]["label_errors"]["splits"]
        for i in pd.read_parquet(Path(cfg["paths"]["processed_dir"]) / f"{split}.parquet")["id"]
    }
    known = set(manifest["id"]) & labelled
    assert len(known) >= 20, "most of the manifest survives preprocessing"
    top = set(ranked["id"].head(2 * len(known)))
    recall = len(top & known) / len(known)
    print(f"manifest recall in the first {2 * len(known)} entries: {recall:.2f}")
    assert recall >= 0.7
    assert summary["label_errors_manifest_recall_at_2x"] == pytest.approx(recall)
    # Suggested labels are mostly the manifest's true labels.
    merged = ranked.merge(manifest, on="id").head(len(known))
    assert (merged["suggested_label"] == merged["true_label"]).mean() >= 0.6
    timings = json.loads((tables / "timings.json").read_text())
    print(f"error_analysis section timings (s): {timings}")
    sections = {"confusions_errors", "slices", "label_errors", "robustness", "explanations"}
    assert sections <= set(timings)
    assert timings["total"] >= sum(timings[k] for k in sections)
