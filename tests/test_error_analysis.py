"""error_analysis: slices, robustness, label errors, attributions, previous metrics, report."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from finetune.analysis import label_errors as L
from finetune.analysis import previous, recommendations
from finetune.analysis import robustness as R
from finetune.analysis.explainers import integrated_gradients
from finetune.analysis.render import SECTIONS
from finetune.analysis.slices import bootstrap_ci, has_negation, length_bins, slice_metrics
from finetune.core.errors import ConfigError
from finetune.modeling.backbones import load_trained
from finetune.modeling.truncation import HEAD_ONLY
from tests.conftest import config

LABELS = ["account", "billing", "shipping"]


def _preds(correct: list[bool], texts: list[str] | None = None, **cols: Any) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": texts or ["my card was charged"] * n,
            "label": ["billing"] * n,
            "correct": correct,
            **cols,
        }
    )


def test_negation_and_length_bins() -> None:
    texts = pd.Series(["I can't log in", "not delivered", "nothing", "all good", "notable note"])
    assert has_negation(texts).tolist() == [True, True, True, False, False]
    bins = length_bins(pd.Series([1, 10, 11, 60]), [10, 25])
    assert bins.tolist() == ["1-10 words", "1-10 words", "11-25 words", "26+ words"]


def test_bootstrap_ci_brackets_the_mean() -> None:
    values = np.array([1.0] * 80 + [0.0] * 20)
    low, high = bootstrap_ci(values, 2000, np.random.default_rng(0))
    assert 0.7 < low < 0.8 < high < 0.9


def test_weak_slice_is_the_one_whose_ci_lies_below_overall() -> None:
    correct = [True] * 60 + [False] * 15 + [True] * 5
    channel = ["email"] * 60 + ["chat"] * 20
    preds = _preds(correct, channel=channel, truncated=[False] * 80)
    spec = config({"error_analysis.slices.bootstrap": 500}).error_analysis.slices
    table = slice_metrics(preds, spec, ["channel"], seed=0)
    assert set(table["dimension"]) == {"length", "class", "negation", "truncation", "channel"}
    weak = table[table["weak"]]
    assert weak[["dimension", "slice"]].values.tolist() == [["channel", "chat"]]
    chat = weak.iloc[0]
    assert chat["n"] == 20 and chat["errors"] == 15 and chat["accuracy"] == 0.25
    assert chat["ci_low"] <= 0.25 <= chat["ci_high"] < 0.8125


def test_perturbations_change_what_they_should() -> None:
    rng = random.Random(0)
    typo = R.typos("please refund my payment today", rng)
    assert typo != "please refund my payment today" and sorted(typo) == sorted(
        "please refund my payment today"
    )
    assert R.casing("Hi there", rng) == "HI THERE"
    assert R.punctuation("Hi, it's   broken!!", rng) == "Hi it's broken"
    assert R.contractions("I can't log in, it's locked", rng) == "I cannot log in, it is locked"
    assert R.contractions("I do not have it", rng) == "I don't have it"
    assert R.person_names("Ask Sarah or sarah", rng) == "Ask Mei or sarah"
    assert R.person_names("no names here", rng) == "no names here"
    with pytest.raises(ConfigError, match=r"unknown test\(s\) \['spelling'\]"):
        R.perturb(["x"], ["spelling"])


def test_flip_rate_counts_only_changed_texts() -> None:
    texts = ["refund please", "Sarah needs a refund", "parcel late"]
    preds = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "text": texts,
            "label_id": [1, 1, 2],
            "predicted_id": [1, 1, 2],
            "confidence": [0.9, 0.9, 0.9],
            **{f"prob_{label}": [0.05, 0.05, 0.05] for label in LABELS},
        }
    )

    def predict(batch: list[str]) -> np.ndarray:
        """A name-sensitive keyword model: "Mei" makes it say account."""
        out = np.full((len(batch), 3), 0.05)
        for i, t in enumerate(batch):
            out[i, 0 if "Mei" in t else (1 if "refund" in t.lower() else 2)] = 0.9
        return out

    spec = config({"error_analysis.robustness.tests": ["person_names", "casing"]})
    table, examples = R.run_invariance(preds, predict, LABELS, spec.error_analysis.robustness, 0)
    by = table.set_index("test")
    assert by.loc["person_names", "applicable"] == 1 and by.loc["person_names", "flipped"] == 1
    assert by.loc["person_names", "flip_rate"] == 1.0 and by.loc["person_names", "newly_wrong"] == 1
    assert by.loc["casing", "applicable"] == 3 and by.loc["casing", "flip_rate"] == 0.0
    (row,) = examples.to_dict("records")
    assert row["perturbed_text"] == "Mei needs a refund"
    assert row["perturbed_prediction"] == "account"
    seen: list[str] = []
    capped = config(
        {"error_analysis.robustness.tests": ["casing"], "error_analysis.robustness.max_texts": 2}
    ).error_analysis.robustness
    table, _ = R.run_invariance(preds, lambda b: seen.extend(b) or predict(b), LABELS, capped, 0)
    assert table.set_index("test").loc["casing", "applicable"] == 2 and len(seen) == 2


def test_cleanlab_ranks_flipped_labels_first() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 6
    y_true = np.repeat([0, 1, 2], 60)
    emb = centres[y_true] + rng.normal(0, 1, size=(180, 8))
    given = y_true.copy()
    flipped = [3, 70, 130, 150]
    given[flipped] = (given[flipped] + 1) % 3
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(180)], "text": ["t"] * 180})
    probs = L.cross_validated_probs(emb, given, folds=5, seed=0)
    assert probs.shape == (180, 3) and np.allclose(probs.sum(1), 1)
    ranked = L.rank_label_issues(frame, given, probs, LABELS)
    assert set(ranked["id"].head(4)) == {f"r{i}" for i in flipped}
    assert ranked["rank"].tolist()[:2] == [1, 2]
    top = ranked.iloc[0]
    assert top["suggested_label"] == LABELS[y_true[int(top["id"][1:])]]
    manifest = pd.DataFrame({"id": ["r3", "r70", "r999"]})
    recall = L.manifest_recall(ranked, manifest, set(frame["id"]))
    assert recall == {"known_in_scope": 2, "found_in_top_2x": 2, "recall_at_2x": 1.0, "found": 2}


def test_integrated_gradients_on_the_tiny_model(pipeline_cfg: dict[str, Any]) -> None:
    model, tokenizer = load_trained(pipeline_cfg["paths"]["model_dir"])
    explain = integrated_gradients(model, tokenizer, 32, 8, HEAD_ONLY)
    (scores,) = explain(["refund my card please"], [1])
    assert scores.shape == (4,) and np.isfinite(scores).all() and np.abs(scores).max() > 0


def test_previous_metrics_are_the_ones_committed_at_git_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real DVC project: metrics committed at HEAD are found (dvc.api), the workspace's
    newer ones are not what is compared with."""
    from tests.helpers import sh

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    assert previous.metrics_at_git_head("reports/m.json") is None  # nothing committed yet
    (tmp_path / "make.py").write_text(
        "import json, pathlib\npathlib.Path('reports').mkdir(exist_ok=True)\n"
        "json.dump({'f1_macro': 0.5}, open('reports/m.json', 'w'))\n"
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n    cmd: python make.py\n    deps: [make.py]\n"
        "    outs: [reports/m.json]\n"  # an output, as paths.evaluate_metrics is
    )
    sh(tmp_path, "dvc", "repro", "-q")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    (tmp_path / "reports/m.json").write_text('{"f1_macro": 0.9}')  # the new, uncommitted run
    assert previous.metrics_at_git_head(tmp_path / "reports/m.json") == {"f1_macro": 0.5}
    found, source = previous.previous_metrics("reports/m.json", "auto", None)
    assert found == {"f1_macro": 0.5} and "git HEAD" in source
    table = previous.compare_headline({"f1_macro": 0.6, "accuracy": 0.7}, found)
    f1 = table.set_index("metric").loc["f1_macro"]
    assert f1["change"] == pytest.approx(0.1) and pd.isna(
        table.set_index("metric").loc["accuracy", "previous"]
    )


