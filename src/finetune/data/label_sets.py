"""Multi-label columns: which separator joins a row's labels, and the label sets it holds.

A multi-label file holds a set of labels per row, either as delimited text (``earn|acq``,
``billing; refunds``) or, in JSONL and Parquet, as a list. :func:`guess_separator` decides from
the values alone whether a text column holds sets and which separator joins them, and says why;
:func:`split_sets` turns the values into sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

# A JSONL/Parquet list column reaches preprocess as text: each item followed by this character
# (finetune.data.sources), so ["a"] reads "a␟" and [] reads "␟".
LIST_SEPARATOR = "\u241f"  # ␟, SYMBOL FOR UNIT SEPARATOR: not whitespace, so trimming keeps it
# Tried in this order. "|" and ";" rarely occur inside a label name; "," often does
# ("Billing, refunds"), so it counts only when every part of every joined value is a label
# that also occurs alone.
SEPARATORS = ("|", ";", ",")


class SeparatorGuess(NamedTuple):
    separator: str | None  # None: the values are single labels (or it cannot be told)
    reason: str
    ambiguous: bool = False  # more than one separator could join labels


def _parts(value: str, separator: str) -> list[str]:
    return [p.strip() for p in value.split(separator) if p.strip()]


def guess_separator(values: Iterable[str | None]) -> SeparatorGuess:
    """The separator that joins several labels in a value, decided from the values.

    A separator counts when some values hold it and splitting them makes the label vocabulary
    smaller (the parts recur as labels of their own or in other sets): ``a|b``, ``a``, ``b|c``
    are three labels, not three classes. ``,`` counts only when every part of every joined
    value also occurs as a value alone. Two separators that both count: ambiguous, None (set
    data.label_separator).
    """
    values = [v for v in values if v is not None]
    if any(LIST_SEPARATOR in v for v in values):
        return SeparatorGuess(LIST_SEPARATOR, "the label column holds lists")
    distinct = {v.strip() for v in values if v.strip()}
    found: list[tuple[str, str]] = []
    for sep in SEPARATORS:
        joined = [v for v in distinct if sep in v]
        if not joined:
            continue
        vocabulary = {p for v in distinct for p in _parts(v, sep)}
        if len(vocabulary) >= len(distinct):
            continue  # every joined value is a name of its own: the separator is part of names
        alone = {v for v in distinct if sep not in v}
        parts = {p for v in joined for p in _parts(v, sep)}
        if sep == "," and not parts <= alone:
            continue
        found.append(
            (
                sep,
                f"{len(joined)} of {len(distinct)} distinct values hold {sep!r}; split on it "
                f"they are {len(vocabulary)} labels, not {len(distinct)} classes",
            )
        )
    if not found:
        return SeparatorGuess(None, "no value joins labels with '|', ';' or ','")
    if len(found) > 1:
        names = " and ".join(repr(s) for s, _ in found)
        return SeparatorGuess(
            None, f"both {names} could join labels; set data.label_separator to say which", True
        )
    return SeparatorGuess(*found[0])


def split_sets(values: Iterable[str | None], separator: str) -> list[tuple[str, ...]]:
    """Each value's label set (parts trimmed, empty parts and repeats dropped, first-seen order);
    a null or empty value is the empty set (a row with no label)."""
    out: list[tuple[str, ...]] = []
    for v in values:
        if v is None:
            out.append(())
            continue
        out.append(tuple(dict.fromkeys(_parts(str(v), separator))))
    return out


def as_list(value: object) -> object:
    """A list column's value read as text ("a␟b␟") as the list it was; anything else as is."""
    if isinstance(value, str) and LIST_SEPARATOR in value:
        return [p for p in value.split(LIST_SEPARATOR) if p]
    return value


def canonical(labels: Sequence[str], order: dict[str, int]) -> str:
    """A set as one text: its labels in vocabulary order joined by "|" ("" for no label)."""
    return "|".join(sorted(labels, key=order.__getitem__))
