"""evaluate: metrics, calibration, baseline, curves, and the stage's outputs on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from finetune.core.errors import ConfigError
from finetune.evaluation import metrics as M
from finetune.evaluation.baseline import fit_predict_baseline
from tests.conftest import config, make_texts

LABELS = ["a", "b", "c"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_perfect_predictions_give_perfect_scores() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = M.one_hot(y, 3) * 0.97 + 0.01  # rows sum to 1
    m = M.classification_metrics(y, probs, LABELS)
    assert m["accuracy"] == 1 and m["f1_macro"] == 1 and m["mcc"] == pytest.approx(1)
    assert m["roc_auc_ovr"] == 1 and m["pr_auc_ovr"] == 1
    assert m["log_loss"] == pytest.approx(-np.log(0.98), rel=1e-3)
    assert m["per_class"]["b"] == pytest.approx(
        {"precision": 1, "recall": 1, "f1": 1, "support": 2, "roc_auc": 1, "pr_auc": 1}
    )


def test_metrics_when_a_class_is_absent_from_the_split() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    m = M.classification_metrics(y, probs, LABELS)
    assert m["per_class"]["c"]["support"] == 0 and m["per_class"]["c"]["roc_auc"] is None
    assert m["roc_auc_ovr"] == pytest.approx(1.0)  # averaged over the classes present
    assert m["accuracy"] == 0.75
    # macro-F1 over a and b (class c has no row and no prediction: not a zero in the mean)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    # a class predicted but absent from the labels does count, as a zero (precision 0)
    wrong = np.array([[0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    assert M.classification_metrics(y, wrong, LABELS)["f1_macro"] == pytest.approx(
        (2 / 3 + 1 + 0) / 3
    )


def test_metrics_by_length_bucket_relative_to_max_length() -> None:
    tokens = np.array([10, 64, 65, 128, 129, 256, 257, 900])
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    model = np.array([0, 1, 0, 1, 1, 0, 1, 0])  # right on what it reads whole, wrong past it
    baseline = np.array([0, 0, 0, 0, 0, 1, 0, 1])
    out = M.by_length(tokens, y, model, baseline, max_length=128)
    assert {k: (v["tokens"], v["num_examples"]) for k, v in out.items()} == {
        "within_half": ("1-64", 2),
        "within": ("65-128", 2),
        "beyond": ("129-256", 2),
        "beyond_twice": ("257+", 2),
    }
    assert out["within"]["accuracy"] == 1 and out["beyond"]["accuracy"] == 0
    assert out["beyond_twice"]["baseline_accuracy"] == 1
    assert out["within_half"]["baseline_f1_macro"] == pytest.approx(M.macro_f1([0, 1], [0, 0]))
    empty = M.by_length(np.array([3, 5]), np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), 128)
    assert empty["beyond"] == {
        "tokens": "129-256",
        "num_examples": 0,
        "accuracy": None,
        "f1_macro": None,
        "baseline_accuracy": None,
        "baseline_f1_macro": None,
    }


def test_ece_and_temperature_scaling_fix_overconfidence() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(4000, 3))
    true_probs = _softmax(logits)
    y = np.array([rng.choice(3, p=p) for p in true_probs])
    overconfident = _softmax(logits * 3)  # the model's logits are 3x too sharp
    assert M.expected_calibration_error(true_probs, y) < 0.03
    assert M.expected_calibration_error(overconfident, y) > 0.1
    temperature = M.fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3, rel=0.1)
    fixed = M.apply_temperature(overconfident, temperature)
    assert M.expected_calibration_error(fixed, y) < 0.03
    assert np.array_equal(fixed.argmax(axis=1), overconfident.argmax(axis=1))


def test_reliability_bins_and_micro_curves() -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    probs = _softmax(np.random.default_rng(1).normal(size=(8, 3)))
    rows = M.reliability_bins(probs, y, n_bins=5)
    assert sum(r["count"] for r in rows) == 8
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    pr, roc = M.micro_curves(y, probs, 3, max_points=10)
    assert 2 <= len(pr) <= 10 and 2 <= len(roc) <= 10
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
    recalls = [p["recall"] for p in pr]
    assert recalls == sorted(recalls)


def test_baseline_learns_the_tiny_data_and_rejects_bad_options() -> None:
    df = make_texts(20, seed=0)
    ids = {label: i for i, label in enumerate(sorted(df["label"].unique()))}
    y = df["label"].map(ids).to_numpy()
    test = make_texts(5, seed=1)
    spec = config().evaluate.baseline
    probs = fit_predict_baseline(
        df["text"].tolist(), y, {"test": test["text"].tolist(), "empty": []}, 4, spec, 0
    )
    assert probs["test"].shape == (15, 4) and probs["empty"].shape == (0, 4)
    assert (probs["test"][:, 3] == 0).all()  # a class the baseline never saw gets no mass
    accuracy = (probs["test"].argmax(1) == test["label"].map(ids).to_numpy()).mean()
    assert accuracy > 0.8
    with pytest.raises(ConfigError, match=r"unknown key evaluate\.baseline\.c; did you mean"):
        config({"evaluate.baseline.c": 1})
    with pytest.raises(ConfigError, match=r"evaluate\.baseline\.C=-1: Input should be greater"):
        config({"evaluate.baseline.C": -1})


def test_evaluate_stage_outputs(pipeline_cfg: dict[str, Any]) -> None:
    paths = pipeline_cfg["paths"]
    m = json.loads(Path(paths["evaluate_metrics"]).read_text())
    for key in ("accuracy", "f1_macro", "f1_weighted", "mcc", "roc_auc_ovr", "pr_auc_ovr"):
        assert -1 <= m[key] <= 1, key
    assert m["log_loss"] > 0 and 0 <= m["ece"] <= 1 and 0 <= m["ece_temperature_scaled"] <= 1
    assert m["temperature"] > 0
    per_class = json.loads(Path(paths["evaluate_per_class"]).read_text())
    assert set(per_class["billing"]) >= {"precision", "recall", "f1", "support", "baseline_f1"}
    assert "per_class" not in m, "a file of its own"
    headline = json.loads(Path(paths["metrics_evaluate"]).read_text())  # the DVC metrics file
    assert headline == {
        "accuracy": m["accuracy"],
        "f1_macro": m["f1_macro"],
        "tfidf_f1_macro": m["baseline"]["f1_macro"],
        "beats_tfidf": m["beats_baseline"],
        "ece": m["ece"],
    }
    assert m["num_classes"] == 3 and m["min_class_f1"] == min(v["f1"] for v in per_class.values())
    assert m["baseline"]["name"] == "tfidf_logreg"
    for key, delta in m["delta_vs_baseline"].items():
        assert delta == pytest.approx(m[key] - m["baseline"][key], abs=1e-5), key
    val = m["validation"]
    assert val["num_examples"] == 12 and "delta_vs_baseline" in val and "ece" in val
    inf = m["inference"]
    assert inf["samples_per_second"] > 0 and inf["num_batches"] >= 1
    assert 0 < inf["batch_latency_ms_p50"] <= inf["batch_latency_ms_p95"]
    preds = pd.read_parquet(paths["predictions"])
    assert {"num_tokens", "truncated", "baseline_predicted", "channel"} <= set(preds.columns)
    assert "by_length" not in m, "a file of its own"
    buckets = json.loads(Path(paths["evaluate_by_length"]).read_text())
    assert list(buckets) == ["within_half", "within", "beyond", "beyond_twice"]
    assert sum(b["num_examples"] for b in buckets.values()) == m["num_examples"]
    assert buckets["beyond"]["num_examples"] + buckets["beyond_twice"]["num_examples"] == int(
        preds["truncated"].sum()
    )
    pr = pd.read_csv(paths["pr_curve_plot"])
    roc = pd.read_csv(paths["roc_plot"])
    rel = pd.read_csv(paths["reliability_plot"])
    assert list(pr.columns) == ["recall", "precision"] and len(pr) >= 2
    assert list(roc.columns) == ["fpr", "tpr"] and roc["tpr"].is_monotonic_increasing
    assert {"confidence", "accuracy", "count"} <= set(rel.columns) and rel["count"].sum() == 12
    figures = Path(paths["evaluate_figures"])
    for name in ("pr_curves.png", "roc_curves.png", "reliability.png"):
        assert (figures / name).read_bytes()[:4] == b"\x89PNG", name
    mlflow.set_tracking_uri(pipeline_cfg["tracking"]["uri"])
    client = MlflowClient()
    run_id = json.loads(Path(paths["run_info"]).read_text())["run_id"]
    logged = client.get_run(run_id).data.metrics
    assert logged["test_mcc"] == pytest.approx(m["mcc"])
    assert logged["baseline_test_f1_macro"] == pytest.approx(m["baseline"]["f1_macro"])
    assert logged["delta_vs_baseline_test_f1_macro"] == pytest.approx(
        m["delta_vs_baseline"]["f1_macro"]
    )
    assert "inference_batch_latency_ms_p95" in logged and "val_ece" in logged
    filled = [k for k, b in buckets.items() if b["num_examples"]]
    assert logged[f"test_f1_macro_length_{filled[0]}"] == buckets[filled[0]]["f1_macro"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluate")}
    assert {"evaluate/reliability.png", "evaluate/pr_curves.png", "evaluate/roc_curve.json"} <= (
        artifacts
    )


def test_max_length_at_the_backbones_position_limit() -> None:
    from types import SimpleNamespace

    from finetune.evaluation.evaluate import _at_position_limit

    bert = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=512))
    roberta = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=514))
    assert _at_position_limit(bert, 512) == 512 and _at_position_limit(bert, 256) is None
    assert _at_position_limit(roberta, 512) == 514  # two positions reserved for padding
    assert _at_position_limit(SimpleNamespace(config=SimpleNamespace()), 512) is None