def test_next_steps_are_derived_from_findings() -> None:
    slices = pd.DataFrame(
        [
            {"dimension": "channel", "slice": "chat", "n": 20, "errors": 15, "accuracy": 0.25,
             "ci_low": 0.1, "ci_high": 0.45, "gap_vs_overall": -0.5, "weak": True},
        ]
    )  # fmt: skip
    pairs = pd.DataFrame(
        [
            {
                "true_label": "billing",
                "predicted_label": "account",
                "count": 4,
                "share_of_errors": 0.5,
            }
        ]
    )
    issues = pd.DataFrame({"id": ["r1", "r2", "r3"], "flagged": [True, True, False]})
    rob = pd.DataFrame([{"test": "typos", "applicable": 50, "flipped": 5, "flip_rate": 0.1}])
    attrs = [{"top_word": "refund"}, {"top_word": "Refund"}]
    ev = {"ece": 0.2, "ece_temperature_scaled": 0.05, "temperature": 2.0,
          "delta_vs_baseline": {"f1_macro": -0.02}}  # fmt: skip
    comp = pd.DataFrame([{"metric": "f1_macro", "change": -0.05}])
    steps = recommendations.next_steps(
        {"accuracy": 0.75}, pairs, slices, issues, rob, attrs, ev, comp
    )
    text = "\n".join(steps)
    assert steps[0].startswith("Macro-F1 dropped by 0.050")
    for needle in ("2 labelled rows", "channel = chat", "billing → account", "10.0% of",
                   "'refund' (2×)", "T=2.00", "TF-IDF baseline by only -0.020"):  # fmt: skip
        assert needle in text, needle


