"""sources: every source type (file formats, directory, glob, split files, HF datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finetune.core.errors import DataError
from finetune.core.schema import DataConfig
from finetune.data import preprocess, sources
from finetune.data.sources import read_file
from tests.conftest import data_config


def write(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = sources.FORMATS[path.suffix]
    if kind == "csv":
        df.to_csv(path, index=False)
    elif kind == "tsv":
        df.to_csv(path, index=False, sep="\t")
    elif kind == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    return path


def data_spec(path: str | None = None, **kw: Any) -> DataConfig:
    return data_config(path, id_column=kw.pop("id_column", "id"), **kw)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_file_format(tmp_path: Path, tiny_data: pd.DataFrame, suffix: str) -> None:
    path = write(tiny_data, tmp_path / f"data{suffix}")
    raw = sources.load(data_config(str(path)))
    assert raw.columns == list(tiny_data.columns)
    assert raw.table.column("text").to_pylist() == tiny_data["text"].tolist()
    assert not raw.predefined_splits
    result = preprocess.preprocess(raw, data_spec(str(path)), seed=0)
    assert sum(len(p) for p in result.splits.values()) == 60


def test_directory_and_glob_of_many_files(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    for i, part in enumerate((tiny_data.iloc[:25], tiny_data.iloc[25:])):
        write(part, tmp_path / "parts" / f"part-{i}.csv")
    (tmp_path / "parts" / "README.md").write_text("not data")
    for where in (tmp_path / "parts", tmp_path / "parts" / "part-*.csv"):
        raw = sources.load(data_config(str(where)))
        assert raw.table.num_rows == 60 and len(raw.files) == 2
        # Row numbers restart per file, so messages point into the right file.
        assert raw.table.column("__row").to_pylist()[25] == 1


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"glob .*\*\.csv' matches no files"):
        sources.load(data_config(str(tmp_path / "*.csv")))


def test_directory_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no \.csv, \.tsv, \.jsonl or \.parquet files"):
        sources.load(data_config(str(tmp_path)))


def test_files_with_different_columns(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    write(tiny_data, tmp_path / "a.csv")
    write(tiny_data.rename(columns={"text": "body"}), tmp_path / "b.csv")
    with pytest.raises(DataError, match=r"b\.csv has columns .* every file of one source"):
        sources.load(data_config(str(tmp_path)))


def test_predefined_split_files_by_name(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    """train.csv + test.csv: both kept as given; validation carved (stratified) from train."""
    test_ids = {f"{label}-{i}" for label in ("billing", "shipping", "account") for i in range(5)}
    write(tiny_data[~tiny_data["id"].isin(test_ids)], tmp_path / "ds" / "train.csv")
    write(tiny_data[tiny_data["id"].isin(test_ids)], tmp_path / "ds" / "test.csv")
    raw = sources.load(data_config(str(tmp_path / "ds")))
    assert raw.predefined_splits
    result = preprocess.preprocess(raw, data_spec(validation_size=0.2), seed=0)
    assert set(result.splits["test"]["id"]) == test_ids
    assert len(result.splits["validation"]) == 9 and len(result.splits["train"]) == 36
    assert result.report["predefined_splits"] is True


def test_split_files_mapping(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    write(tiny_data.iloc[::2], tmp_path / "fit.jsonl")
    write(tiny_data.iloc[1::4], tmp_path / "holdout.jsonl")
    write(tiny_data.iloc[3::4], tmp_path / "final.jsonl")
    spec = data_spec(
        split_files={
            "train": str(tmp_path / "fit.jsonl"),
            "dev": str(tmp_path / "holdout.jsonl"),
            "test": str(tmp_path / "final.jsonl"),
        }
    )
    result = preprocess.preprocess(sources.load(spec), spec, seed=0)
    assert [len(result.splits[s]) for s in ("train", "validation", "test")] == [30, 15, 15]
    with pytest.raises(DataError, match=r"data.split_files: unknown split 'holdout'"):
        sources.load(data_config(split_files={"holdout": str(tmp_path / "fit.jsonl")}))


def test_integer_labels_and_text_from_several_columns(tmp_path: Path) -> None:
    rows = [
        {"title": f"title {i}", "body": None if i % 7 == 0 else f"body {i}", "stars": i % 3 + 1}
        for i in range(30)
    ]
    path = write(pd.DataFrame(rows), tmp_path / "reviews.jsonl")
    spec = data_spec(
        str(path),
        id_column=None,
        text_column=["title", "body"],
        label_column="stars",
        text_separator=" | ",
    )
    result = preprocess.preprocess(sources.load(spec), spec, seed=0)
    assert result.labels == ["1", "2", "3"]
    everything = pd.concat(result.splits.values())
    texts = dict(zip(everything["id"], everything["text"], strict=True))
    assert texts["row-2"] == "title 1 | body 1" and texts["row-8"] == "title 7"


def test_hf_local_dataset_directory(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    """A dataset repository checked out locally (data files per split), loaded offline."""
    write(tiny_data.iloc[:45], tmp_path / "repo" / "train.csv")
    write(tiny_data.iloc[45:], tmp_path / "repo" / "test.csv")
    spec = data_config(kind="hf", hf_name=str(tmp_path / "repo"), hf_cache_dir=str(tmp_path / "c"))
    raw = sources.load(spec)
    assert raw.predefined_splits and raw.files == [
        f"{tmp_path / 'repo'}[train]",
        f"{tmp_path / 'repo'}[test]",
    ]
    assert raw.table.num_rows == 60


def test_hf_saved_dataset_with_class_labels(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "sad"]
    split = {
        "sentence": [f"{w} film {i}" for i in range(10) for w in words],
        "label": [i % 2 for _ in range(10) for i in range(len(words))],
    }
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(split, features=features),
            "validation": datasets.Dataset.from_dict(
                {k: v[:8] for k, v in split.items()}, features=features
            ),
        }
    )
    ds["validation"] = ds["validation"].map(lambda r: {"sentence": r["sentence"] + " (dev)"})
    ds.save_to_disk(tmp_path / "saved")
    spec = data_config(
        kind="hf", hf_name=str(tmp_path / "saved"), text_column="sentence", test_size=0.25
    )
    result = preprocess.preprocess(sources.load(spec), spec, seed=0)
    assert result.labels == ["neg", "pos"]  # ClassLabel ids mapped to their names
    assert len(result.splits["validation"]) == 8 and len(result.splits["test"]) == 20


def _glue_like(
    tmp_path: Path, test_labels: list[int], train_labels: list[int] | None = None
) -> Path:
    """A saved dataset shaped like GLUE's: ClassLabel labels, a test split labelled -1."""
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "sad"]
    texts = [f"{w} film {i}" for i in range(10) for w in words]
    labels = train_labels or [i % 2 for _ in range(10) for i in range(len(words))]
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": texts, "label": labels}, features=features
            ),
            "validation": datasets.Dataset.from_dict(
                {"sentence": [f"{t} (dev)" for t in texts[:8]], "label": labels[:8]},
                features=features,
            ),
            "test": datasets.Dataset.from_dict(
                {
                    "sentence": [f"unseen {i}" for i in range(len(test_labels))],
                    "label": test_labels,
                },
                features=features,
            ),
        }
    )
    ds.save_to_disk(tmp_path / "glue")
    return tmp_path / "glue"


