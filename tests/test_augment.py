"""augment: deterministic offline methods, negation guard, no leakage into evaluation texts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finetune import augment as aug
from finetune import preprocess
from finetune.augment import AugmentSpec, aeda, augment, is_negation, random_deletion, random_swap
from finetune.errors import ConfigError

WORDS = "i did not receive my refund and the card was never charged back".split()


@pytest.mark.parametrize("method", [random_swap, random_deletion])
def test_eda_methods_keep_negations(method: Any) -> None:
    for seed in range(50):
        out = method(WORDS, 0.5, random.Random(seed))
        assert [w for w in out if is_negation(w)] == ["not", "never"]


def test_swap_keeps_negation_positions_and_multiset() -> None:
    out = random_swap(WORDS, 0.3, random.Random(1))
    assert sorted(out) == sorted(WORDS) and out != WORDS
    assert out.index("not") == WORDS.index("not") and out.index("never") == WORDS.index("never")


def test_deletion_keeps_at_least_one_word() -> None:
    assert random_deletion(["hello"], 1.0, random.Random(0)) == ["hello"]
    assert len(random_deletion(["a", "b"], 1.0, random.Random(0))) == 1


def test_aeda_inserts_only_punctuation() -> None:
    out = aeda(WORDS, 0.3, random.Random(2))
    assert [w for w in out if w not in aug.AEDA_PUNCTUATION] == WORDS
    assert 1 <= len(out) - len(WORDS) <= int(0.3 * len(WORDS))


def test_is_negation() -> None:
    assert all(is_negation(w) for w in ["not", "Never,", "didn't", "can't.", "NO"])
    assert not any(is_negation(w) for w in ["note", "know", "nothingness"])


def spec(**kw: Any) -> AugmentSpec:
    return AugmentSpec(**{"fraction": 1.0, "copies_per_example": 2, **kw})


def test_augment_is_seeded_tagged_and_guarded(tiny_data: pd.DataFrame) -> None:
    forbidden = {tiny_data["text"][0]}
    train = tiny_data.iloc[1:].assign(label_id=0)
    out1, stats = augment(train, spec(), seed=7, forbidden_texts=forbidden)
    out2, _ = augment(train, spec(), seed=7, forbidden_texts=forbidden)
    pd.testing.assert_frame_equal(out1, out2)
    assert not out1.equals(augment(train, spec(), seed=8, forbidden_texts=forbidden)[0])
    assert out1["text"].is_unique and not set(out1["text"]) & forbidden
    originals = out1[out1["method"] == "original"]
    added = out1[out1["method"] != "original"]
    assert originals["id"].tolist() == train["id"].tolist()
    assert set(added["method"]) <= set(aug.METHODS)
    assert added["origin_id"].isin(train["id"]).all()
    by_origin = train.set_index("id")["label"]
    assert (added["label"].to_numpy() == by_origin[added["origin_id"]].to_numpy()).all()
    assert stats["added"] == len(added) and stats["total_rows"] == len(out1)
    assert sum(stats["by_method"].values()) == len(added)
    assert stats["added"] + sum(stats["dropped"].values()) == 2 * len(train)


def test_texts_equal_to_eval_texts_are_dropped() -> None:
    train = pd.DataFrame({"id": ["a"], "text": ["x y"], "label": ["l"], "label_id": [0]})
    # With two words, a swap always gives "y x": forbid it.
    out, stats = augment(train, spec(methods=("random_swap",), copies_per_example=1), 0, {"y x"})
    assert out["text"].tolist() == ["x y"]
    assert stats["dropped"]["equal_to_eval_text"] == 1


def test_disabled_passes_train_through(tiny_data: pd.DataFrame) -> None:
    out, stats = augment(tiny_data, spec(enabled=False), seed=0)
    assert out["text"].tolist() == tiny_data["text"].tolist()
    assert (out["method"] == "original").all() and stats["added"] == 0


def test_config_errors() -> None:
    base = {
        "enabled": True,
        "copies_per_example": 1,
        "fraction": 0.5,
        "methods": ["aeda"],
        "alpha": 0.1,
        "aeda_ratio": 0.3,
    }
    with pytest.raises(ConfigError, match=r"unknown \['synonyms'\]"):
        AugmentSpec.from_config({**base, "methods": ["synonyms"]})
    with pytest.raises(ConfigError, match="augment.fraction=2.0"):
        AugmentSpec.from_config({**base, "fraction": 2})
    with pytest.raises(ConfigError, match="augment.methods is empty"):
        AugmentSpec.from_config({**base, "methods": []})


def test_run_uses_train_split_only(stage_cfg: dict[str, Any]) -> None:
    preprocess.run(stage_cfg)
    out = aug.run(stage_cfg)
    processed = Path(stage_cfg["paths"]["processed_dir"])
    train = pd.read_parquet(processed / "train.parquet")
    eval_ids = set(pd.read_parquet(processed / "test.parquet")["id"]) | set(
        pd.read_parquet(processed / "validation.parquet")["id"]
    )
    assert set(out["origin_id"]) <= set(train["id"]) and not set(out["origin_id"]) & eval_ids
    written = pd.read_parquet(Path(stage_cfg["paths"]["augmented_dir"]) / "train.parquet")
    pd.testing.assert_frame_equal(written, out)
    assert (Path(stage_cfg["paths"]["augmented_dir"]) / "samples.json").is_file()
