"""Raw data sources for preprocess: local files (one, a directory or a glob) or a HF dataset.

Everything is read into Arrow tables with every column as a string, plus three bookkeeping
columns the validation messages use: ``__split`` (a predefined split name, or null when the
source has no splits), ``__file`` (index into :attr:`RawData.files`) and ``__row`` (1-based
data row in that file, header excluded, or the example index in a dataset split).
"""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finetune.core.errors import DataError
from finetune.core.schema import DataConfig
from finetune.data.label_sets import LIST_SEPARATOR

log = logging.getLogger(__name__)

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
SPLIT_COL, FILE_COL, ROW_COL = "__split", "__file", "__row"
_SPLIT_STEM = re.compile(r"^([a-z]+)(?:[-_.].*)?$")


@dataclass
class RawData:
    """All rows of a source in one Arrow table (string columns + bookkeeping columns)."""

    table: pa.Table
    files: list[str]
    predefined_splits: bool
    label_names: list[str] | None = None  # from a dataset's ClassLabel feature
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.table.column_names if c not in (SPLIT_COL, FILE_COL, ROW_COL)]


def format_of(path: Path, fmt: str = "auto", setting: str = "data.format") -> str:
    """csv, tsv, jsonl or parquet: ``fmt``, or from the extension when ``fmt`` is auto;
    ``setting`` is what the error tells the user to set."""
    kind = FORMATS.get(path.suffix.lower()) if fmt == "auto" else fmt
    if kind is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"use .csv, .tsv, .jsonl or .parquet, or set {setting}"
        )
    if kind not in {"csv", "tsv", "jsonl", "parquet"}:
        raise DataError(f"{path}: unknown {setting} {kind!r} (csv, tsv, jsonl or parquet)")
    return kind


def expand(path_or_glob: str, fmt: str = "auto", setting: str = "data.path") -> list[Path]:
    """A file, every data file under a directory (recursively), or every glob match; sorted.
    ``setting`` is what the errors tell the user to change (preprocess: data.path)."""
    if glob.has_magic(path_or_glob):
        found = sorted(Path(p) for p in glob.glob(path_or_glob, recursive=True))  # noqa: PTH207
        files = [p for p in found if p.is_file()]
        if not files:
            raise DataError(
                f"{setting} glob {path_or_glob!r} matches no files: check the pattern "
                f"(relative to {'the project root' if setting == 'data.path' else 'the cwd'}) "
                f"or set {setting} to a file or directory"
            )
        return files
    path = Path(path_or_glob)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FORMATS
        )
        if fmt != "auto":
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(
                f"directory {path} holds no .csv, .tsv, .jsonl or .parquet files: put the data "
                f"there or set {setting} to a file or glob"
            )
        return files
    if not path.is_file():
        raw = setting == "data.path"
        where = " (in conf/data/, then `make params`)" if raw else ""
        raise DataError(
            f"{'raw data' if raw else 'input'} file {path} does not exist: put your data there "
            f"or set {setting}{where} "
            f"to a CSV, TSV, JSONL or Parquet file, a directory or a glob"
        )
    return [path]


def split_of(path: Path) -> str | None:
    """``train.csv``, ``dev.tsv``, ``test-00000-of-00001.parquet`` -> train/validation/test."""
    match = _SPLIT_STEM.match(path.name.lower())
    return SPLIT_ALIASES.get(match.group(1)) if match else None


def _invalid_utf8_lines(path: Path, encoding: str, limit: int = 5) -> list[int]:
    bad: list[int] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                bad.append(number)
                if len(bad) >= limit:
                    break
    return bad


def _undecodable(path: Path, encoding: str) -> DataError:
    lines = _invalid_utf8_lines(path, encoding)
    where = f"lines {', '.join(map(str, lines))}" if lines else "somewhere in the file"
    return DataError(
        f"{path}: bytes that are not valid {encoding} at {where} (line numbers count the header "
        f"as line 1); re-save the file as UTF-8 or set data.encoding (e.g. latin-1)"
    )


