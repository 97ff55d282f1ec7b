"""preprocess: reading each format, validation errors with file/row/fix, cleaning, splitting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finetune import preprocess
from finetune.errors import DataError
from finetune.preprocess import DataSpec, clean, read_table, split, validate


def spec_for(path: Path | str, **kw: Any) -> DataSpec:
    return DataSpec(path=str(path), id_column="id", **kw)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_read_table_each_format(tmp_path: Path, tiny_data: pd.DataFrame, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        tiny_data.to_csv(path, index=False)
    elif fmt == "tsv":
        tiny_data.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        tiny_data.to_json(path, orient="records", lines=True)
    else:
        tiny_data.to_parquet(path)
    df = read_table(path)
    assert list(df.columns) == list(tiny_data.columns)
    assert df["text"].tolist() == tiny_data["text"].tolist()


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv does not exist.*set data\.path"):
        read_table(tmp_path / "nope.csv")


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match=r"x\.txt: cannot tell the format"):
        read_table(tmp_path / "x.txt")


def test_undecodable_bytes_name_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\nhello \xff\xfe world,a\n")
    with pytest.raises(DataError, match=r"bad\.csv: bytes at offset \d+ are not valid UTF-8"):
        read_table(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_table(path)


def test_missing_column_lists_available(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": ["1"], "body": ["x"], "label": ["a"]})
    with pytest.raises(DataError, match=r"f\.csv: missing column\(s\) \['text'\]; the file has"):
        validate(df, spec_for(tmp_path / "f.csv"))


def test_missing_label_column(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": ["1"], "text": ["x"], "category": ["a"]})
    with pytest.raises(DataError, match=r"missing column\(s\) \['label'\].*data\.label_column"):
        validate(df, spec_for(tmp_path / "f.csv"))


def test_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header_only.csv"
    path.write_text("id,text,label\n")
    with pytest.raises(DataError, match=r"header_only\.csv has a header but no rows"):
        validate(read_table(path), spec_for(path))


def test_null_labels_name_rows(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": ["1", "2", "3"], "text": ["a", "b", "c"], "label": ["x", None, None]})
    with pytest.raises(DataError, match=r"'label' is empty in 2 row\(s\) \(data rows 2, 3\)"):
        validate(df, spec_for(tmp_path / "f.csv"))


def test_duplicate_ids(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": ["1", "1"], "text": ["a", "b"], "label": ["x", "y"]})
    with pytest.raises(DataError, match=r"duplicate ids in data rows 2"):
        validate(df, spec_for(tmp_path / "f.csv"))


def test_single_class(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": list("abcd"), "text": list("wxyz"), "label": ["only"] * 4})
    with pytest.raises(DataError, match=r"only one class \('only'\).*at least two labels"):
        preprocess.preprocess(df, spec_for(tmp_path / "f.csv"), seed=0)


def test_class_too_small_to_stratify(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    df = pd.concat(
        [
            tiny_data,
            pd.DataFrame({"id": ["r1"], "text": ["rare"], "label": ["rare"], "channel": [""]}),
        ]
    )
    with pytest.raises(DataError, match=r"\{'rare': 1\} have fewer than 3 examples"):
        preprocess.preprocess(df, spec_for(tmp_path / "f.csv"), seed=0)


def test_clean_normalises_whitespace_drops_empty_and_duplicates(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4", "5"],
            "text": ["  my  card\twas\ncharged ", "my card was charged", "   ", None, "other"],
            "label": ["billing", "billing", "billing", "billing", "shipping"],
        }
    )
    out, counts = clean(df, spec_for(tmp_path / "f.csv"))
    assert out["text"].tolist() == ["my card was charged", "other"]
    assert out["id"].tolist() == ["1", "5"]
    assert counts == {
        "rows_read": 5,
        "empty_texts_dropped": 2,
        "conflicting_label_texts": 0,
        "duplicates_dropped": 1,
        "rows_kept": 2,
    }


def test_split_is_stratified_disjoint_and_seeded(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    spec = spec_for(tmp_path / "f.csv", validation_size=0.2, test_size=0.2)
    parts = split(tiny_data, spec, seed=3)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [36, 12, 12]
    for part in parts.values():
        assert part["label"].value_counts().min() == part["label"].value_counts().max()
    ids = [set(p["id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = split(tiny_data, spec, seed=3)
    assert all(parts[s].equals(again[s]) for s in parts)
    assert not split(tiny_data, spec, seed=4)["test"]["id"].equals(parts["test"]["id"])


def test_bad_split_sizes(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="together below 1"):
        split(tiny_data, spec_for(tmp_path / "f.csv", validation_size=0.5, test_size=0.5), 0)


def test_run_writes_splits_label_map_and_report(stage_cfg: dict[str, Any]) -> None:
    result = preprocess.run(stage_cfg)
    processed = Path(stage_cfg["paths"]["processed_dir"])
    assert sorted(p.name for p in processed.iterdir()) == [
        "label_map.json",
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    train = pd.read_parquet(processed / "train.parquet")
    assert list(train.columns) == ["id", "text", "label", "label_id", "channel"]
    assert result.labels == ["account", "billing", "shipping"]
    assert train["label_id"].tolist() == [result.labels.index(x) for x in train["label"]]
    report = pd.read_json(stage_cfg["paths"]["preprocess_report"], typ="series")
    assert report["rows_kept"] == 60 and report["num_classes"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("id,body,label,channel\n1,hi,a,c\n", r"missing column\(s\) \['text'\]"),
        ("id,text,channel\n1,hi,x\n", r"missing column\(s\) \['label'\]"),
        ("id,text,label,channel\n", "has a header but no rows"),
        ("id,text,label,channel\n1,a,x,c\n2,b,x,c\n3,c,x,c\n", "only one class"),
    ],
    ids=["missing-file", "no-text-column", "no-label-column", "no-rows", "single-class"],
)
def test_bad_input_leaves_no_partial_outputs(
    stage_cfg: dict[str, Any], content: str | None, message: str
) -> None:
    raw = Path(stage_cfg["data"]["path"])
    if content is None:
        raw.unlink()
    else:
        raw.write_text(content)
    with pytest.raises(DataError, match=message):
        preprocess.run(stage_cfg)
    assert not Path(stage_cfg["paths"]["processed_dir"]).exists()
    assert not Path(stage_cfg["paths"]["preprocess_report"]).exists()
    assert [p for p in Path.cwd().rglob("*.tmp")] == []
