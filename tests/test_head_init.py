"""train.head_init: the linear probe that starts the classification head (LP-FT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from finetune.core.errors import ConfigError
from finetune.modeling import decisions
from finetune.training import head_init, trainer
from tests.conftest import config, make_texts


def _blobs(n: int = 240, classes: int = 3, dim: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y = rng.integers(0, classes, n)
    # unequal scales and offsets: the fold must undo the standardisation exactly
    x = centres[y] + rng.normal(0, 1, (n, dim))
    x = x * np.linspace(0.01, 50, dim) + 7.0
    return x, y


def _softmax_head(weight: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    return decisions.softmax(x @ weight.T + bias)


@pytest.mark.parametrize("classes", [2, 3])
def test_single_label_probe_is_the_logistic_regression_on_raw_embeddings(classes: int) -> None:
    x, y = _blobs(classes=classes)
    weight, bias = head_init.fit_single_label(x, y, classes)
    assert weight.shape == (classes, x.shape[1])
    z = (x - x.mean(0)) / x.std(0)
    reference = LogisticRegression(C=head_init.PROBE_C, max_iter=500).fit(z, y)
    np.testing.assert_allclose(
        _softmax_head(weight, bias, x), reference.predict_proba(z), atol=1e-6
    )
    assert (_softmax_head(weight, bias, x).argmax(1) == y).mean() > 0.9


def test_single_label_probe_keeps_a_class_without_rows_out_of_the_predictions() -> None:
    x, y = _blobs(classes=3)
    weight, bias = head_init.fit_single_label(x, y, 4)  # class 3 has no train row
    assert np.all(weight[3] == 0) and bias[3] == -head_init.CONSTANT_LOGIT
    assert _softmax_head(weight, bias, x)[:, 3].max() < 0.01


def test_single_label_probe_weighs_classes_as_the_loss_does() -> None:
    x, y = _blobs(classes=3, seed=1)
    plain, plain_bias = head_init.fit_single_label(x, y, 3)
    heavy, heavy_bias = head_init.fit_single_label(x, y, 3, class_weights=[1.0, 1.0, 50.0])
    assert (
        _softmax_head(heavy, heavy_bias, x)[:, 2].mean()
        > _softmax_head(plain, plain_bias, x)[:, 2].mean()
    )


def test_multi_label_probe_fits_each_label_and_fixes_constant_ones() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (300, 5)) * [1, 10, 100, 1, 1] + 3
    targets = np.zeros((300, 4), dtype=int)
    targets[:, 0] = x[:, 0] > 3  # learnable
    targets[:, 1] = x[:, 1] > 12  # learnable, rarer
    targets[:, 3] = 1  # every row: constant
    weight, bias = head_init.fit_multi_label(x, targets)
    probs = decisions.sigmoid(x @ weight.T + bias)
    z = (x - x.mean(0)) / x.std(0)
    for j in (0, 1):
        reference = LogisticRegression(C=head_init.PROBE_C, max_iter=500).fit(z, targets[:, j])
        np.testing.assert_allclose(probs[:, j], reference.predict_proba(z)[:, 1], atol=1e-6)
    assert probs[:, 2].max() < 0.001 and probs[:, 3].min() > 0.999  # no positives, all positive
    assert np.all(weight[2] == 0) and np.all(weight[3] == 0)


def test_multi_label_probe_weighs_positives_as_the_loss_does() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (400, 3))
    targets = (x[:, :1] + rng.normal(0, 1.5, (400, 1)) > 2).astype(int)
    plain = decisions.sigmoid(x @ head_init.fit_multi_label(x, targets)[0].T)
    w, b = head_init.fit_multi_label(x, targets, pos_weight=[20.0])
    heavy = decisions.sigmoid(x @ w.T + b)
    assert heavy.mean() > plain.mean()


@pytest.mark.parametrize(
    ("setting", "pooling", "lora", "expected"),
    [
        ("auto", "mean", False, "probe"),
        ("auto", "cls", False, "random"),
        ("auto", "mean", True, "random"),
        ("random", "mean", False, "random"),
        ("probe", "mean", True, "probe"),
    ],
)
def test_resolve(setting: str, pooling: str, lora: bool, expected: str) -> None:
    assert head_init.resolve(setting, pooling, lora)[0] == expected


def test_probe_needs_a_mean_pooling_head() -> None:
    with pytest.raises(ConfigError, match="model.pooling resolved to 'cls'.*head_init: random"):
        head_init.resolve("probe", "cls", False)


def test_unknown_head_init_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="head_init"):
        config({"train.head_init": "zeros"})


def _start(tiny_model_dir: Path, df: pd.DataFrame, labels: list[str], **train: object):
    cfg = config(
        {
            "model.name_or_path": str(tiny_model_dir),
            "model.pooling": "mean",
            "model.max_length": 32,
            **{f"train.{k}": v for k, v in train.items()},
        }
    )
    start = trainer.HeadStart(cfg.train, cfg.model, df, labels, None, resuming=False)
    model, tokenizer = trainer.build_model(
        cfg.model.name_or_path, labels, cfg.train, "mean", None, None, start
    )
    return start, model, tokenizer


def test_probe_sets_the_head_of_the_tiny_model(tiny_model_dir: Path) -> None:
    df = make_texts(n_per_class=30)  # more rows than the tiny head's capacity (2 x 32)
    labels = sorted(df["label"].unique())
    df["label_id"] = df["label"].map({name: i for i, name in enumerate(labels)})
    start, model, tokenizer = _start(tiny_model_dir, df, labels)
    assert start.how == "probe" and start.seconds > 0
    from finetune.modeling.inference import predict_proba

    predicted = predict_proba(model, tokenizer, df["text"].tolist(), 16, 32).predicted
    # the random-start head of the same model, for comparison
    _, plain, _ = _start(tiny_model_dir, df, labels, head_init="random")
    chance = predict_proba(plain, tokenizer, df["text"].tolist(), 16, 32).predicted
    accuracy = (predicted == df["label_id"].to_numpy()).mean()
    assert accuracy > 0.9 > (chance == df["label_id"].to_numpy()).mean()
    assert not torch.equal(model.classifier.weight, plain.classifier.weight)


def test_resumed_run_does_not_probe(tiny_model_dir: Path) -> None:
    df = make_texts(n_per_class=5)
    labels = sorted(df["label"].unique())
    df["label_id"] = df["label"].map({name: i for i, name in enumerate(labels)})
    cfg = config({"model.name_or_path": str(tiny_model_dir), "model.pooling": "mean"})
    start = trainer.HeadStart(cfg.train, cfg.model, df, labels, None, resuming=True)
    assert start.how == "random" and "resuming" in start.why


def test_probe_rows_keep_rare_groups_whole_and_respect_the_cap() -> None:
    groups = np.array([0] * 1000 + [1] * 50 + [2] * 5)
    rows = head_init.probe_rows(groups, 200)
    assert len(rows) <= 200 and len(rows) == len(set(rows.tolist()))
    taken = np.bincount(groups[rows], minlength=3)
    assert taken[2] == 5 and taken[1] == 50 and taken[0] == 145
    assert np.array_equal(head_init.probe_rows(groups[:30], 200), np.arange(30))


def test_multi_label_strata_are_each_rows_rarest_label() -> None:
    targets = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1]])
    assert head_init.strata(targets, True).tolist() == [1, 0, 3, 2]


def test_estimated_seconds_count_the_probe_rows_and_tokens() -> None:
    lengths = np.array([10, 500, 60])
    # one second per token of a training sample; the probe reads at most 128 of max 256
    assert head_init.estimated_seconds(lengths, 256, lambda t: t) == pytest.approx(
        (10 + 128 + 60) * head_init.FORWARD_SHARE
    )
    assert head_init.estimated_seconds(lengths, 32, lambda t: t) == pytest.approx(
        (10 + 32 + 32) * head_init.FORWARD_SHARE
    )
    # more rows than the probe embeds: the mean over all of them, times the rows it embeds
    many = np.array([10] * head_init.PROBE_MAX_ROWS + [500] * head_init.PROBE_MAX_ROWS)
    assert head_init.estimated_seconds(many, 256, lambda t: t) == pytest.approx(
        (10 + 128) / 2 * head_init.PROBE_MAX_ROWS * head_init.FORWARD_SHARE
    )


def test_auto_starts_from_random_when_the_rows_are_within_the_heads_capacity(
    tiny_model_dir: Path,
) -> None:
    df = make_texts(n_per_class=10)  # 30 rows <= 2 x 32 dimensions
    labels = sorted(df["label"].unique())
    df["label_id"] = df["label"].map({name: i for i, name in enumerate(labels)})
    start, _, _ = _start(tiny_model_dir, df, labels)
    assert start.how == "random" and "capacity" in start.why and start.seconds == 0
    forced, _, _ = _start(tiny_model_dir, df, labels, head_init="probe")  # a setting is kept
    assert forced.how == "probe" and forced.seconds > 0
    assert head_init.saturates(64, 32) and not head_init.saturates(65, 32)