def test_error_analysis_stage_outputs(pipeline_cfg: dict[str, Any]) -> None:
    paths = pipeline_cfg["paths"]
    page = Path(paths["error_report_html"]).read_text()
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no network resources"
    assert "<script" not in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 3  # confusion matrix, slices, robustness
    assert 'class="attr"' in page  # at least one highlighted explanation
    # a model that loses to the TF-IDF baseline (the tiny one does) is named first, with tips
    ev = json.loads(Path(paths["evaluate_metrics"]).read_text())
    assert ev["beats_baseline"] is False
    banner = page.index('id="baseline-warning"')
    assert banner < page.index('<section id="summary">')
    assert "does NOT beat the TF-IDF baseline" in page[banner : banner + 600]
    assert "require_beat_baseline is false: it may still become champion" in page  # tests' cfg
    md = Path(paths["error_report"]).read_text().splitlines()
    assert md[2].startswith("> **Warning.** The fine-tuned model does NOT beat")
    tables = Path(paths["error_tables"])
    for name in ("errors", "confusion_pairs", "slices", "label_issues_test", "label_issues_cv",
                 "robustness", "robustness_examples", "comparison"):  # fmt: skip
        assert (tables / f"{name}.csv").is_file(), name
    slices = pd.read_csv(tables / "slices.csv")
    assert {"length", "class", "negation", "truncation", "channel"} <= set(slices["dimension"])
    rob = pd.read_csv(tables / "robustness.csv")
    assert set(rob["test"]) == {"typos", "casing", "punctuation", "contractions", "person_names"}
    explained = json.loads((tables / "explanations.json").read_text())
    preds = pd.read_parquet(paths["predictions"])
    n_errors, n_right = int((~preds["correct"]).sum()), int(preds["correct"].sum())
    kinds = [e["correct"] for e in explained["examples"]]
    # the most confident errors and a sample of correct predictions, mixed; the 60 s budget
    # may end the list early on a loaded machine, never before one of each kind
    assert explained["candidates"] == min(20, n_errors) + min(10, n_right)
    assert 1 <= len(kinds) <= explained["candidates"]
    wrong, right = min(20, n_errors), min(10, n_right)  # mixed by each one's share of its kind
    mixed = sorted([((i + 0.5) / wrong, 0, False) for i in range(wrong)]
                   + [((i + 0.5) / right, 1, True) for i in range(right)])  # fmt: skip
    assert kinds == [kind for *_, kind in mixed][: len(kinds)]
    assert explained["methods"] == ["integrated_gradients", "shap", "lime"]
    faithfulness = pd.read_csv(tables / "explainers.csv")
    assert faithfulness["method"].tolist() == [*explained["methods"], "random"]
    assert 'id="explanations"' in page and "Agreement between explainers" in page
    summary = json.loads(Path(paths["error_metrics"]).read_text())
    assert summary["num_errors"] == int((~preds["correct"]).sum())
    queue = pd.read_csv(tables / "label_issues_cv.csv")
    assert summary["label_issues_cv"] == int(queue["flagged"].sum())
    labelled = sum(
        len(pd.read_parquet(Path(paths["processed_dir"]) / f"{name}.parquet"))
        for name in pipeline_cfg["error_analysis"]["label_errors"]["splits"]
    )
    assert pipeline_cfg["error_analysis"]["label_errors"]["rows"] is None
    assert len(queue) == labelled, "every labelled row outside test is ranked"
    assert set(queue["split"]) <= {"train", "validation"}
    assert queue["flagged"].is_monotonic_decreasing  # flagged rows first, then the queue
    assert "flip_rate_typos" in summary and "weak_slices" in summary
    assert summary["explained_texts"] == len(kinds)
    mlflow.set_tracking_uri(pipeline_cfg["tracking"]["uri"])
    run_id = json.loads(Path(paths["run_info"]).read_text())["run_id"]
    names = {a.path for a in MlflowClient().list_artifacts(run_id, "error_analysis")}
    assert "error_analysis/explanations.html" in names
    logged = MlflowClient().get_run(run_id).data.metrics
    assert {f"explain_{m}_faithfulness" for m in (*explained["methods"], "random")} <= set(logged)
    assert {"error_analysis/report.html", "error_analysis/tables"} <= names


def test_the_mixture_weighs_the_source_that_explains_the_labels() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=400)
    good = np.full((400, 3), 0.05)
    good[np.arange(400), y] = 0.9
    noise = rng.dirichlet(np.ones(3), size=400)
    weights = L.mixture_weights([good, noise], y)
    assert weights.sum() == pytest.approx(1.0) and weights[0] > 0.9
    # a source fitted without the last class has fewer columns: padded with zeros
    narrow = good[:, :2] / good[:, :2].sum(axis=1, keepdims=True)
    mixed, _ = L.combine_probs([narrow, good], np.minimum(y, 1), 3)
    assert mixed.shape == (400, 3) and np.allclose(mixed.sum(axis=1), 1.0)
    (only,) = L.combine_probs([noise], y, 3)[1]
    assert only == 1.0
    with pytest.raises(ValueError, match="no out-of-sample probabilities"):
        L.combine_probs([], y, 3)
