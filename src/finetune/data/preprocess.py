"""preprocess: raw data -> validated, cleaned, de-duplicated, leak-free train/validation/test.

Reads a source (:mod:`finetune.data.sources`: CSV/TSV/JSONL/Parquet files, a directory, a glob, or a
Hugging Face dataset), validates it with errors that name the file, the rows and the fix,
cleans the texts (:mod:`finetune.data.cleaning`), removes duplicates, resolves conflicting labels,
splits (the source's own splits where it has them, else a seeded stratified split), removes
evaluation texts that also occur in an earlier split, and writes the data report
(:mod:`finetune.data.report`). The table stays in Arrow until the splits are written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finetune.core.artifacts import LABEL_MAP, SPLITS
from finetune.core.errors import DataError
from finetune.core.io import StagedOutputs, write_json
from finetune.core.schema import DataConfig, PathsConfig, PipelineConfig
from finetune.core.validate import parse
from finetune.data import cleaning
from finetune.data import report as data_report
from finetune.data.label_sets import canonical
from finetune.data.sources import (
    FILE_COL,
    ROW_COL,
    SPLIT_COL,
    RawData,
    as_raw,
)
from finetune.data.splits import hash_fractions, split_positions
from finetune.data.validation import (
    _mask,
    _source_name,
    _where,
    check_classes,
    label_sets,
    label_task,
    label_values,
    validate,
)

log = logging.getLogger(__name__)

# Priority when a text occurs in several splits: it stays in the first and leaves the others.
# leave_train keeps the evaluation splits whole (a source's own test split stays comparable with
# published figures); leave_evaluation keeps train whole.
LEAKAGE_ORDER = {
    "leave_train": ("test", "validation", "train"),
    "leave_evaluation": ("train", "test", "validation"),
}


@dataclass
class Preprocessed:
    splits: dict[str, pd.DataFrame]
    labels: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    task: str = "single_label"  # or multi_label: splits hold label_ids (a list per row)


def label_order(present: list[str], spec: DataConfig) -> list[str]:
    if spec.label_set:
        return list(spec.label_set)
    try:
        return sorted(present, key=int)  # integer labels: 2 before 10
    except ValueError:
        return sorted(present)


def _ids(raw: RawData, spec: DataConfig) -> pa.ChunkedArray:
    if spec.id_column:
        return raw.table.column(spec.id_column)
    rows = pc.cast(raw.table.column(ROW_COL), pa.string())
    if len(raw.files) == 1:
        return pc.binary_join_element_wise("row", rows, "-")
    tags = [Path(f.split("[")[-1].rstrip("]")).stem for f in raw.files]
    file_tags = pc.take(pa.array(tags), raw.table.column(FILE_COL))
    return pc.binary_join_element_wise(file_tags, rows, "-")


def _unseen_labels(
    parts: dict[str, np.ndarray],
    label_ids: np.ndarray,
    label_list: list[Any],
    spec: DataConfig,
    name: str,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Validation/test rows whose label never occurs in train: an error, or dropped (counted)."""
    train_ids = np.unique(label_ids[parts["train"]])
    dropped: dict[str, int] = {}
    for s in ("validation", "test"):
        if len(parts[s]) == 0:
            raise DataError(f"{name}: the {s} split is empty after cleaning; add examples")
        seen = np.isin(label_ids[parts[s]], train_ids)
        if seen.all():
            continue
        unseen = sorted({str(label_list[i]) for i in label_ids[parts[s]][~seen]})
        if spec.unseen_labels == "error":
            raise DataError(
                f"{name}: label(s) {unseen} occur in the {s} split but not in train: the model "
                f"could never predict them; add training examples, remove those rows, or set "
                f"data.unseen_labels: drop"
            )
        dropped[s] = int((~seen).sum())
        log.warning(
            "%s: %d %s row(s) have label(s) that train never has, dropped (data.unseen_labels: "
            "drop; %s figures leave them out): %s",
            name,
            dropped[s],
            s,
            s,
            unseen[:20],
        )
        parts[s] = parts[s][seen]
        if len(parts[s]) == 0:
            raise DataError(f"{name}: no {s} row has a label that train has; check the splits")
    return parts, dropped


def _train_classes(
    label_list: list[Any], label_ids: np.ndarray, train_rows: np.ndarray
) -> tuple[list[Any], np.ndarray]:
    """Keep the classes train holds (in their order) and renumber the ids."""
    kept = np.unique(label_ids[train_rows])
    new_id = np.full(len(label_list), -1, dtype=np.int64)
    new_id[kept] = np.arange(len(kept))
    return [label_list[i] for i in kept], new_id[label_ids]


