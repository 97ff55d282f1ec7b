"""``finetune init-data PATH``: look at a new dataset and write its ``conf/data/<name>.yaml``.

:func:`inspect` reads a file, a directory or a glob the way the preprocess stage will (format,
encoding, separator, predefined splits by file name) and guesses the text, label and id
columns from their names and contents; :func:`render` writes a data config that extends the
generic base (``conf/data/base.yaml``). What it could not decide is said, not guessed silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finetune.core.errors import DataError
from finetune.data.label_sets import LIST_SEPARATOR, guess_separator, split_sets
from finetune.data.sources import expand, format_of, read_file, sniff_delimiter, split_of

TEXT_NAMES = ("text", "sentence", "message", "body", "review", "content", "comment", "utterance")
LABEL_NAMES = ("label", "labels", "class", "category", "intent", "target", "sentiment", "topic")
ID_NAMES = ("id", "idx", "uid", "uuid", "message_id", "ticket_id")
MAX_LABEL_SHARE = 0.5  # a label column has at most this share of distinct values ...
MAX_LABEL_CHARS = 100  # ... and short values
SAMPLE_ROWS = 50_000


@dataclass
class Inspection:
    """What init-data found in a source, and what it could not decide."""

    path: str
    files: list[str]
    format: str
    encoding: str
    delimiter: str | None
    columns: list[str]
    rows: int
    splits: dict[str, int]  # rows per predefined split (file names), or {} for one pool
    text_column: str | None
    label_column: str | None
    id_column: str | None
    class_counts: dict[str, int] = field(default_factory=dict)
    task: str = "single_label"  # or multi_label: class_counts are rows per label
    label_separator: str | None = None  # what joins a row's labels (None for JSONL lists)
    task_reason: str = ""
    labels_per_row: float | None = None
    text_words: dict[str, float] = field(default_factory=dict)
    undecided: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # files beside the split files, not used


def _encoding(path: Path) -> str:
    """utf-8 (a BOM is fine) when the whole file decodes so, else latin-1 (decodes any byte)."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _score_text(name: str, values: pd.Series) -> float:
    words = values.dropna().astype(str).str.split().str.len()
    if words.empty:
        return -1.0
    unique = values.nunique(dropna=True) / max(values.notna().sum(), 1)
    numeric = pd.to_numeric(values.dropna(), errors="coerce").notna().mean()
    return float(words.mean() * unique * (1 - numeric) + (5 if name.lower() in TEXT_NAMES else 0))


def _is_label_like(values: pd.Series) -> bool:
    present = values.dropna().astype(str)
    if len(present) < 2:
        return False
    distinct = present.nunique()
    if not 2 <= distinct <= max(2, MAX_LABEL_SHARE * len(present)):
        return False
    separator = guess_separator(present.unique().tolist()).separator
    names = (
        [x for s in split_sets(present.unique(), separator) for x in s] if separator else present
    )
    return max(len(x) for x in names) <= MAX_LABEL_CHARS  # short names (each label of a set)


def _guess(table: pd.DataFrame, undecided: list[str]) -> tuple[str | None, str | None, str | None]:
    columns = list(table.columns)
    lowered = {c.lower(): c for c in columns}
    ids = [lowered[n] for n in ID_NAMES if n in lowered]
    id_column = next((c for c in ids if table[c].dropna().is_unique), None)
    named_labels = [lowered[n] for n in LABEL_NAMES if n in lowered]
    label_candidates = [c for c in named_labels if _is_label_like(table[c])] or [
        c for c in columns if c != id_column and _is_label_like(table[c])
    ]
    label_column = label_candidates[0] if label_candidates else None
    if not label_candidates:
        undecided.append(
            "no column looks like class labels (a few distinct short values): set label_column"
        )
    elif len(label_candidates) > 1 and not named_labels:
        undecided.append(
            f"several columns could hold the labels {label_candidates}: took "
            f"{label_column!r}, check label_column"
        )
    texts = {c: _score_text(c, table[c]) for c in columns if c not in (label_column, id_column)}
    ranked = sorted(texts, key=lambda c: -texts[c])
    text_column = ranked[0] if ranked and texts[ranked[0]] > 0 else None
    if text_column is None:
        undecided.append("no column looks like free text: set text_column")
    elif len(ranked) > 1 and texts[ranked[1]] > 0.5 * texts[ranked[0]]:
        undecided.append(
            f"columns {ranked[:2]} both hold text: took {text_column!r}; to use both, set "
            f"text_column: [{', '.join(ranked[:2])}]"
        )
    return text_column, label_column, id_column