def test_hf_unlabelled_test_split_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """GLUE's test splits are labelled -1: found by name, such a split is skipped (documented in
    conf/data/base.yaml) and the test split is carved from train, instead of an IndexError."""
    path = _glue_like(tmp_path, test_labels=[-1] * 6)
    spec = data_config(kind="hf", hf_name=str(path), text_column="sentence", test_size=0.25)
    with caplog.at_level("WARNING"):
        raw = sources.load(spec)
    assert raw.files == [f"{path}[train]", f"{path}[validation]"]
    assert "split 'test' is unlabelled" in caplog.text
    result = preprocess.preprocess(raw, spec, seed=0)
    assert result.labels == ["neg", "pos"] and len(result.splits["test"]) == 20


def test_hf_unlabelled_split_named_in_config_is_an_error(tmp_path: Path) -> None:
    path = _glue_like(tmp_path, test_labels=[-1] * 6)
    spec = data_config(kind="hf", hf_name=str(path), text_column="sentence")
    spec = spec.model_copy(
        update={"hf": spec.hf.model_copy(update={"splits": {"train": "train", "test": "test"}})}
    )
    with pytest.raises(
        DataError, match=r"split 'test' is unlabelled: column 'label' is -1 in all 6"
    ):
        sources.load(spec)


def test_hf_rows_labelled_minus_one_are_named(tmp_path: Path) -> None:
    labels = [i % 2 for i in range(80)]
    labels[3] = labels[10] = -1
    path = _glue_like(tmp_path, test_labels=[0, 1, 0, 1], train_labels=labels)
    spec = data_config(kind="hf", hf_name=str(path), text_column="sentence")
    with pytest.raises(
        DataError,
        match=r"label ids outside the dataset's classes 0..1 \['neg', 'pos'\] in 3 row\(s\) "
        r"\(.*glue\[train\] data rows 4, 11; .*glue\[validation\] data row 4\); -1 means unl",
    ):
        preprocess.preprocess(sources.load(spec), spec, seed=0)


def test_hf_unknown_dataset_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    spec = data_config(kind="hf", hf_name="nobody/no-such-dataset", hf_cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"cannot load Hugging Face dataset 'nobody/no-such-data"):
        sources.load(spec)


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv does not exist.*set data\.path"):
        sources.load(data_config(str(tmp_path / "nope.csv")))


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match=r"x\.txt: cannot tell the format.*set data\.format"):
        read_file(tmp_path / "x.txt")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_file(tmp_path / "empty.csv")


