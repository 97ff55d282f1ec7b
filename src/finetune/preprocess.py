"""preprocess: raw table -> validated, cleaned, stratified train/validation/test splits."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from finetune.errors import DataError
from finetune.io import StagedOutputs, write_json, write_parquet
from finetune.splits import LABEL_MAP, SPLITS

log = logging.getLogger(__name__)


FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class DataSpec:
    path: str
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    extra_columns: tuple[str, ...] = ()
    format: str = "auto"
    validation_size: float = 0.1
    test_size: float = 0.15
    min_examples_per_class: int = 2

    @classmethod
    def from_config(cls, data: Any) -> DataSpec:
        return cls(
            path=str(data["path"]),
            text_column=str(data["text_column"]),
            label_column=str(data["label_column"]),
            id_column=data.get("id_column"),
            extra_columns=tuple(data.get("extra_columns") or ()),
            format=str(data.get("format", "auto")),
            validation_size=float(data["split"]["validation"]),
            test_size=float(data["split"]["test"]),
            min_examples_per_class=int(data.get("min_examples_per_class", 2)),
        )


@dataclass
class Preprocessed:
    splits: dict[str, pd.DataFrame]
    labels: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def _row_list(rows: pd.Index | list[int], limit: int = 10) -> str:
    rows = [int(r) + 1 for r in list(rows)[:limit]]  # 1-based data rows (header excluded)
    return ", ".join(map(str, rows)) + (" ..." if len(rows) == limit else "")


def read_table(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or Parquet file, all columns as strings where they are text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"raw data file {path} does not exist: put your data there or set data.path "
            f"(in conf/data/, then `make params`) to a CSV, TSV, JSONL or Parquet file"
        )
    kind = FORMATS.get(path.suffix.lower()) if fmt == "auto" else fmt
    if kind is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"use .csv, .tsv, .jsonl or .parquet, or set data.format"
        )
    try:
        if kind in {"csv", "tsv"}:
            df = pd.read_csv(
                path,
                sep="\t" if kind == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8",
            )
        elif kind == "jsonl":
            df = pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        elif kind == "parquet":
            df = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unknown data.format {kind!r} (csv, tsv, jsonl or parquet)")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: bytes at offset {exc.start} are not valid UTF-8; re-save the file as UTF-8"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty: it has no header and no rows") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as {kind}: {exc}") from exc
    log.info("read %d rows, columns %s from %s", len(df), list(df.columns), path)
    return df


def validate(df: pd.DataFrame, spec: DataSpec) -> None:
    """Raise DataError naming the file, column and rows when the table cannot be used."""
    wanted = [spec.text_column, spec.label_column, *spec.extra_columns]
    if spec.id_column:
        wanted.append(spec.id_column)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(
            f"{spec.path}: missing column(s) {missing}; the file has {list(df.columns)}. "
            f"Rename the columns or set data.text_column / data.label_column / data.id_column / "
            f"data.extra_columns in conf/data/"
        )
    if df.empty:
        raise DataError(f"{spec.path} has a header but no rows: add labelled examples")
    null_labels = df.index[df[spec.label_column].isna()]
    if len(null_labels):
        raise DataError(
            f"{spec.path}: column {spec.label_column!r} is empty in {len(null_labels)} row(s) "
            f"(data rows {_row_list(null_labels)}); label them or remove them"
        )
    if spec.id_column:
        dup_ids = df.index[df[spec.id_column].duplicated(keep="first")]
        if len(dup_ids):
            raise DataError(
                f"{spec.path}: column {spec.id_column!r} has duplicate ids in data rows "
                f"{_row_list(dup_ids)}; ids must be unique (or set data.id_column: null)"
            )


def normalise_whitespace(texts: pd.Series) -> pd.Series:
    return texts.fillna("").astype(str).map(lambda t: _WS.sub(" ", t).strip())


def clean(df: pd.DataFrame, spec: DataSpec) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalise whitespace, drop empty texts and exact duplicates. Returns counts too."""
    out = pd.DataFrame(
        {
            "id": df[spec.id_column].astype(str)
            if spec.id_column
            else [f"row-{i + 1}" for i in range(len(df))],
            "text": normalise_whitespace(df[spec.text_column]),
            "label": df[spec.label_column].astype(str).str.strip(),
        }
    )
    for col in spec.extra_columns:
        out[col] = df[col]
    counts = {"rows_read": len(out)}
    empty = out["text"] == ""
    if empty.any():
        log.warning(
            "%s: dropping %d row(s) with empty text (data rows %s)",
            spec.path,
            int(empty.sum()),
            _row_list(out.index[empty]),
        )
    out = out[~empty]
    counts["empty_texts_dropped"] = int(empty.sum())
    conflicts = out.groupby("text")["label"].nunique()
    counts["conflicting_label_texts"] = int((conflicts > 1).sum())
    if counts["conflicting_label_texts"]:
        log.warning(
            "%s: %d text(s) occur with different labels; the first occurrence is kept",
            spec.path,
            counts["conflicting_label_texts"],
        )
    dup = out["text"].duplicated(keep="first")
    out = out[~dup].reset_index(drop=True)
    counts["duplicates_dropped"] = int(dup.sum())
    counts["rows_kept"] = len(out)
    return out, counts


