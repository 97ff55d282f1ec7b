"""model.max_length auto fitted to train.time_budget (finetune.training.budget)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from finetune.augment import augment
from finetune.core.validate import parse
from finetune.data import preprocess
from finetune.modeling.tokens import load_tokenizer, token_counts
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
    # 40 s for two epochs: 20 s an epoch, 20,000 tokens: 50 x L + 5,000 -> L = 300 (x64: 256)
    assert budget.fit_length(lengths, 512, 2, 40.0, cost) == 256
    assert budget.fit_length(lengths, 512, 2, 1.0, cost) == budget.MIN_FITTED_LENGTH
    assert budget.fit_length(lengths, 96, 2, 1.0, cost) == 96, "never cut at or below the floor"
    assert budget.fit_length(lengths, 512, 2, 20.0, cost, processes=2) == 256
    # a fixed part per sample makes shorter texts save less
    # (0.05 s x 100 rows: 5 s an epoch; 15 s for tokens: 50 x L + 5,000 = 15,000 -> 192)
    assert budget.fit_length(lengths, 512, 2, 40.0, budget.StepCost(0.05, 0.001)) == 192


def test_fit_length_from_a_start_that_is_no_multiple_of_the_step() -> None:
    lengths = np.array([700] * 10)
    cost = budget.StepCost(0.0, 0.001)
    assert budget.fit_length(lengths, 500, 1, 5.0, cost) == 500
    assert budget.fit_length(lengths, 500, 1, 4.99, cost) == 448
    assert budget.fit_length(lengths, 500, 1, 1.9, cost) == 128
    assert budget.fit_length(lengths, 150, 1, 1.0, cost) == 128
    assert budget.fit_length(lengths, 500, 1, 1.9, cost, floor=100) == 128
    assert budget.fit_length(lengths, 500, 1, 1.2, cost, floor=100) == 100


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

    tokenizer = load_tokenizer(str(long_model_dir))
    texts = _long_texts(2)["text"].tolist()
    points = budget.measure_step_cost(
        make_model, tokenizer, texts, token_counts(tokenizer, texts), [16, 256], 4, 1e-3, "fp32"
    )
    assert built == [16, 256], "one model for each length (its attention dropout)"
    assert set(points) == {16, 256} and all(v > 0 for v in points.values())


def test_probe_steps_are_timed_until_they_settle_and_the_fastest_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the steps of 20 Newsgroups at 128 tokens (s a sample x 32): slow first steps of a shape
    assert not budget.settled([5.8])
    assert not budget.settled([5.8, 2.9]), "2x faster: still warming up"
    assert not budget.settled([5.8, 2.9, 2.4])
    assert budget.settled([5.8, 2.9, 2.4, 2.4]), "within a tenth of the fastest before it"
    assert budget.settled([2.4, 2.5]), "slower than the fastest: settled"

    # perf_counter's values: the warm-up's start (it is not timed), then each step's start and end
    clock = iter([0.0, 0.0, 5.8, 0.0, 2.9, 0.0, 2.4, 0.0, 2.3, 0.0, 1.0])

    class Step:  # forward, backward and AdamW step of a model that does nothing
        loss = None

    class Model:
        def to(self, device: Any) -> Any:
            return self

        def train(self) -> None:
            pass

        def parameters(self) -> list[Any]:
            import torch

            return [torch.nn.Parameter(torch.zeros(1))]

        def __call__(self, **batch: Any) -> Any:
            import torch

            step = Step()
            step.loss = (self.parameters()[0] * 0).sum() + torch.zeros(1, requires_grad=True).sum()
            return step

    class Tokenizer:
        def __call__(self, texts: list[str], **kw: Any) -> dict[str, Any]:
            import torch

            return {"input_ids": torch.zeros(len(texts), 4, dtype=torch.long)}

    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    points = budget.measure_step_cost(
        lambda length: Model(), Tokenizer(), ["a"] * 4, np.array([4] * 4), [128], 4, 1e-3, "fp32"
    )
    # steps of 5.8, 2.9, 2.4 and 2.3 s: the fourth is the limit (a fifth is never timed)
    assert budget.PROBE_MAX_STEPS == 4
    assert points == {128: pytest.approx(2.3 / 4)}


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
    """The cut follows the measured cost (here a token costs 8 ms: an epoch of the train rows at
    the p99 length takes longer than the 27 s the budget leaves for steps; one epoch is the
    goal)."""
    measured: list[list[int]] = []

    def measure(make_model: Any, tokenizer: Any, texts: Any, lengths: Any, probe: Any, *a: Any):
        measured.append(list(probe))
        make_model(probe[0])  # the model builds at each length
        return {n: n * 0.008 for n in probe}

    monkeypatch.setattr(budget, "measure_step_cost", measure)
    monkeypatch.setattr(budget, "MIN_FITTED_LENGTH", 32)
    long_cfg["train"]["keep_checkpoints"] = True
    train.run(long_cfg)
    assert measured and measured[0][0] == 32 and measured[0][1] > 200, "floor and p99 probed"
    p99 = measured[0][1]
    tokenizer = load_tokenizer(long_cfg["model"]["name_or_path"])
    texts = pd.read_parquet(Path(long_cfg["paths"]["augmented_dir"]) / "train.parquet")["text"]
    lengths = token_counts(tokenizer, texts.tolist())
    expected = {
        budget.fit_length(lengths, p99, 1, s, budget.StepCost(0.0, 0.008), floor=32)
        for s in (26.0, 27.0)  # the budget less a tenth, less the probe's own (short) time
    }
    assert len(expected) == 1 and next(iter(expected)) < p99
    rows = json.loads(Path(long_cfg["paths"]["train_report"]).read_text())
    assert rows["max_length"] == next(iter(expected))
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
    # the checkpoints keep the length, for a resumed run
    (kept,) = Path(long_cfg["paths"]["checkpoints_dir"]).glob(f"*/{train.RESOLVED_FILE}")
    assert json.loads(kept.read_text()) == {
        "model.max_length": saved,
        "model.max_length_by": "time_budget",
    }


def test_no_budget_no_probe_and_a_resumed_run_keeps_its_length(
    long_cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    probed: list[Any] = []

    def fail(*a: Any, **k: Any) -> Any:
        probed.append(a)
        raise torch.OutOfMemoryError("probe out of memory")

    monkeypatch.setattr(budget, "measure_step_cost", fail)
    train_df = pd.read_parquet(Path(long_cfg["paths"]["augmented_dir"]) / "train.parquet")
    budgeted = parse(long_cfg)
    long_cfg["train"]["time_budget"] = None
    unbudgeted = parse(long_cfg)
    resolved = train.resolve_settings(unbudgeted, train_df, 10, ["a", "b"])
    assert resolved["model.max_length_by"] == "p99" and resolved["model.max_length"] > 200
    assert not probed, "no budget: nothing timed"

    ckpt = tmp_path / "ckpt"
    saved = ckpt / train.RESOLVED_FILE
    ckpt.mkdir()
    saved.write_text(json.dumps({"model.max_length": 40, "model.max_length_by": "time_budget"}))
    # no checkpoint next to it (a run that failed before its first): timed again, and here
    # the timing runs out of memory, so the p99 length stays
    again = train.resolve_settings(budgeted, train_df, 10, ["a", "b"], saved)
    assert len(probed) == 1 and again["model.max_length"] == resolved["model.max_length"]
    (ckpt / "checkpoint-4").mkdir()
    (ckpt / "checkpoint-4" / "trainer_state.json").write_text("{}")
    resumed = train.resolve_settings(budgeted, train_df, 10, ["a", "b"], saved)
    assert (resumed["model.max_length"], resumed["model.max_length_by"]) == (40, "time_budget")
    saved.unlink()  # checkpoints from before the budget's fit were trained at the p99 length
    old = train.resolve_settings(budgeted, train_df, 10, ["a", "b"], saved)
    assert old["model.max_length"] == resolved["model.max_length"] and len(probed) == 1
