"""Text cleaning, duplicate/conflict handling and leakage removal, vectorised with Arrow.

Every function works on whole Arrow arrays (pyarrow.compute kernels run in C++ over the column,
no Python loop per row) and returns what it changed as counts, so the data report can say
exactly what happened to the data.
"""

from __future__ import annotations

import html
import logging
import math
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from finetune.core.schema import Cleaning

log = logging.getLogger(__name__)

_WHITESPACE = r"[\s\p{Z}\x{200B}\x{FEFF}]+"
_TAG = r"<!--.*?-->|</?[A-Za-z][^<>]*>"
_NOT_WORD = r"[^\p{L}\p{N}]+"


def build_text(table: pa.Table, columns: tuple[str, ...], separator: str = " ") -> pa.ChunkedArray:
    """One text per row from one or more columns; null parts are skipped."""
    if len(columns) == 1:
        return table.column(columns[0])
    parts = [pc.utf8_trim_whitespace(table.column(c)) for c in columns]
    parts = [pc.if_else(pc.equal(p, ""), pa.scalar(None, pa.string()), p) for p in parts]
    return pc.binary_join_element_wise(*parts, separator, null_handling="skip")


def _changed(before: pa.ChunkedArray, after: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.fill_null(pc.not_equal(before, after), False)).as_py() or 0)


def _unescape_html(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    stripped = pc.replace_substring_regex(texts, _TAG, " ")
    has_entity = pc.fill_null(pc.match_substring(stripped, "&"), False)
    if not pc.any(has_entity).as_py():
        return stripped
    # Entity decoding has no Arrow kernel; only rows with an '&' go through Python.
    values = stripped.to_pylist()
    flags = has_entity.to_pylist()
    return pa.chunked_array(
        [pa.array([html.unescape(v) if f else v for v, f in zip(values, flags, strict=True)])]
    )


def _normalize_unicode(texts: pa.ChunkedArray, form: str) -> pa.ChunkedArray:
    """Unicode normalisation; only non-ASCII rows go through Python's unicodedata.

    (pyarrow's ``utf8_normalize`` is not used: in pyarrow 25 its NFC/NFKC decompose "é" into
    "e" + a combining accent instead of composing it.)
    """
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(texts), True))
    if not pc.any(non_ascii).as_py():
        return texts
    chunks = []
    for chunk in texts.chunks:
        flags = pc.invert(pc.fill_null(pc.string_is_ascii(chunk), True))
        positions = np.flatnonzero(flags.to_numpy(zero_copy_only=False))
        if len(positions) == 0:
            chunks.append(chunk)
            continue
        values = chunk.take(pa.array(positions)).to_pylist()
        fixed = pa.array([unicodedata.normalize(form, v) for v in values], pa.string())
        chunk_list = chunk.to_pylist() if len(positions) * 2 > len(chunk) else None
        if chunk_list is not None:
            for i, v in zip(positions.tolist(), fixed.to_pylist(), strict=True):
                chunk_list[i] = v
            chunks.append(pa.array(chunk_list, pa.string()))
        else:
            index = np.full(len(chunk), -1, dtype=np.int64)
            index[positions] = np.arange(len(positions))
            mask = pa.array(flags)
            replaced = fixed.take(pa.array(np.where(index < 0, 0, index)))
            chunks.append(pc.if_else(mask, replaced, chunk))
    return pa.chunked_array(chunks, pa.string())


def clean_texts(texts: pa.ChunkedArray, spec: Cleaning) -> tuple[pa.ChunkedArray, dict[str, int]]:
    """Apply the configured steps in order; counts = rows each step changed."""
    counts: dict[str, int] = {}
    if spec.unicode:
        out = _normalize_unicode(texts, spec.unicode)
        counts[f"unicode_{spec.unicode.lower()}_changed"] = _changed(texts, out)
        texts = out
    if spec.html:
        out = _unescape_html(texts)
        counts["html_changed"] = _changed(texts, out)
        texts = out
    if spec.whitespace:
        out = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, _WHITESPACE, " "))
        counts["whitespace_changed"] = _changed(texts, out)
        texts = out
    if spec.lowercase:
        out = pc.utf8_lower(texts)
        counts["lowercase_changed"] = _changed(texts, out)
        texts = out
    return texts, counts


def normalized_keys(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """Comparison key: case-folded, punctuation/symbols removed, whitespace collapsed.

    "Refund, please!" and "refund please" share a key; the stored text is never changed.
    """
    lowered = pc.utf8_lower(texts)
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(lowered, _NOT_WORD, " "))


def codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense int codes (hash-based dictionary encoding in Arrow): equal values, equal codes."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        # Chunks have separate dictionaries: unify them first.
        encoded = encoded.unify_dictionaries()
        return np.concatenate(
            [c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks]
        ).astype(np.int64)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a * (int(b.max(initial=0)) + 1) + b


def column_texts(values: Iterable[Any]) -> list[str]:
    """Cells of a text column (a Series or any iterable): None/NaN -> "", everything else as
    str, whitespace stripped."""
    out = []
    for value in list(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append("")
        else:
            out.append(str(value).strip())
    return out


@dataclass
class DedupResult:
    keep: np.ndarray  # sorted row positions to keep
    counts: dict[str, int]
    conflict_rows: np.ndarray  # positions of every row in a conflicting group (for the report)
    units: np.ndarray  # per row, a code shared by the rows that are "the same text" in a group


def deduplicate(
    text_codes: np.ndarray,
    key_codes: np.ndarray,
    label_codes: np.ndarray,
    group_codes: np.ndarray,
    mode: str,
    conflicts: str,
) -> DedupResult:
    """Duplicates and conflicting labels within each group (a split, or the whole pool).

    ``mode``: ``exact`` compares cleaned texts, ``normalized`` the keys of :func:`normalized_keys`
    (and still counts the exact ones separately), ``none`` keeps every row (conflicts are still
    reported and handled). ``conflicts``: a text seen with more than one label is kept once per
    label (``keep``), dropped altogether (``drop``) or kept with its most frequent label
    (``majority``; a tie goes to the label seen first) or kept once, at its first row
    (``union``: the caller merges the label sets of multi-label rows into that row).
    """
    n = len(text_codes)
    positions = np.arange(n)
    compare = key_codes if mode == "normalized" else text_codes
    unit = _pair(group_codes, compare)  # "the same text" within one group
    item = _pair(unit, label_codes)  # "the same text with the same label"
    counts = {
        "exact_duplicates": 0,
        "normalized_duplicates": 0,
        "conflicting_texts": 0,
        "conflicting_rows": 0,
        "conflict_rows_dropped": 0,
    }
    # Conflicts: units with more than one distinct label.
    uniq_items, first_item, item_sizes = np.unique(item, return_index=True, return_counts=True)
    item_unit = unit[first_item]
    units, labels_per_unit = np.unique(item_unit, return_counts=True)
    conflicting_units = units[labels_per_unit > 1]
    in_conflict = np.isin(unit, conflicting_units)
    counts["conflicting_texts"] = len(conflicting_units)
    counts["conflicting_rows"] = int(in_conflict.sum())
    if mode == "none":
        keep_mask = np.ones(n, dtype=bool)
    else:
        keep_mask = np.zeros(n, dtype=bool)
        keep_mask[first_item] = True  # first row of each (text, label)
        exact_unique = len(np.unique(_pair(_pair(group_codes, text_codes), label_codes)))
        counts["exact_duplicates"] = n - exact_unique
        if mode == "normalized":
            counts["normalized_duplicates"] = exact_unique - len(uniq_items)
    if len(conflicting_units):
        conflicted_items = np.isin(item_unit, conflicting_units)
        if conflicts == "drop":
            drop = in_conflict
        elif conflicts == "majority":
            # Per unit: the item with most rows, ties to the earliest first occurrence.
            cand = np.flatnonzero(conflicted_items)
            order = np.lexsort((first_item[cand], -item_sizes[cand], item_unit[cand]))
            ordered = cand[order]
            winners = ordered[np.r_[True, item_unit[ordered][1:] != item_unit[ordered][:-1]]]
            winner_items = uniq_items[winners]
            drop = in_conflict & ~np.isin(item, winner_items)
        elif conflicts == "union":
            _, first_of_unit = np.unique(unit, return_index=True)
            drop = in_conflict.copy()
            drop[first_of_unit] = False
        else:
            drop = np.zeros(n, dtype=bool)
        counts["conflict_rows_dropped"] = int((keep_mask & drop).sum())
        keep_mask &= ~drop
    return DedupResult(positions[keep_mask], counts, positions[in_conflict], unit)


def leaking_rows(key_codes: np.ndarray, split_codes: np.ndarray, order: list[int]) -> np.ndarray:
    """Boolean mask of rows whose key already occurs in a split earlier in ``order``.

    ``order`` lists split codes by priority (train first): a text in train and test is removed
    from test; a text in validation and test is removed from validation when test comes first.
    """
    drop = np.zeros(len(key_codes), dtype=bool)
    seen = np.array([], dtype=key_codes.dtype)
    for code in order:
        rows = split_codes == code
        drop |= rows & np.isin(key_codes, seen)
        seen = np.union1d(seen, key_codes[rows & ~drop])
    return drop