def _joined_lists(name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A list column (a JSONL/Parquet column of label lists) as text: items joined by
    :data:`LIST_SEPARATOR`, one after each item, so ``["a"]`` and ``[]`` still read as lists."""
    try:
        items = pc.cast(column, pa.list_(pa.string()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"column {name!r} holds lists of {column.type.value_type}, which cannot be read as "
            f"labels; write each row's labels as a list of names"
        ) from exc
    marked = pc.list_value_length(items)
    joined = pc.binary_join_element_wise(
        pc.binary_join(items, LIST_SEPARATOR), pa.scalar(""), LIST_SEPARATOR
    )
    return pc.if_else(pc.is_null(marked), pa.scalar(LIST_SEPARATOR), joined)


def _all_strings(table: pa.Table) -> pa.Table:
    """Every column as a string column (ints/floats/bools keep their text form)."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(column.type):
            columns.append(column)
        elif (
            pa.types.is_large_string(column.type)
            or pa.types.is_string_view(column.type)
            or pa.types.is_dictionary(column.type)
        ):
            columns.append(column.cast(pa.string()))
        elif pa.types.is_null(column.type):
            columns.append(pa.nulls(len(table), pa.string()))
        elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            columns.append(_joined_lists(name, column))
        else:
            try:
                columns.append(pc.cast(column, pa.string()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(
                    f"column {name!r} has type {column.type}, which cannot be read as text "
                    f"or a label; drop it or pick other columns"
                ) from exc
    return pa.table(columns, names=table.column_names)


DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(path: Path, encoding: str = "utf-8") -> str:
    """The field separator of a CSV: the one of , ; tab | that the header line holds most of
    (outside quotes); a comma when it holds none."""
    with path.open("rb") as fh:
        head = fh.readline(1 << 16)
    try:
        line = head.decode(encoding, errors="replace")
    except LookupError as exc:
        raise DataError(f"data.encoding={encoding!r} is not an encoding Python knows") from exc
    outside = "".join(part for i, part in enumerate(line.split('"')) if i % 2 == 0)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _duplicate_columns(path: Path, names: list[str]) -> None:
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        seen.setdefault(name, []).append(position)
    twice = {name: where for name, where in seen.items() if len(where) > 1}
    if twice:
        listed = "; ".join(f"{n!r} (columns {', '.join(map(str, w))})" for n, w in twice.items())
        raise DataError(
            f"{path}: the header names a column more than once: {listed}; rename them so "
            "every column name is unique"
        )


def read_file(
    path: str | Path, fmt: str = "auto", encoding: str = "utf-8", delimiter: str | None = None
) -> pa.Table:
    """One CSV, TSV, JSONL or Parquet file as an Arrow table of strings (empty field = null).

    CSV: a UTF-8 byte-order mark, Windows line endings and quoted newlines are read as they
    should be; the separator is ``delimiter`` or, when None, found from the header."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    path = Path(path)
    kind = format_of(path, fmt)
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: it has no header and no rows")
    try:
        if kind in {"csv", "tsv"}:
            if delimiter is None:
                delimiter = "\t" if kind == "tsv" else sniff_delimiter(path, encoding)
            read = pacsv.ReadOptions(encoding=encoding, block_size=1 << 24)
            parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
            with pacsv.open_csv(path, read_options=read, parse_options=parse) as reader:
                names = reader.schema.names
            _duplicate_columns(path, names)
            convert = pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
            )
            table = pacsv.read_csv(path, read, parse, convert)
        elif kind == "jsonl":
            if encoding.lower().replace("-", "") != "utf8":
                raise DataError(f"{path}: JSONL must be UTF-8 (data.encoding={encoding!r})")
            table = pajson.read_json(
                path, parse_options=pajson.ParseOptions(newlines_in_values=False)
            )
        else:
            table = pq.read_table(path)
    except UnicodeDecodeError as exc:
        raise _undecodable(path, encoding) from exc
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "UTF8" in message or "UTF-8" in message or "utf8" in message:
            raise _undecodable(path, encoding) from exc
        if re.search(r"changed from (array to \w+|\w+ to array)", message):
            raise DataError(
                f"{path}: {message.splitlines()[0]}: a column mixes lists and single values; "
                f'write every row\'s labels as a list (["a"] for one label, [] for none)'
            ) from exc
        if "Empty CSV file" in message:
            raise DataError(f"{path} is empty: it has no header and no rows") from exc
        raise DataError(f"{path}: cannot parse as {kind}: {message.splitlines()[0]}") from exc
    _duplicate_columns(path, table.column_names)
    table = _all_strings(table)
    if kind == "parquet" or kind == "jsonl":
        # Parquet/JSON strings were never checked by a decoder: check them now.
        for name, column in zip(table.column_names, table.columns, strict=True):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid as exc:
                raise DataError(
                    f"{path}: column {name!r} holds bytes that are not valid UTF-8; "
                    f"re-encode it as UTF-8"
                ) from exc
    log.info("read %d rows, columns %s from %s", table.num_rows, table.column_names, path)
    return table


def _with_bookkeeping(table: pa.Table, split: str | None, file_index: int) -> pa.Table:
    n = table.num_rows
    return (
        table.append_column(SPLIT_COL, pa.array([split] * n, pa.string()))
        .append_column(FILE_COL, pa.array([file_index] * n, pa.int32()))
        .append_column(ROW_COL, pa.array(range(1, n + 1), pa.int64()))
    )


def _concat(tables: list[pa.Table], files: list[str]) -> pa.Table:
    names = tables[0].column_names
    for table, name in zip(tables[1:], files[1:], strict=True):
        if set(table.column_names) != set(names):
            raise DataError(
                f"{name} has columns {sorted(c for c in table.column_names if c[:2] != '__')}"
                f" but {files[0]} has {sorted(c for c in names if c[:2] != '__')}: "
                "every file of one source must have the same columns. If it is not part of "
                "the data, point data.path at the data files only (a glob such as "
                "'dir/*.csv', or data.split_files: {train: ..., test: ...}), or move it away"
            )
    return pa.concat_tables([t.select(names) for t in tables])


def where(spec: DataConfig) -> str:
    """The source in words, for messages."""
    return f"dataset {spec.hf.name!r}" if spec.source == "hf" else str(spec.path)


def load_files(spec: DataConfig) -> RawData:
    if spec.split_files:
        groups: dict[str | None, list[Path]] = {}
        for name, target in spec.split_files.items():
            split = SPLIT_ALIASES.get(str(name).lower())
            if split is None:
                raise DataError(
                    f"data.split_files: unknown split {name!r}; use train, validation and test"
                )
            groups[split] = expand(str(target), spec.format)
    else:
        if spec.path is None:
            raise DataError("data.path is not set: point it at a file, a directory or a glob")
        files = expand(spec.path, spec.format)
        by_split = {p: split_of(p) for p in files}
        named = [p for p, s in by_split.items() if s]
        if named and "train" in by_split.values() and len(named) < len(files):
            others = [str(p) for p in files if not by_split[p]]
            raise DataError(
                f"{where(spec)}: {len(named)} file(s) are named as splits "
                f"({', '.join(sorted(p.name for p in named))}) and {len(others)} are not "
                f"({', '.join(others[:5])}): pooling them all would lose the predefined splits. "
                "Set data.split_files ({train: ..., validation: ..., test: ...}; `finetune "
                "init-data` writes it), or move the other files out of data.path"
            )
        if len(files) > 1 and len(named) == len(files) and "train" in by_split.values():
            groups = {}
            for p, s in by_split.items():
                groups.setdefault(s, []).append(p)
            log.info(
                "predefined splits from file names: %s", {k: len(v) for k, v in groups.items()}
            )
        else:
            groups = {None: files}
    tables, names = [], []
    for split, paths in groups.items():
        for p in paths:
            table = read_file(p, spec.format, spec.encoding, spec.delimiter)
            tables.append(_with_bookkeeping(table, split, len(names)))
            names.append(str(p))
    predefined = None not in groups
    if predefined and "train" not in groups:
        raise DataError(f"{where(spec)}: predefined splits {sorted(groups)} have no train split")
    return RawData(_concat(tables, names), names, predefined_splits=predefined)


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _unlabelled(ds: Any, label_column: str, datasets: Any) -> bool:
    """A split whose ClassLabel column is -1 in every row: the dataset's "no label" value."""
    feature = ds.features.get(label_column)
    if not isinstance(feature, datasets.ClassLabel) or ds.num_rows == 0:
        return False
    column = ds.with_format("arrow")[label_column]  # through its indices, if any
    return bool(pc.all(pc.equal(column, -1)).as_py())


def load_hf(spec: DataConfig) -> RawData:
    """A Hugging Face dataset: a Hub id (online, or the local cache with HF_HUB_OFFLINE=1), a
    local dataset directory (data files, as in a dataset repository) or a directory written by
    ``save_to_disk``.

    A split found by name whose ClassLabel column is -1 in every row (unlabelled, as in GLUE's
    test splits) is skipped with a warning; one named in data.hf.splits, or the train split, is
    an error. Rows labelled -1 in a labelled split are an error in validation (naming them)."""
    import datasets

    if not spec.hf.name:
        raise DataError("data.source=hf needs data.hf.name (a Hub id or a local directory)")
    name = spec.hf.name
    try:
        if Path(name).is_dir() and _is_saved_dataset(Path(name)):
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(
                name, spec.hf.config, revision=spec.hf.revision, cache_dir=spec.hf.cache_dir
            )
    except Exception as exc:  # datasets raises many types: all mean "cannot load it"
        import os

        offline = any(
            os.environ.get(v, "0").lower() in {"1", "true", "yes"}
            for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        )
        hint = (
            "HF_HUB_OFFLINE is set, so only the local cache is searched: load it once online, "
            "or point data.hf.name at a local dataset directory"
            if offline
            else "check the dataset id, data.hf.config and your network, or point data.hf.name "
            "at a local dataset directory"
        )
        raise DataError(f"cannot load Hugging Face dataset {name!r}: {hint}. ({exc})") from exc
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    wanted = dict(spec.hf.splits) if spec.hf.splits else {}
    if not wanted:
        for ds_split in loaded:
            ours = SPLIT_ALIASES.get(str(ds_split).lower())
            if ours and ours not in wanted:
                wanted[ours] = str(ds_split)
    missing = [s for s in wanted.values() if s not in loaded]
    if missing or "train" not in wanted:
        raise DataError(
            f"dataset {name!r} has splits {list(loaded)}; cannot find {missing or ['train']}: "
            f"set data.hf.splits, e.g. {{train: train, test: test}}"
        )
    tables, files, label_names = [], [], None
    for ours, theirs in list(wanted.items()):
        ds = loaded[theirs]
        for feature_name, feature in ds.features.items():
            if isinstance(feature, datasets.ClassLabel) and label_names is None:
                label_names = (feature_name, list(feature.names))
        if _unlabelled(ds, spec.label_column, datasets):
            if spec.hf.splits or ours == "train":
                raise DataError(
                    f"dataset {name!r} split {theirs!r} is unlabelled: column "
                    f"{spec.label_column!r} is -1 in all {ds.num_rows} rows (as in GLUE test "
                    "splits). Map only labelled splits in data.hf.splits, e.g. "
                    "{train: train, validation: validation}"
                )
            log.warning(
                "dataset %r split %r is unlabelled (%r is -1 in every row, as in GLUE test "
                "splits): skipping it; the missing split is carved from train",
                name,
                theirs,
                spec.label_column,
            )
            del wanted[ours]
            continue
        table = ds.with_format("arrow")[:]
        table = _all_strings(pa.table(table))
        tables.append(_with_bookkeeping(table, ours, len(files)))
        files.append(f"{name}[{theirs}]")
    table = _concat(tables, files)
    raw = RawData(table, files, predefined_splits=True)
    if label_names:
        raw.notes["class_label"] = {"column": label_names[0], "names": label_names[1]}
    return raw


def load(spec: DataConfig) -> RawData:
    return load_hf(spec) if spec.source == "hf" else load_files(spec)


def read_table(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """One file as a DataFrame of strings (kept for callers that want pandas)."""
    return read_file(expand(str(path), fmt)[0], fmt).to_pandas()


def as_raw(df: pd.DataFrame | pa.Table, path: str = "<table>") -> RawData:
    """Wrap an in-memory table as a one-file source without predefined splits."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    return RawData(_with_bookkeeping(_all_strings(table), None, 0), [path], False)