def _merged_sets(
    sets: list[tuple[str, ...]], rows: np.ndarray, units: np.ndarray
) -> list[tuple[str, ...]]:
    """``sets`` with each of ``rows`` holding the union of the sets of the rows that share its
    unit (data.cleaning.conflicts: union; deduplication keeps one row of each unit)."""
    merged: dict[int, set[str]] = {}
    for row, unit in zip(rows.tolist(), units.tolist(), strict=True):
        merged.setdefault(unit, set()).update(sets[row])
    out = list(sets)
    for row, unit in zip(rows.tolist(), units.tolist(), strict=True):
        out[row] = tuple(merged[unit])
    return out


def preprocess(raw: RawData | pd.DataFrame, spec: DataConfig, seed: int) -> Preprocessed:
    """Pure pipeline step: raw source in, splits + labels + report out."""
    raw = raw if isinstance(raw, RawData) else as_raw(raw, spec.path or "<table>")
    validate(raw, spec)
    name = _source_name(raw)
    table = raw.table
    n_read = table.num_rows
    texts = cleaning.build_text(table, spec.text_columns, spec.text_separator)
    texts, step_counts = cleaning.clean_texts(texts, spec.cleaning)
    task = label_task(raw, spec)
    multi = task.task == "multi_label"
    if multi:  # a set per row, written as one text in vocabulary order: "acq|earn", "" for none
        log.info("%s: multi-label (%s)", name, task.reason)
        sets = label_sets(raw, spec, task)
        vocabulary = label_order(sorted({x for s in sets for x in s}), spec)
        position = {x: i for i, x in enumerate(vocabulary)}
        labels = pa.chunked_array([pa.array([canonical(s, position) for s in sets], pa.string())])
    else:
        if spec.cleaning.conflicts == "union":
            raise DataError(
                f"{name}: data.cleaning.conflicts=union merges the label sets of a text seen with "
                f"different labels, but this data has one label per row ({task.reason}); use "
                "majority, keep or drop, or set data.task: multi_label for label sets"
            )
        labels = label_values(raw, spec)

    empty = _mask(pc.or_kleene(pc.is_null(texts), pc.equal(texts, "")))
    if empty.any():
        message = (
            f"{'/'.join(spec.text_columns)} is empty in {int(empty.sum())} row(s) "
            f"({_where(raw, empty)})"
        )
        if spec.cleaning.empty_text == "error":
            raise DataError(
                f"{message}; fill in or remove those rows, or set data.cleaning.empty_text: drop"
            )
        log.warning("%s; dropping them (data.cleaning.empty_text: drop)", message)
    keep = np.flatnonzero(~empty)
    texts = pc.fill_null(texts, "")

    split_col = table.column(SPLIT_COL)
    text_codes = cleaning.codes(texts)
    hashed, normalized = spec.split.method == "hash", spec.cleaning.dedup == "normalized"
    keys = cleaning.normalized_keys(texts) if hashed or normalized else None
    key_codes = cleaning.codes(keys) if normalized else text_codes
    label_codes_all = cleaning.codes(labels)
    group_codes = cleaning.codes(pc.fill_null(split_col, ""))
    dedup = cleaning.deduplicate(
        text_codes[keep],
        key_codes[keep],
        label_codes_all[keep],
        group_codes[keep],
        spec.cleaning.dedup,
        spec.cleaning.conflicts,
    )
    conflict_positions = keep[dedup.conflict_rows]
    if dedup.counts["conflicting_texts"]:
        log.warning(
            "%s: %d text(s) occur with different labels (%d rows); data.cleaning.conflicts=%s",
            name,
            dedup.counts["conflicting_texts"],
            dedup.counts["conflicting_rows"],
            spec.cleaning.conflicts,
        )
    if multi and spec.cleaning.conflicts == "union":
        sets = _merged_sets(sets, keep[dedup.conflict_rows], dedup.units[dedup.conflict_rows])
    keep = keep[dedup.keep]

    # Labels and class checks on what is left.
    kept_labels = labels.take(pa.array(keep)).to_pylist()
    split_names = split_col.take(pa.array(keep)).to_pylist()
    present = sorted(set(kept_labels))
    if multi:
        kept_sets = [tuple(sorted(sets[i], key=position.__getitem__)) for i in keep]
        label_list = [x for x in vocabulary if any(x in s for s in kept_sets)]
        label_ids = multi_label_strata(kept_sets, label_list, max(spec.min_examples_per_class, 3))
    else:
        label_list = label_order(present, spec)
        label2id = {label: i for i, label in enumerate(label_list)}
        label_ids = np.array([label2id[x] for x in kept_labels], dtype=np.int64)
    needed = max(spec.min_examples_per_class, 3)
    if multi:
        if len(label_list) < 2:
            raise DataError(
                f"{name}: the label sets hold {len(label_list)} label(s) {label_list}; a "
                f"classifier needs at least two"
            )
    elif raw.predefined_splits:
        train_mask = np.array([s == "train" for s in split_names])
        sizes = pd.Series(np.array(kept_labels, dtype=object)[train_mask]).value_counts()
        carve = sum(s not in set(split_names) for s in ("validation", "test"))
        needed = max(spec.min_examples_per_class, 1 + carve) if carve else 1
        check_classes(sizes.to_dict(), spec, f"{name} (train split)", needed)
    else:
        sizes = pd.Series(kept_labels, dtype=object).value_counts()
        check_classes(sizes.to_dict(), spec, name, needed)
    # hash: by the normalised text, so duplicates share a split
    fractions = hash_fractions(keys.take(pa.array(keep)).to_pylist(), seed) if hashed else None
    parts = split_positions(label_ids, split_names, spec.split, seed, name, fractions)

    # Leakage: a text (normalised key) in an earlier split leaves the later evaluation split.
    split_code = np.full(len(keep), -1)
    for code, s in enumerate(SPLITS):
        split_code[parts[s]] = code
    drop = cleaning.leaking_rows(
        key_codes[keep], split_code, [SPLITS.index(s) for s in LEAKAGE_ORDER[spec.leakage]]
    )
    leakage = {s: int(drop[parts[s]].sum()) for s in SPLITS}
    if any(leakage.values()):
        log.warning(
            "texts in more than one split removed (data.leakage=%s): %s", spec.leakage, leakage
        )
    parts = {s: p[~drop[p]] for s, p in parts.items()}

    if multi:
        label_list, kept_sets, unseen_dropped = _unseen_set_labels(
            parts, kept_sets, label_list, spec, name
        )
        labels = pa.chunked_array([pa.array(["|".join(s) for s in kept_sets], pa.string())])
        keep_index = np.arange(len(keep))  # labels now follow the kept rows
    else:
        parts, unseen_dropped = _unseen_labels(parts, label_ids, label_list, spec, name)
        if unseen_dropped and spec.labels is None:  # the classes are what train holds
            label_list, label_ids = _train_classes(label_list, label_ids, parts["train"])

    ids = _ids(raw, spec)
    splits: dict[str, pd.DataFrame] = {}
    for s in SPLITS:
        rows = pa.array(keep[parts[s]])
        columns = {"id": ids.take(rows), "text": texts.take(rows)}
        if multi:
            position = {x: i for i, x in enumerate(label_list)}
            columns["label"] = labels.take(pa.array(keep_index[parts[s]]))
            columns["label_ids"] = pa.array(
                [[position[x] for x in kept_sets[i]] for i in parts[s]], pa.list_(pa.int64())
            )
        else:
            columns["label"] = labels.take(rows)
            columns["label_id"] = pa.array(label_ids[parts[s]], pa.int64())
        for col in spec.extra_columns:
            columns[col] = table.column(col).take(rows)
        splits[s] = pa.table(columns).to_pandas()

    conflicts = _conflict_examples(
        texts, label_values(raw, spec) if multi else labels, conflict_positions
    )
    counts = {
        "rows_read": n_read,
        "files": len(raw.files),
        "predefined_splits": raw.predefined_splits,
        "cleaning": step_counts,
        "empty_texts_dropped": int(empty.sum()),
        "exact_duplicates_dropped": dedup.counts["exact_duplicates"],
        "normalized_duplicates_dropped": dedup.counts["normalized_duplicates"],
        "conflicting_label_texts": dedup.counts["conflicting_texts"],
        "conflicting_label_rows": dedup.counts["conflicting_rows"],
        "conflict_rows_dropped": dedup.counts["conflict_rows_dropped"],
        "leakage_removed": leakage,
        "unseen_label_rows_dropped": unseen_dropped,
        "rows_kept": int(sum(len(p) for p in parts.values())),
    }
    report = {
        **counts,
        "task": task.task,
        "task_reason": task.reason,
        "num_classes": len(label_list),
        "rows": {s: len(splits[s]) for s in SPLITS},
        "class_counts": {s: _class_counts(splits[s], label_list) for s in SPLITS},
    }
    if multi:
        report["label_separator"] = task.separator
        report["rows_without_label"] = {
            s: int((splits[s]["label_ids"].map(len) == 0).sum()) for s in SPLITS
        }
        report["labels_per_row"] = {
            s: round(float(splits[s]["label_ids"].map(len).mean()), 4) for s in SPLITS
        }
        report["labels_missing"] = {
            s: [x for x in label_list if report["class_counts"][s][x] == 0] for s in SPLITS
        }
        for s, missing in report["labels_missing"].items():
            if missing and s != "train":
                log.warning(
                    "%s: %d label(s) have no %s row (their %s figures are undefined): %s",
                    name,
                    len(missing),
                    s,
                    s,
                    missing[:20],
                )
    return Preprocessed(
        splits=splits, labels=label_list, report=report, conflicts=conflicts, task=task.task
    )


