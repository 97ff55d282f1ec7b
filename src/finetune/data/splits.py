"""Splitting: the source's own splits kept, missing ones carved by hash or by stratified cuts."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.model_selection import train_test_split

from finetune.core.artifacts import SPLITS
from finetune.core.errors import DataError
from finetune.core.schema import SplitShares


def _stratified(
    positions: np.ndarray, label_codes: np.ndarray, size: float, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    try:
        keep, cut = train_test_split(
            positions, test_size=size, stratify=label_codes[positions], random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"{where}: cannot make a stratified split ({exc}); add examples to the smallest "
            f"classes or change data.split"
        ) from exc
    return np.sort(keep), np.sort(cut)


def hash_fractions(keys: list[str], seed: int) -> np.ndarray:
    """A stable number in [0, 1) per text key: the same text and seed always give the same
    number, whatever else is in the data (so adding rows never moves existing ones)."""
    prefix = f"{seed}\x00".encode()
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(prefix + k.encode(), digest_size=8).digest(), "big")
            for k in keys
        ],
        dtype=np.float64,
    ) / float(1 << 64)


def split_positions(
    label_codes: np.ndarray,
    split_names: list[str | None],
    shares: SplitShares,
    seed: int,
    where: str,
    fractions: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Row positions per split: predefined splits kept, missing ones carved from train.

    ``stratified`` cuts are seeded and keep class shares, but adding rows reshuffles them.
    ``hash`` puts a row in test when its text's ``fractions`` value is below the test share,
    in validation below test + validation, else in train: a text keeps its split as data grows
    (what scheduled retraining needs for a fair comparison on the test split).
    """
    val, test = shares.validation, shares.test  # each in (0, 1), together < 1 (the schema)
    hashed = shares.method == "hash"
    if hashed and (fractions is None or len(fractions) != len(label_codes)):
        raise ValueError("split method 'hash' needs one fraction per row")
    names = np.array([s if s is not None else "" for s in split_names], dtype=object)
    if not any(split_names):  # one pool: two cuts
        if hashed:
            u = fractions
            return {
                "train": np.flatnonzero(u >= test + val),
                "validation": np.flatnonzero((u >= test) & (u < test + val)),
                "test": np.flatnonzero(u < test),
            }
        train, rest = _stratified(np.arange(len(label_codes)), label_codes, val + test, seed, where)
        validation, test_rows = _stratified(rest, label_codes, test / (val + test), seed, where)
        return {"train": train, "validation": validation, "test": test_rows}
    parts = {s: np.flatnonzero(names == s) for s in SPLITS if (names == s).any()}
    if hashed:  # carve the missing splits from train by disjoint hash intervals
        pool, u = parts["train"], fractions[parts["train"]]
        low = 0.0
        for s, share in (("test", test), ("validation", val)):
            if s not in parts:
                parts[s] = pool[(u >= low) & (u < low + share)]
                low += share
        parts["train"] = pool[u >= low]
        return {s: parts[s] for s in SPLITS}
    if "test" not in parts:
        parts["train"], parts["test"] = _stratified(parts["train"], label_codes, test, seed, where)
    if "validation" not in parts:
        parts["train"], parts["validation"] = _stratified(
            parts["train"], label_codes, val, seed, where
        )
    return {s: parts[s] for s in SPLITS}
