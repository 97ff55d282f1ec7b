"""Augmentation methods on a word list: EDA (Wei & Zou 2019), AEDA (Karimi et al. 2021), typos."""

from __future__ import annotations

import random
from collections.abc import Callable

from finetune.augment.text import is_negation, match_case, split_punct, typo

AEDA_PUNCTUATION = (".", ";", "?", ":", "!", ",")


# EDA paper, Table 3: recommended (alpha, augmented copies per example) by training-set size.
EDA_TABLE = ((500, 0.05, 16), (2000, 0.05, 8), (5000, 0.1, 4))


EDA_LARGE = (0.1, 4)


SYNONYM_METHODS = ("synonym_replacement", "random_insertion")


def eda_defaults(n_train: int) -> tuple[float, int]:
    """The EDA paper's (alpha, n_aug) for a training set of ``n_train`` examples."""
    for limit, alpha, n_aug in EDA_TABLE:
        if n_train <= limit:
            return alpha, n_aug
    return EDA_LARGE


def _touch(words: list[str], alpha: float) -> int:
    return max(1, int(alpha * len(words)))


def _safe(synonyms: Callable[[str], list[str]], word: str) -> list[str]:
    """Synonyms that are not themselves negations (a replacement must not flip the meaning)."""
    return [s for s in synonyms(word) if not is_negation(s) and s.lower() not in {"non", "un"}]


def synonym_replacement(
    words: list[str], alpha: float, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> list[str]:
    """Replace up to alpha*n distinct non-stop, non-negation words by a random synonym."""
    words = list(words)
    candidates = sorted({split_punct(w)[1].lower() for w in words if not is_negation(w)})
    candidates = [c for c in candidates if c and _safe(synonyms, c)]
    rng.shuffle(candidates)
    for target in candidates[: _touch(words, alpha)]:
        choice = rng.choice(_safe(synonyms, target))
        for i, w in enumerate(words):
            pre, core, post = split_punct(w)
            if core.lower() == target:
                words[i] = pre + match_case(choice, core) + post
    return words


def random_insertion(
    words: list[str], alpha: float, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> list[str]:
    """Insert a synonym of a random (non-negation) word at a random position, alpha*n times."""
    words = list(words)
    pool = [split_punct(w)[1].lower() for w in words if not is_negation(w)]
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


def char_noise(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    """One typo in each of max(1, alpha*n) words of 3+ letters (never in a negation)."""
    words = list(words)
    targets = [
        i for i, w in enumerate(words) if not is_negation(w) and sum(ch.isalpha() for ch in w) >= 3
    ]
    for i in rng.sample(targets, min(len(targets), _touch(words, alpha))):
        words[i] = typo(words[i], rng)
    return words
