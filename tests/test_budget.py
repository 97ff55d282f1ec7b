"""model.max_length auto fitted to train.time_budget (finetune.training.budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from finetune.augment import augment
from finetune.core.validate import parse
from finetune.data import preprocess
from finetune.training import budget, train
from finetune.training.trainer import build_model
from tests.conftest import build_tiny_model, config, make_stage_cfg, make_texts


def test_step_cost_is_the_line_through_the_measured_lengths() -> None:
    cost = budget.StepCost.from_points({128: 0.02, 512: 0.08})
    assert cost.per_token == pytest.approx(0.06 / 384)
    assert cost.fixed == pytest.approx(0.02 - 128 * 0.06 / 384)
    assert cost.seconds(256) == pytest.approx(0.04)
    noisy = budget.StepCost.from_points({128: 0.03, 512: 0.02})  # timing noise: never negative
    assert noisy.per_token == 0.0 and noisy.fixed == pytest.approx(0.03)
    with pytest.raises(ValueError, match="no cost measured at lengths"):
        budget.StepCost.from_points({128: 0.0, 512: 0.0})


def test_fit_length_keeps_short_texts_and_cuts_long_ones_to_what_the_budget_trains() -> None:
    lengths = np.array([600] * 50 + [100] * 50)  # per token only: 1 ms a token
    cost = budget.StepCost(0.0, 0.001)
    # at 512: 50 x 512 + 50 x 100 = 30,600 tokens an epoch, 61.2 s for two
    assert budget.fit_length(lengths, 512, 2, 61.2, cost) == 512
    # 40 s for two epochs: 20 s an epoch, 20,000 tokens: 50 x L + 5,000 -> L = 300 (x8: 296)
    assert budget.fit_length(lengths, 512, 2, 40.0, cost) == 296
    assert budget.fit_length(lengths, 512, 2, 1.0, cost) == budget.MIN_FITTED_LENGTH
    assert budget.fit_length(lengths, 96, 2, 1.0, cost) == 96, "never cut at or below the floor"
    assert budget.fit_length(lengths, 512, 2, 20.0, cost, processes=2) == 296
    # a fixed part per sample makes shorter texts save less
    # (0.05 s x 100 rows: 5 s an epoch; 15 s for tokens: 50 x L + 5,000 = 15,000)
    assert budget.fit_length(lengths, 512, 2, 40.0, budget.StepCost(0.05, 0.001)) == 200


def test_fit_length_from_a_start_that_is_no_multiple_of_8() -> None:
    lengths = np.array([700] * 10)
    cost = budget.StepCost(0.0, 0.001)
    assert budget.fit_length(lengths, 509, 1, 5.09, cost) == 509
    assert budget.fit_length(lengths, 509, 1, 5.08, cost) == 504


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-512"), max_positions=512)


def _long_texts(n_per_class: int = 12) -> Any:
    df = make_texts(n_per_class)
    df["text"] = [" ".join([t] * 40) for t in df["text"]]  # about 240 tokens each
    return df


def test_the_step_cost_is_measured_on_the_model_as_it_trains(long_model_dir: Path) -> None:
    spec = config({"train.batch_size": 4}).train
    labels = ["a", "b"]
    built: list[int] = []

    def make_model(length: int) -> Any:
        built.append(length)
        return build_model(str(long_model_dir), labels, spec, "cls")[0]

    from finetune.modeling.tokens import load_tokenizer, token_counts

    tokenizer = load_tokenizer(str(long_model_dir))
    texts = _long_texts(2)["text"].tolist()
    points = budget.measure_step_cost(
        make_model, tokenizer, texts, token_counts(tokenizer, texts), [16, 256], 4, 1e-3, "fp32"
    )
    assert built == [16, 256], "one model for each length (its attention dropout)"
    assert set(points) == {16, 256} and all(v > 0 for v in points.values())


@pytest.fixture
def long_cfg(tmp_path: Path, long_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_stage_cfg(tmp_path, long_model_dir, _long_texts())
    cfg["model"]["max_length"] = "auto"
    cfg["augment"]["enabled"] = False
    cfg["train"].update({"epochs": "auto", "max_epochs": 1, "time_budget": "30s"})
    cfg["train"]["progress_bar"] = False
    cfg["tracking"]["log_model"] = False
    preprocess.run(cfg)
    augment.run(cfg)
    return cfg


def test_a_budget_too_short_for_long_texts_cuts_them_and_says_so(
    long_cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The cut follows the measured cost (here a token costs 10 ms: 2 epochs of the train rows
    at the p99 length take longer than the 27 s the budget leaves for steps)."""
    measured: list[list[int]] = []

    def measure(make_model: Any, tokenizer: Any, texts: Any, lengths: Any, probe: Any, *a: Any):
        measured.append(list(probe))
        make_model(probe[0])  # the model builds at each length
        return {n: n * 0.01 for n in probe}

    monkeypatch.setattr(budget, "measure_step_cost", measure)
    monkeypatch.setattr(budget, "MIN_FITTED_LENGTH", 32)
    result = train.run(long_cfg)
    assert measured and measured[0][0] == 32 and measured[0][1] > 200, "floor and p99 probed"
    assert result.metrics
    rows = json.loads(Path(long_cfg["paths"]["train_report"]).read_text())
    p99 = measured[0][1]
    assert 32 <= rows["max_length"] < p99
    assert "max length cut from" in caplog.text and "train.time_budget=30s" in caplog.text
    model_dir = Path(long_cfg["paths"]["model_dir"])
    saved = json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"]
    assert saved == rows["max_length"]
    card = (model_dir / "README.md").read_text()
    assert f"Max sequence length: {saved} (`model.max_length: auto`: cut below" in card
    mlflow.set_tracking_uri(long_cfg["tracking"]["uri"])
    run_id = json.loads(Path(long_cfg["paths"]["run_info"]).read_text())["run_id"]
    params = mlflow.get_run(run_id).data.params
    assert params["resolved.model.max_length_by"] == "time_budget"
    assert params["resolved.model.max_length"] == str(saved)


def test_no_budget_no_probe_and_a_resumed_run_keeps_its_length(
    long_cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fail(*a: Any, **k: Any) -> Any:
        raise AssertionError("no step cost is measured")

    monkeypatch.setattr(budget, "measure_step_cost", fail)
    long_cfg["train"]["time_budget"] = None
    typed = parse(long_cfg)
    train_df = pd.read_parquet(Path(long_cfg["paths"]["augmented_dir"]) / "train.parquet")
    resolved = train.resolve_settings(typed, train_df, 10, ["a", "b"])
    assert resolved["model.max_length_by"] == "p99" and resolved["model.max_length"] > 200
    saved = tmp_path / "resolved.json"
    saved.write_text(json.dumps({"model.max_length": 40, "model.max_length_by": "time_budget"}))
    again = train.resolve_settings(typed, train_df, 10, ["a", "b"], saved)
    assert (again["model.max_length"], again["model.max_length_by"]) == (40, "time_budget")
