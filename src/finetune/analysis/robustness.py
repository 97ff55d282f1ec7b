"""Invariance tests that need no downloads: meaning-preserving edits that must not flip a label."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

import numpy as np
import pandas as pd

from finetune.augment.text import match_case, swap_adjacent
from finetune.core.labels import prob_columns
from finetune.core.schema import RobustnessConfig

CONTRACTIONS = {
    "can't": "cannot",
    "won't": "will not",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "weren't": "were not",
    "haven't": "have not",
    "hasn't": "has not",
    "hadn't": "had not",
    "couldn't": "could not",
    "wouldn't": "would not",
    "shouldn't": "should not",
    "i'm": "i am",
    "i've": "i have",
    "i'd": "i would",
    "i'll": "i will",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "what's": "what is",
    "let's": "let us",
}
EXPANSIONS = {v: k for k, v in CONTRACTIONS.items() if k not in {"let's"}}

# Two lists of first names of the same length: a name in one is swapped for its partner.
NAMES_A = [
    "James", "Mary", "John", "Sarah", "David", "Emma", "Michael", "Anna", "Tom", "Lisa",
    "Peter", "Laura", "Mark", "Kate", "Paul", "Julia", "Daniel", "Sophie", "Chris", "Rachel",
]  # fmt: skip
NAMES_B = [
    "Priya", "Aisha", "Mohammed", "Mei", "Carlos", "Fatima", "Kenji", "Amara", "Dmitri", "Ngozi",
    "Rahul", "Yuki", "Omar", "Ines", "Kwame", "Leila", "Hiroshi", "Zanele", "Mateo", "Svetlana",
]  # fmt: skip
NAME_SWAP = {**dict(zip(NAMES_A, NAMES_B, strict=True)), **dict(zip(NAMES_B, NAMES_A, strict=True))}
NAME_RE = re.compile(r"\b(" + "|".join(sorted(NAME_SWAP, key=len, reverse=True)) + r")\b")
PUNCT = "".join(c for c in string.punctuation if c != "'")


def typos(text: str, rng: random.Random, rate: float = 0.15) -> str:
    """Swap two adjacent inner letters in ~``rate`` of the words longer than 3 letters."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    if not candidates:
        return text
    for i in rng.sample(candidates, max(1, round(rate * len(candidates)))):
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        words[i] = swap_adjacent(w, j)
    return " ".join(words)


def casing(text: str, rng: random.Random) -> str:
    return text.upper()


def punctuation(text: str, rng: random.Random) -> str:
    """Drop punctuation (apostrophes kept, so contractions survive)."""
    stripped = text.translate(str.maketrans("", "", PUNCT))
    return re.sub(r"\s+", " ", stripped).strip()


def contractions(text: str, rng: random.Random) -> str:
    """Expand contractions if the text has any, else contract the expandable phrases."""
    table = CONTRACTIONS
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, table)) + r")\b", re.IGNORECASE)
    if not pattern.search(text.replace("’", "'")):
        table = EXPANSIONS
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, table)) + r")\b", re.IGNORECASE)
    return pattern.sub(
        lambda m: match_case(table[m.group(0).lower()], m.group(0)), text.replace("’", "'")
    )


def person_names(text: str, rng: random.Random) -> str:
    return NAME_RE.sub(lambda m: NAME_SWAP[m.group(0)], text)


PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "typos": typos,
    "casing": casing,
    "punctuation": punctuation,
    "contractions": contractions,
    "person_names": person_names,
}


def perturb(texts: list[str], names: list[str], seed: int = 0) -> dict[str, list[str]]:
    unknown = set(names) - set(PERTURBATIONS)
    if unknown:
        from finetune.core.errors import ConfigError

        raise ConfigError(
            f"error_analysis.robustness.tests: unknown test(s) {sorted(unknown)}; "
            f"choose from {sorted(PERTURBATIONS)}"
        )
    out = {}
    for name in names:
        rng = random.Random(f"{seed}-{name}")
        out[name] = [PERTURBATIONS[name](t, rng) for t in texts]
    return out


def invariance_report(
    predictions: pd.DataFrame,
    perturbed: dict[str, list[str]],
    perturbed_probs: dict[str, np.ndarray],
    labels: list[str],
    examples: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per test: examples changed by the edit, share whose prediction flips, flipped examples."""
    original = predictions["predicted_id"].to_numpy()
    truth = predictions["label_id"].to_numpy()
    texts = predictions["text"].tolist()
    rows, shown = [], []
    for name, new_texts in perturbed.items():
        changed = np.array([a != b for a, b in zip(texts, new_texts, strict=True)])
        new_pred = perturbed_probs[name].argmax(axis=1)
        flipped = changed & (new_pred != original)
        n_changed = int(changed.sum())
        rows.append(
            {
                "test": name,
                "applicable": n_changed,
                "flipped": int(flipped.sum()),
                "flip_rate": float(flipped.sum() / n_changed) if n_changed else None,
                "newly_wrong": int((flipped & (original == truth)).sum()),
                "newly_right": int((flipped & (new_pred == truth)).sum()),
            }
        )
        conf_drop = predictions["confidence"].to_numpy() - perturbed_probs[name].max(axis=1)
        for i in sorted(np.flatnonzero(flipped), key=lambda i: -conf_drop[i])[:examples]:
            shown.append(
                {
                    "test": name,
                    "id": predictions["id"].iloc[i],
                    "label": labels[truth[i]],
                    "original_text": texts[i],
                    "perturbed_text": new_texts[i],
                    "original_prediction": labels[original[i]],
                    "perturbed_prediction": labels[new_pred[i]],
                }
            )
    columns = [
        "test",
        "id",
        "label",
        "original_text",
        "perturbed_text",
        "original_prediction",
        "perturbed_prediction",
    ]
    return pd.DataFrame(rows), pd.DataFrame(shown, columns=columns)


def run_invariance(
    predictions: pd.DataFrame,
    predict: Callable[[list[str]], np.ndarray],
    labels: list[str],
    spec: RobustnessConfig,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Perturb every text (or a seeded sample of ``spec.max_texts``), predict the edited ones in
    one batched call, compare. Each test edits most texts, so on the whole split of long texts
    this was several forward passes over it; flip rates need far fewer texts."""
    if spec.max_texts is not None and len(predictions) > spec.max_texts:
        rows = np.random.default_rng(seed).choice(len(predictions), spec.max_texts, replace=False)
        predictions = predictions.iloc[np.sort(rows)].reset_index(drop=True)
    texts = predictions["text"].tolist()
    perturbed = perturb(texts, list(spec.tests), seed)
    original = predictions[prob_columns(labels)].to_numpy()
    todo = [
        (name, i)
        for name, new in perturbed.items()
        for i, (a, b) in enumerate(zip(texts, new, strict=True))
        if a != b
    ]
    probs = predict([perturbed[name][i] for name, i in todo]) if todo else original[:0]
    by_test = {name: original.copy() for name in perturbed}
    for (name, i), row in zip(todo, probs, strict=True):
        by_test[name][i] = row
    return invariance_report(predictions, perturbed, by_test, labels, spec.examples)
