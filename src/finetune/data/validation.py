"""Validation of a raw source: every check names the file, the rows and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finetune.core.errors import DataError
from finetune.data import cleaning
from finetune.data.label_sets import LIST_SEPARATOR, guess_separator, split_sets
from finetune.data.sources import FILE_COL, ROW_COL, RawData, as_raw

if TYPE_CHECKING:
    from finetune.core.schema import DataConfig


def _where(raw: RawData, mask: np.ndarray, limit: int = 10) -> str:
    """'f.csv data rows 2, 5; g.csv data rows 1' for the first ``limit`` rows in ``mask``."""
    positions = np.flatnonzero(mask)[:limit]
    files = raw.table.column(FILE_COL).take(positions).to_pylist()
    rows = raw.table.column(ROW_COL).take(positions).to_pylist()
    by_file: dict[int, list[int]] = {}
    for f, r in zip(files, rows, strict=True):
        by_file.setdefault(f, []).append(r)
    more = " ..." if int(mask.sum()) > limit else ""
    parts = [
        f"{raw.files[f]} data row{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}"
        for f, rs in by_file.items()
    ]
    return "; ".join(parts) + more


def _mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _source_name(raw: RawData) -> str:
    return raw.files[0] if len(raw.files) == 1 else f"{raw.files[0]} (+{len(raw.files) - 1} files)"


_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
MAX_NUMERIC_LABELS = 50  # more distinct non-integral numbers than this: a regression target


def _numeric(values: pa.ChunkedArray) -> np.ndarray:
    return _mask(pc.match_substring_regex(values, _NUMBER))


def label_values(raw: RawData, spec: DataConfig) -> pa.ChunkedArray:
    """The label column as class names: trimmed, a dataset's ClassLabel ids mapped to their
    names, and integral numbers written as integers (a float column's 1.0 is class "1")."""
    labels = pc.utf8_trim_whitespace(raw.table.column(spec.label_column))
    class_label = raw.notes.get("class_label")
    if class_label and class_label["column"] == spec.label_column:
        as_int = pc.cast(labels, pa.int64())
        names = class_label["names"]
        outside = _mask(pc.or_(pc.less(as_int, 0), pc.greater_equal(as_int, len(names))))
        if outside.any():
            raise DataError(
                f"column {spec.label_column!r} holds label ids outside the dataset's classes "
                f"0..{len(names) - 1} {names} in {int(outside.sum())} row(s) "
                f"({_where(raw, outside)}); -1 means unlabelled (as in GLUE test splits). "
                "Filter those rows out of the dataset, or map only labelled splits in "
                "data.hf.splits"
            )
        return pc.take(pa.array(names), as_int)
    present = pc.drop_null(labels)
    if len(present) and _numeric(present).all():
        numbers = pc.cast(labels, pa.float64())
        if _mask(pc.equal(numbers, pc.floor(numbers))).sum() == len(present):
            return pc.cast(pc.cast(numbers, pa.int64()), pa.string())
    return labels


class LabelTask(NamedTuple):
    task: str  # single_label | multi_label
    separator: str | None  # what joins a row's labels (multi_label)
    reason: str  # why: for the log and the data report


def label_task(raw: RawData, spec: DataConfig) -> LabelTask:
    """Single- or multi-label, and the separator, from data.task / data.label_separator, or
    (task: auto) from the label column's values (:func:`guess_separator`)."""
    if spec.task == "single_label":
        return LabelTask("single_label", None, "data.task: single_label")
    if spec.label_separator is not None:
        return LabelTask(
            "multi_label", spec.label_separator, f"data.label_separator: {spec.label_separator!r}"
        )
    values = label_values(raw, spec).to_pylist()
    guess = guess_separator(values)
    if guess.ambiguous:
        raise DataError(
            f"column {spec.label_column!r}: {guess.reason} (e.g. "
            f"{[v for v in values if v and ('|' in v or ';' in v or ',' in v)][:3]})"
        )
    if guess.separator is not None:
        return LabelTask("multi_label", guess.separator, guess.reason)
    if spec.task == "multi_label":
        return LabelTask("multi_label", "|", f"data.task: multi_label; {guess.reason}")
    return LabelTask("single_label", None, f"data.task: auto; {guess.reason}")


def label_sets(raw: RawData, spec: DataConfig, task: LabelTask) -> list[tuple[str, ...]]:
    """Each row's label set (multi_label), checked against data.labels when that is given."""
    sets = split_sets(label_values(raw, spec).to_pylist(), task.separator or LIST_SEPARATOR)
    if spec.label_set:
        allowed = set(spec.label_set)
        outside = np.array([any(x not in allowed for x in s) for s in sets], dtype=bool)
        if outside.any():
            found = sorted({x for s in sets for x in s if x not in allowed})
            raise DataError(
                f"column {spec.label_column!r} has label(s) {found[:10]} outside data.labels "
                f"{list(spec.label_set)} in {int(outside.sum())} row(s) ({_where(raw, outside)}); "
                f"fix those rows or add the label(s) to data.labels"
            )
    return sets


def check_values(raw: RawData, spec: DataConfig) -> None:
    """A label column of continuous numbers, or a text column that is mostly numbers, is a
    wrong column choice: say which rows show it and what to set."""
    labels = pc.utf8_trim_whitespace(raw.table.column(spec.label_column))
    present = pc.drop_null(labels)
    if len(present) and _numeric(present).all():
        numbers = pc.cast(present, pa.float64())
        fractional = ~_mask(pc.equal(numbers, pc.floor(numbers)))
        distinct = len(pc.unique(numbers))
        if fractional.any() and distinct > MAX_NUMERIC_LABELS:
            rows = _mask(
                pc.invert(
                    pc.equal(pc.cast(labels, pa.float64()), pc.floor(pc.cast(labels, pa.float64())))
                )
            )
            raise DataError(
                f"column {spec.label_column!r} holds {distinct} distinct non-integer numbers "
                f"(e.g. {_where(raw, rows, 3)}): that is a regression target, not classes. "
                "Bin it into classes in the data, or set data.label_column to the column "
                "holding the classes"
            )
    for column in spec.text_columns:
        texts = pc.utf8_trim_whitespace(raw.table.column(column))
        filled = _mask(pc.invert(pc.is_null(texts)))
        numeric = _numeric(pc.fill_null(texts, "")) & filled
        if filled.sum() and numeric.sum() > 0.5 * filled.sum():
            raise DataError(
                f"column {column!r} is mostly numbers ({numeric.sum() / filled.sum():.0%} of "
                f"its rows, e.g. {_where(raw, numeric, 3)}): it does not look like the texts. "
                f"Set data.text_column to the column that holds them (the file has "
                f"{raw.columns})"
            )


def validate(raw: RawData | pd.DataFrame, spec: DataConfig) -> None:
    """Raise DataError naming the file, column and rows when the table cannot be used."""
    raw = raw if isinstance(raw, RawData) else as_raw(raw, spec.path or "<table>")
    name = _source_name(raw)
    wanted = [*spec.text_columns, spec.label_column, *spec.extra_columns]
    if spec.id_column:
        wanted.append(spec.id_column)
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataError(
            f"{name}: missing column(s) {missing}; the file has {raw.columns}. "
            f"Rename the columns or set data.text_column / data.label_column / data.id_column / "
            f"data.extra_columns in conf/data/"
        )
    if raw.table.num_rows == 0:
        raise DataError(f"{name} has a header but no rows: add labelled examples")
    check_values(raw, spec)
    task = label_task(raw, spec)
    if task.task == "multi_label":
        label_sets(raw, spec, task)  # an empty set is a row with no label: allowed
        _check_ids(raw, spec)
        return
    labels = label_values(raw, spec)
    null_labels = _mask(
        pc.or_kleene(pc.is_null(labels), pc.equal(pc.utf8_trim_whitespace(labels), ""))
    )
    if null_labels.any():
        raise DataError(
            f"column {spec.label_column!r} is empty in {int(null_labels.sum())} row(s) "
            f"({_where(raw, null_labels)}); label them or remove them"
        )
    if spec.label_set:
        outside = ~_mask(pc.is_in(pc.utf8_trim_whitespace(labels), pa.array(spec.label_set)))
        if outside.any():
            found = sorted(
                set(pc.utf8_trim_whitespace(labels).filter(pa.array(outside)).to_pylist())
            )
            raise DataError(
                f"column {spec.label_column!r} has label(s) {found[:10]} outside data.labels "
                f"{list(spec.label_set)} in {int(outside.sum())} row(s) ({_where(raw, outside)}); "
                f"fix those rows or add the label(s) to data.labels"
            )
    _check_ids(raw, spec)


def _check_ids(raw: RawData, spec: DataConfig) -> None:
    if spec.id_column:
        ids = raw.table.column(spec.id_column)
        null_ids = _mask(pc.is_null(ids))
        if null_ids.any():
            raise DataError(
                f"column {spec.id_column!r} is empty in {int(null_ids.sum())} row(s) "
                f"({_where(raw, null_ids)}); fill in the ids or set data.id_column: null"
            )
        id_codes = cleaning.codes(ids)
        dup = np.ones(len(id_codes), dtype=bool)
        dup[np.unique(id_codes, return_index=True)[1]] = False
        if dup.any():
            raise DataError(
                f"column {spec.id_column!r} has duplicate ids in {_where(raw, dup)}; ids must be "
                f"unique (or set data.id_column: null to number the rows)"
            )


def check_classes(sizes: Mapping[str, int], spec: DataConfig, where: str, needed: int) -> None:
    """Raise when the classes cannot be split/stratified."""
    if not sizes:
        raise DataError(f"{where}: no rows left after cleaning (all texts empty or duplicates?)")
    if len(sizes) < 2:
        only = next(iter(sizes))
        raise DataError(
            f"{where}: only one class ({only!r}) in column {spec.label_column!r}; "
            f"a classifier needs at least two labels"
        )
    small = {k: int(v) for k, v in sizes.items() if v < needed}
    if small:
        raise DataError(
            f"{where}: class(es) {small} have fewer than {needed} examples, too few to "
            f"stratify into train/validation/test; add examples, remove the class, or lower "
            f"data.min_examples_per_class / use predefined splits"
        )
