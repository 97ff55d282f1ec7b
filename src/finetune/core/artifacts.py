"""Readers for the preprocess stage's outputs, shared by the later stages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from finetune.core.errors import DataError
from finetune.core.io import read_json

SPLITS = ("train", "validation", "test")
LABEL_MAP = "label_map.json"


def load_split(processed_dir: str | Path, name: str) -> pd.DataFrame:
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}: choose one of {SPLITS}")
    path = Path(processed_dir) / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path} is missing: run `dvc repro preprocess` first")
    return pd.read_parquet(path)


def load_labels(processed_dir: str | Path) -> list[str]:
    path = Path(processed_dir) / LABEL_MAP
    if not path.is_file():
        raise DataError(f"{path} is missing: run `dvc repro preprocess` first")
    return list(read_json(path)["labels"])


def load_task(processed_dir: str | Path) -> str:
    """single_label or multi_label: what preprocess found (a label map from before multi-label
    support is single-label)."""
    path = Path(processed_dir) / LABEL_MAP
    if not path.is_file():
        raise DataError(f"{path} is missing: run `dvc repro preprocess` first")
    return str(read_json(path).get("task", "single_label"))