def inspect(path_or_glob: str) -> Inspection:
    """Look at a file, directory or glob (see the module doc)."""
    files = expand(path_or_glob)
    kinds = {format_of(p) for p in files}
    if len(kinds) > 1:
        raise DataError(
            f"{path_or_glob} holds files of several formats {sorted(kinds)}: point init-data "
            "at the files of one format (a glob such as 'dir/*.csv')"
        )
    kind = kinds.pop()
    encoding = _encoding(files[0]) if kind in ("csv", "tsv") else "utf-8"
    delimiter = sniff_delimiter(files[0], encoding) if kind == "csv" else None
    tables = []
    named = {p: split_of(p) for p in files}
    left_out: list[str] = []
    splits_named = [s for s in named.values() if s]
    in_folder = Path(path_or_glob).is_dir() and all(p.parent == Path(path_or_glob) for p in files)
    if (
        in_folder
        and "train" in splits_named
        and not all(named.values())
        and len(splits_named) == len(set(splits_named))  # one file per split
    ):
        # train.csv, test.csv and also oos_test.csv: keep the predefined splits (pooling
        # would lose them, and published figures are for them); the others are named
        left_out = [p.name for p in files if not named[p]]
        files = [p for p in files if named[p]]
    predefined = len(files) > 1 and all(named[p] for p in files) and "train" in named.values()
    for p in files:
        table = read_file(p, kind, encoding, delimiter).to_pandas()
        tables.append(table.assign(__split=named[p] if predefined else None))
    columns = list(tables[0].columns[:-1])
    for p, t in zip(files[1:], tables[1:], strict=True):
        if list(t.columns[:-1]) != columns:
            raise DataError(
                f"{p} has columns {list(t.columns[:-1])} but {files[0]} has {columns}: point "
                "init-data at the data files only (a glob such as 'dir/*.csv')"
            )
    everything = pd.concat(tables, ignore_index=True)
    sample = everything.sample(min(len(everything), SAMPLE_ROWS), random_state=0)
    undecided: list[str] = []
    text_column, label_column, id_column = _guess(sample[columns], undecided)
    words = (
        everything[text_column].dropna().astype(str).str.split().str.len()
        if text_column
        else pd.Series(dtype=float)
    )
    counts = everything[label_column].astype(str).value_counts() if label_column else None
    guess = guess_separator(everything[label_column].dropna().astype(str)) if label_column else None
    multi: dict[str, Any] = {}
    if guess is not None and guess.ambiguous:
        undecided.append(f"{guess.reason} (column {label_column!r})")
    elif guess is not None and guess.separator is not None:
        sets = split_sets(everything[label_column].astype("string").tolist(), guess.separator)
        counts = pd.Series([x for s in sets for x in s], dtype=str).value_counts()
        multi = {
            "task": "multi_label",
            "label_separator": None if guess.separator == LIST_SEPARATOR else guess.separator,
            "task_reason": guess.reason,
            "labels_per_row": round(float(np.mean([len(s) for s in sets])), 3),
        }
        empty = sum(not s for s in sets)
        if empty:
            undecided.append(
                f"{empty} row(s) have no label: kept as rows with an empty label set (remove "
                "them if they are unlabelled rather than labelled with none)"
            )
    elif counts is not None and (counts < 2).any():
        rare = counts[counts < 2].index.tolist()
        undecided.append(
            f"{len(rare)} class(es) have a single example (e.g. {rare[:3]}): preprocess stops "
            "on them; add examples or remove those rows"
        )
    return Inspection(
        path=path_or_glob,
        files=[str(p) for p in files],
        format=kind,
        encoding=encoding,
        delimiter=delimiter if delimiter not in (None, ",") else None,
        columns=columns,
        rows=len(everything),
        splits=(everything["__split"].value_counts().to_dict() if predefined else {}),
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        class_counts={} if counts is None else {str(k): int(v) for k, v in counts.items()},
        text_words=(
            {}
            if words.empty
            else {
                "mean": round(float(words.mean()), 1),
                "p50": float(np.percentile(words, 50)),
                "p95": float(np.percentile(words, 95)),
                "max": int(words.max()),
            }
        ),
        undecided=undecided,
        left_out=left_out,
        **multi,
    )


def dataset_name(path_or_glob: str) -> str:
    """A config name from the path: the directory or file stem, lower case, ``[a-z0-9_]``."""
    path = Path(re.split(r"[*?\[]", path_or_glob)[0] or ".")
    stem = path.name if path.is_dir() or not path.suffix else path.stem
    name = re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_")
    return name or "dataset"


def render(found: Inspection, name: str, path: str) -> str:
    """conf/data/<name>.yaml for ``found`` (``path`` as the config should name it)."""
    import yaml

    values: dict[str, Any] = {"name": name, "path": path}
    if found.encoding != "utf-8":
        values["encoding"] = found.encoding
    if found.delimiter:
        values["delimiter"] = found.delimiter
    values["text_column"] = found.text_column or "CHANGE_ME"
    values["label_column"] = found.label_column or "CHANGE_ME"
    if found.task == "multi_label":
        values["task"] = "multi_label"
        if found.label_separator:
            values["label_separator"] = found.label_separator
    if found.id_column:
        values["id_column"] = found.id_column
    if found.left_out:
        values["split_files"] = {
            split: f"${{..path}}/{Path(f).name}"
            for f in found.files
            if (split := split_of(Path(f))) is not None
        }
    header = [
        f"# {name}: written by `finetune init-data {found.path}`; check it, then edit freely.",
        f"# {found.rows} rows in {len(found.files)} file(s), format {found.format}"
        + (f", predefined splits {found.splits}" if found.splits else ", one pool (split by hash)")
        + ".",
        f"# Columns: {', '.join(found.columns)}.",
    ]
    if found.class_counts:
        top = ", ".join(f"{k} {v}" for k, v in list(found.class_counts.items())[:8])
        more = " ..." if len(found.class_counts) > 8 else ""
        if found.task == "multi_label":
            header.append(
                f"# Multi-label ({found.task_reason}): {len(found.class_counts)} labels, "
                f"{found.labels_per_row} per row; rows per label: {top}{more}."
            )
        else:
            header.append(f"# {len(found.class_counts)} classes: {top}{more}.")
    if found.text_words:
        w = found.text_words
        header.append(
            f"# Words per text: mean {w['mean']}, median {w['p50']:g}, p95 {w['p95']:g}, "
            f"max {w['max']}."
        )
    if found.left_out:
        header.append(
            f"# Left out: {', '.join(found.left_out)} (not named train/validation/test; "
            "split_files keeps the predefined splits). Add a file to split_files to use it."
        )
    header += [f"# UNDECIDED: {x}" for x in found.undecided]
    body = yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    return "\n".join([*header, "defaults:", "  - base", "  - _self_", body.rstrip(), ""])