def test_undecodable_bytes_name_file_lines_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\nfine,a\nhello \xff\xfe world,a\nok,b\ncaf\xe9,b\n")
    with pytest.raises(
        DataError, match=r"bad\.csv: bytes that are not valid utf-8 at lines 3, 5 .*data\.encoding"
    ):
        read_file(path)
    # The fix the message gives works.
    table = read_file(path, encoding="latin-1")
    assert table.column("text").to_pylist()[3] == "café"


def test_all_columns_read_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,text,label\n007,hello,1\n008,,2\n")
    table = read_file(path)
    assert table.column("id").to_pylist() == ["007", "008"]  # leading zeros kept
    assert table.column("text").to_pylist() == ["hello", None]
    assert table.column("label").to_pylist() == ["1", "2"]


# --------------------------------------------------------------------------- awkward files


def _rows(n: int = 40) -> list[tuple[str, str]]:
    return [
        (f"message number {i} about {'cards' if i % 2 else 'parcels'}", "ab"[i % 2])
        for i in range(n)
    ]


def _run(path: Path, **kw: Any) -> preprocess.Preprocessed:
    spec = data_config(str(path), **kw)
    return preprocess.preprocess(sources.load(spec), spec, seed=0)


def test_csv_with_a_byte_order_mark_windows_line_endings_and_quoted_newlines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "excel.csv"
    body = "text,label\r\n" + "".join(f'"{t}\r\nsecond line",{lab}\r\n' for t, lab in _rows())
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    result = _run(path)
    everything = pd.concat(result.splits.values())
    assert len(everything) == 40 and result.labels == ["a", "b"]
    assert everything["text"].str.endswith("second line").all(), "newline inside the quotes"
    assert not everything["text"].str.contains("\r").any(), "whitespace cleaned"


def test_semicolon_separated_csv_is_read_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("text;label\n" + "".join(f'"{t}, really";{lab}\n' for t, lab in _rows()))
    result = _run(path)
    assert result.labels == ["a", "b"]
    assert pd.concat(result.splits.values())["text"].str.endswith(", really").all()
    assert _run(path, delimiter=";").labels == ["a", "b"]


def test_duplicate_column_names_stop_with_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("text,label,text\n" + "".join(f"{t},{lab},x\n" for t, lab in _rows()))
    with pytest.raises(DataError, match=r"dup\.csv: the header names a column more than once: "
                       r"'text' \(columns 1, 3\); rename them"):  # fmt: skip
        sources.load(data_config(str(path)))


def test_float_labels_that_are_whole_numbers_are_classes(tmp_path: Path) -> None:
    path = tmp_path / "stars.csv"
    path.write_text("text,label\n" + "".join(f"{t},{float(i % 3 + 1)}\n" for i, (t, _) in
                                              enumerate(_rows(30))))  # fmt: skip
    assert _run(path).labels == ["1", "2", "3"]


def test_a_continuous_label_column_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("text,label\n" + "".join(f"{t},{i / 7:.4f}\n" for i, (t, _) in
                                              enumerate(_rows(80))))  # fmt: skip
    with pytest.raises(DataError, match=r"column 'label' holds 80 distinct non-integer numbers "
                       r"\(e\.g\. .*scores\.csv data rows 2, 3, 4.*regression target.*"
                       r"data\.label_column"):  # fmt: skip
        _run(path)


def test_a_text_column_of_numbers_is_refused_with_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "swapped.csv"
    path.write_text("id,label,text\n" + "".join(f"{i},{lab},{i * 3.5}\n" for i, (_, lab) in
                                                 enumerate(_rows())))  # fmt: skip
    with pytest.raises(DataError, match=r"column 'text' is mostly numbers \(100% of its rows, "
                       r"e\.g\. .*swapped\.csv data rows 1, 2, 3.*Set data\.text_"):  # fmt: skip
        _run(path)


def test_mixed_encodings_name_the_lines_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    lines = [f"{t},{lab}\n".encode() for t, lab in _rows()]
    lines[4] = "caf\u00e9 au lait,a\n".encode("latin-1")  # one line saved by another program
    path.write_bytes(b"text,label\n" + b"".join(lines))
    with pytest.raises(DataError, match=r"mixed\.csv: bytes that are not valid utf-8 at lines 6 "
                       r".*set data\.encoding \(e\.g\. latin-1\)"):  # fmt: skip
        sources.load(data_config(str(path)))
    result = _run(path, encoding="latin-1")
    assert "café au lait" in set(pd.concat(result.splits.values())["text"])


def test_an_extra_file_in_the_directory_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text(
        "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in _rows())
    )
    (tmp_path / "notes.csv").write_text("author,comment\nme,hello\n")
    with pytest.raises(DataError, match=r"every file of one source must have the same columns\. "
                       r"If it is not part of the data, point data\.path at the data files only "
                       r"\(a glob such as 'dir/\*\.csv', or data\.split_files"):  # fmt: skip
        sources.load(data_config(str(tmp_path)))