def _class_counts(df: pd.DataFrame, labels: list[str]) -> dict[str, int]:
    """Rows per label: a multi-label row counts once for each of its labels."""
    if "label_ids" in df.columns:
        counts = np.bincount(
            np.concatenate([np.asarray(x, dtype=np.int64) for x in df["label_ids"]] or [[]]).astype(
                np.int64
            ),
            minlength=len(labels),
        )
        return {label: int(counts[i]) for i, label in enumerate(labels)}
    return {label: int((df["label"] == label).sum()) for label in labels}


def multi_label_strata(sets: list[tuple[str, ...]], labels: list[str], needed: int) -> np.ndarray:
    """One stratum per row for the stratified split of multi-label data: the row's rarest
    label (so the rare labels spread over the splits); rows with no label, and labels with fewer
    than ``needed`` rows, share one stratum."""
    counts: dict[str, int] = {}
    for s in sets:
        for x in s:
            counts[x] = counts.get(x, 0) + 1
    position = {x: i for i, x in enumerate(labels)}
    rest = len(labels)
    out = np.full(len(sets), rest, dtype=np.int64)
    for row, s in enumerate(sets):
        common = [x for x in s if counts[x] >= needed]
        if common:
            out[row] = position[min(common, key=lambda x: (counts[x], position[x]))]
    return out