def check_classes(df: pd.DataFrame, spec: DataSpec) -> list[str]:
    """Sorted label list; raise when stratified splitting is impossible."""
    sizes = df["label"].value_counts()
    if df.empty:
        raise DataError(f"{spec.path}: no rows left after cleaning (all texts empty?)")
    if len(sizes) < 2:
        raise DataError(
            f"{spec.path}: only one class ({sizes.index[0]!r}) in column {spec.label_column!r}; "
            f"a classifier needs at least two labels"
        )
    # Each class needs a member in every split after two stratified cuts.
    needed = max(spec.min_examples_per_class, 3)
    small = sizes[sizes < needed]
    if len(small):
        small_counts = {str(k): int(v) for k, v in small.items()}
        raise DataError(
            f"{spec.path}: class(es) {small_counts} have fewer than {needed} examples, too few to "
            f"stratify into train/validation/test; add examples or remove the class"
        )
    return sorted(sizes.index.tolist())


def split(df: pd.DataFrame, spec: DataSpec, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified train/validation/test split, reproducible for a seed."""
    held_out = spec.validation_size + spec.test_size
    if not 0 < spec.validation_size < 1 or not 0 < spec.test_size < 1 or held_out >= 1:
        raise DataError(
            f"data.split validation={spec.validation_size} test={spec.test_size}: each must be "
            f"between 0 and 1 and together below 1"
        )
    try:
        train, rest = train_test_split(
            df, test_size=held_out, stratify=df["label"], random_state=seed
        )
        validation, test = train_test_split(
            rest, test_size=spec.test_size / held_out, stratify=rest["label"], random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"{spec.path}: cannot make a stratified split ({exc}); add examples to the smallest "
            f"classes or change data.split"
        ) from exc
    return {
        name: part.sort_index().reset_index(drop=True)
        for name, part in zip(SPLITS, (train, validation, test), strict=True)
    }


def preprocess(raw: pd.DataFrame, spec: DataSpec, seed: int) -> Preprocessed:
    """Pure pipeline step: validated raw table in, splits + labels + report out."""
    validate(raw, spec)
    cleaned, counts = clean(raw, spec)
    labels = check_classes(cleaned, spec)
    label2id = {label: i for i, label in enumerate(labels)}
    splits = split(cleaned, spec, seed)
    for part in splits.values():
        part.insert(3, "label_id", part["label"].map(label2id).astype("int64"))
    report = {
        **counts,
        "num_classes": len(labels),
        "rows": {name: len(part) for name, part in splits.items()},
        "class_counts": {
            name: {label: int((part["label"] == label).sum()) for label in labels}
            for name, part in splits.items()
        },
    }
    return Preprocessed(splits=splits, labels=labels, report=report)


def run(cfg: Any) -> Preprocessed:
    """Stage entry: read data.path, write paths.processed_dir and paths.preprocess_report."""
    spec = DataSpec.from_config(cfg["data"])
    result = preprocess(read_table(spec.path, spec.format), spec, int(cfg["seed"]))
    with StagedOutputs() as out:
        processed = out.dir(cfg["paths"]["processed_dir"])
        for name, part in result.splits.items():
            write_parquet(processed / f"{name}.parquet", part)
        write_json(processed / LABEL_MAP, {"labels": result.labels})
        write_json(out.file(cfg["paths"]["preprocess_report"]), result.report)
    log.info(
        "preprocess: %d rows kept of %d; %s; %d classes",
        result.report["rows_kept"],
        result.report["rows_read"],
        result.report["rows"],
        len(result.labels),
    )
    return result
