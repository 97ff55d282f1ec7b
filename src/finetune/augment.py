"""augment: offline, seeded text augmentation of the train split only.

Methods (EDA, Wei & Zou 2019; AEDA, Karimi et al. 2021): ``random_swap``, ``random_deletion``
and ``aeda`` (random punctuation insertion). Guards: negation words are never deleted or moved,
augmented texts equal to a validation/test text or to any other training text are dropped, and
every augmented row keeps the id of its original (``origin_id``) and its ``method``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from finetune.errors import ConfigError
from finetune.io import StagedOutputs, write_json, write_parquet
from finetune.splits import load_split

log = logging.getLogger(__name__)

NEGATIONS = frozenset(
    """no not nor never none nobody nothing neither nowhere cannot without hardly barely
    don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't couldn't shouldn't
    haven't hasn't hadn't mustn't dont doesnt didnt isnt arent wasnt werent wont wouldnt cant
    couldnt shouldnt havent hasnt hadnt n't""".split()
)
AEDA_PUNCTUATION = (".", ";", "?", ":", "!", ",")


def is_negation(word: str) -> bool:
    core = word.lower().strip(".,;:!?\"'()[]")
    return core in NEGATIONS or core.endswith("n't")


def random_swap(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Swap two non-negation words, max(1, alpha*n) times."""
    words = list(words)
    movable = [i for i, w in enumerate(words) if not is_negation(w)]
    if len(movable) < 2:
        return words
    for _ in range(max(1, int(alpha * len(words)))):
        i, j = rng.sample(movable, 2)
        words[i], words[j] = words[j], words[i]
    return words


def random_deletion(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Delete each non-negation word with probability alpha; keep at least one word."""
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if is_negation(w) or rng.random() > alpha]
    return kept or [rng.choice(words)]


def aeda(words: list[str], ratio: float, rng: random.Random) -> list[str]:
    """Insert between 1 and ratio*n punctuation marks at random positions."""
    words = list(words)
    for _ in range(rng.randint(1, max(1, int(ratio * len(words))))):
        words.insert(rng.randint(0, len(words)), rng.choice(AEDA_PUNCTUATION))
    return words


@dataclass(frozen=True)
class AugmentSpec:
    enabled: bool = True
    copies_per_example: int = 1
    fraction: float = 0.5
    methods: tuple[str, ...] = ("random_swap", "random_deletion", "aeda")
    alpha: float = 0.1
    aeda_ratio: float = 0.3
    sample_pairs: int = 30

    @classmethod
    def from_config(cls, aug: Any) -> AugmentSpec:
        spec = cls(
            enabled=bool(aug["enabled"]),
            copies_per_example=int(aug["copies_per_example"]),
            fraction=float(aug["fraction"]),
            methods=tuple(aug["methods"]),
            alpha=float(aug["alpha"]),
            aeda_ratio=float(aug["aeda_ratio"]),
            sample_pairs=int(aug.get("sample_pairs", 30)),
        )
        unknown = [m for m in spec.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"augment.methods: unknown {unknown}; choose from {sorted(METHODS)}")
        if spec.enabled and not spec.methods:
            raise ConfigError("augment.methods is empty while augment.enabled is true")
        if not 0 <= spec.fraction <= 1:
            raise ConfigError(f"augment.fraction={spec.fraction} must be between 0 and 1")
        return spec

    def apply(self, method: str, words: list[str], rng: random.Random) -> list[str]:
        if method == "aeda":
            return aeda(words, self.aeda_ratio, rng)
        return METHODS[method](words, self.alpha, rng)


METHODS: dict[str, Callable[[list[str], float, random.Random], list[str]]] = {
    "random_swap": random_swap,
    "random_deletion": random_deletion,
    "aeda": aeda,
}


def augment(
    train: pd.DataFrame, spec: AugmentSpec, seed: int, forbidden_texts: Iterable[str] = ()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the training set (originals first, then augmented rows) and statistics."""
    base = train.assign(origin_id=train["id"], method="original")
    stats: dict[str, Any] = {"original_rows": len(train), "added": 0, "by_method": {}}
    if not spec.enabled or spec.copies_per_example <= 0 or spec.fraction == 0:
        stats["total_rows"] = len(base)
        return base.reset_index(drop=True), stats
    rng = random.Random(seed)
    seen = set(train["text"]) | set(forbidden_texts)
    forbidden = set(forbidden_texts)
    dropped = {"equal_to_eval_text": 0, "duplicate": 0}
    rows = []
    for record in train.to_dict("records"):
        if rng.random() >= spec.fraction:
            continue
        words = record["text"].split()
        for copy in range(spec.copies_per_example):
            method = rng.choice(spec.methods)
            text = " ".join(spec.apply(method, words, rng))
            if text in seen:
                dropped["equal_to_eval_text" if text in forbidden else "duplicate"] += 1
                continue
            seen.add(text)
            rows.append(
                {
                    **record,
                    "id": f"{record['id']}~aug{copy}",
                    "text": text,
                    "origin_id": record["id"],
                    "method": method,
                }
            )
    added = pd.DataFrame(rows, columns=base.columns)
    stats["added"] = len(added)
    stats["dropped"] = dropped
    stats["by_method"] = added["method"].value_counts().sort_index().to_dict()
    stats["by_class"] = added["label"].value_counts().sort_index().to_dict()
    stats["total_rows"] = len(base) + len(added)
    return pd.concat([base, added], ignore_index=True), stats


def sample_pairs(augmented: pd.DataFrame, n: int, seed: int) -> list[dict[str, str]]:
    added = augmented[augmented["method"] != "original"]
    if added.empty:
        return []
    originals = augmented.set_index("id")["text"]
    picked = added.sample(n=min(n, len(added)), random_state=seed)
    return [
        {"method": r.method, "label": r.label, "before": originals[r.origin_id], "after": r.text}
        for r in picked.itertuples()
    ]


def run(cfg: Any) -> pd.DataFrame:
    """Stage entry: processed train split -> paths.augmented_dir/train.parquet + stats."""
    spec = AugmentSpec.from_config(cfg["augment"])
    processed = cfg["paths"]["processed_dir"]
    train = load_split(processed, "train")
    eval_texts = set(load_split(processed, "validation")["text"]) | set(
        load_split(processed, "test")["text"]
    )
    result, stats = augment(train, spec, int(cfg["seed"]), eval_texts)
    with StagedOutputs() as out:
        target = out.dir(cfg["paths"]["augmented_dir"])
        write_parquet(target / "train.parquet", result)
        write_json(target / "samples.json", sample_pairs(result, spec.sample_pairs, cfg["seed"]))
        write_json(out.file(cfg["paths"]["augment_report"]), stats)
    log.info("augment: %d original + %d augmented rows", stats["original_rows"], stats["added"])
    return result