def _unseen_set_labels(
    parts: dict[str, np.ndarray],
    sets: list[tuple[str, ...]],
    labels: list[str],
    spec: DataConfig,
    name: str,
) -> tuple[list[str], list[tuple[str, ...]], dict[str, int]]:
    """Multi-label: a label that no train row has cannot be learnt: an error, or it leaves the
    vocabulary and every set (the rows stay, with their other labels)."""
    for s in ("validation", "test"):
        if len(parts[s]) == 0:
            raise DataError(f"{name}: the {s} split is empty after cleaning; add examples")
    in_train = {x for i in parts["train"] for x in sets[i]}
    unseen = [x for x in labels if x not in in_train]
    if not unseen:
        return labels, sets, {}
    if spec.unseen_labels == "error":
        raise DataError(
            f"{name}: label(s) {unseen[:20]} occur in the validation/test sets but in no train "
            f"row: the model could never predict them; add training examples, or set "
            f"data.unseen_labels: drop"
        )
    gone = set(unseen)
    dropped = {
        s: int(sum(any(x in gone for x in sets[i]) for i in parts[s]))
        for s in ("validation", "test")
    }
    log.warning(
        "%s: label(s) %s occur in no train row; they leave the label sets of %s row(s) "
        "(data.unseen_labels: drop)",
        name,
        unseen[:20],
        dropped,
    )
    kept = [x for x in labels if x not in gone]
    return kept, [tuple(x for x in s if x not in gone) for s in sets], dropped


def _conflict_examples(
    texts: pa.ChunkedArray, labels: pa.ChunkedArray, positions: np.ndarray, limit: int = 20
) -> list[dict[str, Any]]:
    if len(positions) == 0:
        return []
    frame = pd.DataFrame(
        {
            "text": texts.take(pa.array(positions)).to_pylist(),
            "label": labels.take(pa.array(positions)).to_pylist(),
        }
    )
    grouped = frame.groupby("text", sort=False)["label"].value_counts()
    out: list[dict[str, Any]] = []
    for text in frame["text"].drop_duplicates().head(limit):
        out.append({"text": text, "labels": {k: int(v) for k, v in grouped[text].items()}})
    return out


def write_outputs(result: Preprocessed, paths: PathsConfig, out: StagedOutputs) -> None:
    import pyarrow.parquet as pq

    processed = out.dir(paths.processed_dir)
    for name, part in result.splits.items():
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), processed / f"{name}.parquet"
        )
    write_json(processed / LABEL_MAP, {"labels": result.labels, "task": result.task})


def run(cfg: PipelineConfig | Mapping[str, Any]) -> Preprocessed:
    """Stage entry: read the source, write paths.processed_dir and the data report."""
    from finetune.data import sources
    from finetune.modeling.tokens import load_tokenizer

    cfg = parse(cfg)
    raw = sources.load(cfg.data)
    result = preprocess(raw, cfg.data, cfg.seed)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    report = data_report.build(
        result, tokenizer, cfg.model.max_length, cfg.data.report.token_sample, cfg.seed
    )
    paths = cfg.paths
    with StagedOutputs() as out:
        write_outputs(result, paths, out)
        data_report.write(report, result, paths, out)
    result.report = report
    log.info(
        "preprocess: %d rows kept of %d; %s; %d classes",
        report["rows_kept"],
        report["rows_read"],
        report["rows"],
        len(result.labels),
    )
    return result
