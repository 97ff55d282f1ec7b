"""preprocess: validation errors with file/rows/fix, cleaning, dedup, conflicts, leakage, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from finetune.core.errors import ConfigError, DataError
from finetune.core.schema import DataConfig
from finetune.data import cleaning, preprocess, sources
from finetune.data import report as data_report
from finetune.data.sources import as_raw
from finetune.data.splits import hash_fractions
from finetune.data.validation import validate
from finetune.modeling.tokens import token_counts
from finetune.tracking import inputs
from tests.conftest import data_config, typed


def spec_for(path: Path | str = "f.csv", **kw: Any) -> DataConfig:
    return data_config(path, id_column=kw.pop("id_column", "id"), **kw)


def run_on(df: pd.DataFrame, **kw: Any) -> preprocess.Preprocessed:
    return preprocess.preprocess(as_raw(df, "f.csv"), spec_for(**kw), seed=0)


def frame(texts: list[str | None], labels: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(len(texts))], "text": texts, "label": labels}
    )


def padded(df: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """``df`` plus n distinct rows for each of two classes, so splitting is possible."""
    filler = frame(
        [f"filler text number {i} {c}" for c in ("p", "q") for i in range(n)], ["p"] * n + ["q"] * n
    )
    filler["id"] = [f"f{i}" for i in range(2 * n)]
    return pd.concat([df, filler], ignore_index=True)


# --- validation errors: each names the file, the first offending rows and the fix ---


def test_missing_column_lists_available() -> None:
    df = pd.DataFrame({"id": ["1"], "body": ["x"], "label": ["a"]})
    with pytest.raises(
        DataError, match=r"f\.csv: missing column\(s\) \['text'\]; the file has .*data\.text_column"
    ):
        validate(df, spec_for())


def test_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header_only.csv"
    path.write_text("id,text,label\n")
    raw = sources.load(data_config(str(path)))
    with pytest.raises(DataError, match=r"header_only\.csv has a header but no rows"):
        validate(raw, spec_for(path))


def test_null_labels_name_file_and_rows() -> None:
    df = frame(["a", "b", "c", "d"], ["x", None, " ", "y"])
    with pytest.raises(
        DataError,
        match=r"'label' is empty in 2 row\(s\) \(f\.csv data rows 2, 3\); label them or remove",
    ):
        validate(df, spec_for())


def test_labels_outside_the_configured_set() -> None:
    df = frame(["a", "b", "c", "d"], ["pos", "neg", "positive", "neutral"])
    with pytest.raises(
        DataError,
        match=r"label\(s\) \['neutral', 'positive'\] outside data\.labels \['neg', 'pos'\] in "
        r"2 row\(s\) \(f\.csv data rows 3, 4\); fix those rows or add",
    ):
        validate(df, spec_for(labels=("neg", "pos")))


def test_configured_label_set_fixes_the_order() -> None:
    df = padded(frame([], []))
    result = run_on(df, labels=("q", "p"))
    assert result.labels == ["q", "p"]
    train = result.splits["train"]
    assert (train["label_id"] == train["label"].map({"q": 0, "p": 1})).all()


def test_duplicate_ids() -> None:
    df = pd.DataFrame({"id": ["1", "2", "1"], "text": ["a", "b", "c"], "label": ["x", "y", "x"]})
    with pytest.raises(DataError, match=r"duplicate ids in f\.csv data row 3; ids must be unique"):
        validate(df, spec_for())


def test_empty_texts_error_policy_names_rows() -> None:
    df = padded(frame(["fine", None, "   ", "ok"], ["p", "p", "q", "q"]))
    with pytest.raises(
        DataError,
        match=r"text is empty in 2 row\(s\) \(f\.csv data rows 2, 3\); fill in or remove .*"
        r"empty_text: drop",
    ):
        run_on(df, cleaning={"empty_text": "error"})


def test_empty_texts_drop_policy_counts(caplog: pytest.LogCaptureFixture) -> None:
    df = padded(frame(["fine", None, "   ", "ok"], ["p", "p", "q", "q"]))
    result = run_on(df)
    assert result.report["empty_texts_dropped"] == 2
    assert result.report["rows_kept"] == 22
    assert "f.csv data rows 2, 3" in caplog.text


def test_undecodable_bytes_stop_the_stage(stage_cfg: dict[str, Any]) -> None:
    raw = Path(stage_cfg["data"]["path"])
    raw.write_bytes(raw.read_bytes().replace(b"refund", b"r\xe9fund", 1))
    with pytest.raises(
        DataError, match=r"tickets\.csv: bytes that are not valid utf-8 at lines \d"
    ):
        preprocess.run(stage_cfg)


def test_single_class() -> None:
    df = frame(list("wxyz"), ["only"] * 4)
    with pytest.raises(DataError, match=r"f\.csv: only one class \('only'\).*at least two labels"):
        run_on(df)


def test_class_too_small_to_stratify(tiny_data: pd.DataFrame) -> None:
    extra = pd.DataFrame({"id": ["r1", "r2"], "text": ["rare", "rarer"], "label": ["rare"] * 2})
    with pytest.raises(
        DataError,
        match=r"f\.csv: class\(es\) \{'rare': 2\} have fewer than 3 examples, too few to "
        r"stratify.*add examples",
    ):
        run_on(pd.concat([tiny_data, extra]))


def _unseen_label_source(tmp_path: Path, tiny_data: pd.DataFrame) -> sources.RawData:
    (tmp_path / "ds").mkdir()
    tiny_data.to_csv(tmp_path / "ds" / "train.csv", index=False)
    test = pd.DataFrame(
        {
            "id": ["t1", "t2", "t3"],
            "text": ["brand new", "a refund please", "a newer one"],
            "label": ["new", tiny_data["label"].iloc[0], "new"],
            "channel": ["x"] * 3,
        }
    )
    test.to_csv(tmp_path / "ds" / "test.csv", index=False)
    return sources.load(data_config(str(tmp_path / "ds")))


def test_eval_label_unseen_in_train_error(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    raw = _unseen_label_source(tmp_path, tiny_data)
    with pytest.raises(
        DataError,
        match=r"label\(s\) \['new'\] occur in the test split but not in train.*"
        r"data\.unseen_labels: drop",
    ):
        preprocess.preprocess(raw, spec_for(unseen_labels="error"), seed=0)


def test_eval_label_unseen_in_train_dropped(tmp_path: Path, tiny_data: pd.DataFrame) -> None:
    raw = _unseen_label_source(tmp_path, tiny_data)
    out = preprocess.preprocess(raw, spec_for(), seed=0)
    assert out.labels == sorted(set(tiny_data["label"]))  # "new" is no class
    assert out.report["unseen_label_rows_dropped"] == {"test": 2}
    assert out.splits["test"]["text"].tolist() == ["a refund please"]
    for split in out.splits.values():  # ids renumbered over the train classes
        assert (split["label_id"] == split["label"].map(out.labels.index)).all()
    report = data_report.build(out, None, 64, 0, 0)
    assert "label never in train: removed from test | 2" in data_report.markdown(report, [])


def test_bad_split_sizes() -> None:
    with pytest.raises(
        ConfigError, match=r"data\.split: validation 0\.5 \+ test 0\.5 must be below 1"
    ):
        spec_for(validation_size=0.5, test_size=0.5)


def test_cleaning_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"data\.cleaning\.conflicts=\"vote\": Input should be"):
        spec_for(cleaning={"conflicts": "vote"})
    with pytest.raises(ConfigError, match=r"unknown key data\.cleaning\.lower; did you mean"):
        spec_for(cleaning={"lower": True})


# --- cleaning: each step configurable and counted ---


def test_cleaning_steps_and_counts() -> None:
    texts = ["Ｃａｆé  costs\u00a0€5", "<b>Tom &amp; Jerry</b>", "plain text", " Padded\n"]
    arr = __import__("pyarrow").chunked_array([texts])
    out, counts = cleaning.clean_texts(
        arr, spec_for(cleaning={"html": True, "lowercase": True}).cleaning
    )
    assert out.to_pylist() == ["café costs €5", "tom & jerry", "plain text", "padded"]
    assert counts == {
        "unicode_nfkc_changed": 1,
        "html_changed": 1,
        "whitespace_changed": 3,
        "lowercase_changed": 3,
    }
    kept, counts = cleaning.clean_texts(
        arr, spec_for(cleaning={"unicode": None, "whitespace": False}).cleaning
    )
    assert kept.to_pylist() == texts and counts == {}


def test_exact_and_normalised_duplicates_counted() -> None:
    df = padded(
        frame(
            [
                "My card was charged",
                "my card  was charged",
                "My card was charged",
                "MY CARD, was charged!",
            ],
            ["p", "p", "p", "p"],
        )
    )
    result = run_on(df)
    r = result.report
    assert r["cleaning"]["whitespace_changed"] == 1
    # Row 3 repeats row 1 exactly; rows 2 and 4 only match after case/punctuation folding.
    assert (r["exact_duplicates_dropped"], r["normalized_duplicates_dropped"]) == (1, 2)
    texts = pd.concat(result.splits.values())["text"]
    assert (texts == "My card was charged").sum() == 1
    exact_only = run_on(df, cleaning={"dedup": "exact"})
    assert exact_only.report["normalized_duplicates_dropped"] == 0
    assert exact_only.report["rows_kept"] == r["rows_kept"] + 2


@pytest.mark.parametrize(
    ("policy", "dropped", "kept"),
    [
        ("keep", 0, {("dup", "p"), ("dup", "q")}),
        ("drop", 2, set()),
        ("majority", 1, {("dup", "q")}),  # q: "dup" + "Dup!" (same normalised text) beat p: 1
    ],
)
def test_conflicting_labels_policy(policy: str, dropped: int, kept: set[tuple[str, str]]) -> None:
    df = padded(frame(["dup", "dup", "Dup!", "solo"], ["p", "q", "q", "p"]))
    result = run_on(df, cleaning={"conflicts": policy})
    everything = pd.concat(result.splits.values())
    found = {(t, lab) for t, lab in zip(everything["text"], everything["label"], strict=True)}
    assert result.report["conflict_rows_dropped"] == dropped
    assert result.report["normalized_duplicates_dropped"] == 1  # "Dup!" (q) = "dup" (q)
    leaked = sum(result.report["leakage_removed"].values())
    # "keep" keeps both labelled rows; if they land in different splits, the later one leaks.
    assert {x for x in found if x[0].lower().startswith("dup")} | (
        {("dup", "p"), ("dup", "q")} if leaked and policy == "keep" else set()
    ) == kept
    assert result.report["conflicting_label_texts"] == 1
    assert result.report["conflicting_label_rows"] == 3
    assert result.conflicts == [
        {"text": "dup", "labels": {"p": 1, "q": 1}},
        {"text": "Dup!", "labels": {"q": 1}},
    ]


def test_majority_tie_goes_to_first_label() -> None:
    df = padded(frame(["tie", "tie"], ["q", "p"]))
    everything = pd.concat(run_on(df).splits.values())
    assert everything.loc[everything["text"] == "tie", "label"].tolist() == ["q"]


def _leaky_source(tmp_path: Path) -> None:
    """Predefined splits where two test texts and two validation texts also occur in train
    ("Text p 1!" = "text p 1" once normalised), and one text is in test and validation."""
    rows = [(f"text {c} {i}", c) for c in "pq" for i in range(10)]
    train = pd.DataFrame(rows, columns=["text", "label"])
    test = pd.DataFrame(
        [("Text p 1!", "p"), ("new p", "p"), ("text q 2", "q"), ("new q", "q"), ("dev q", "q")],
        columns=["text", "label"],
    )
    validation = pd.DataFrame(
        [("new p", "p"), ("dev q", "q"), ("dev p", "p"), ("text q 3", "q")],
        columns=["text", "label"],
    )
    for name, part in (("train", train), ("test", test), ("validation", validation)):
        part.to_csv(tmp_path / f"{name}.csv", index=False)


def test_a_sources_own_test_split_stays_whole_by_default(tmp_path: Path) -> None:
    _leaky_source(tmp_path)
    raw = sources.load(data_config(str(tmp_path)))
    result = preprocess.preprocess(raw, spec_for(id_column=None), seed=0)
    assert result.report["leakage_removed"] == {"train": 3, "validation": 2, "test": 0}
    assert len(result.splits["test"]) == 5, "the official test split is kept whole"
    assert result.splits["validation"]["text"].tolist() == ["dev p", "text q 3"]
    assert len(result.splits["train"]) == 17
    assert "text p 1" not in set(result.splits["train"]["text"])


def test_leakage_can_leave_the_evaluation_splits_instead(tmp_path: Path) -> None:
    _leaky_source(tmp_path)
    raw = sources.load(data_config(str(tmp_path)))
    spec = spec_for(id_column=None, leakage="leave_evaluation")
    result = preprocess.preprocess(raw, spec, seed=0)
    assert result.report["leakage_removed"] == {"train": 0, "validation": 3, "test": 2}
    assert result.splits["test"]["text"].tolist() == ["new p", "new q", "dev q"]
    assert result.splits["validation"]["text"].tolist() == ["dev p"]
    assert len(result.splits["train"]) == 20
    assert result.splits["test"]["id"].tolist() == ["test-2", "test-4", "test-5"]


def test_split_is_stratified_disjoint_and_seeded(tiny_data: pd.DataFrame) -> None:
    spec = spec_for(validation_size=0.2, test_size=0.2)
    parts = preprocess.preprocess(as_raw(tiny_data), spec, seed=3).splits
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [36, 12, 12]
    for part in parts.values():
        assert part["label"].value_counts().min() == part["label"].value_counts().max()
    ids = [set(p["id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = preprocess.preprocess(as_raw(tiny_data), spec, seed=3).splits
    assert all(parts[s].equals(again[s]) for s in parts)
    other = preprocess.preprocess(as_raw(tiny_data), spec, seed=4).splits
    assert not other["test"]["id"].equals(parts["test"]["id"])


def _split_of(parts: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {text: name for name, part in parts.items() for text in part["text"]}


def test_hash_split_keeps_every_text_in_its_split_as_data_grows() -> None:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    texts = [f"{a} {b} {c}" for a in words for b in words for c in words[:4]]  # 256 distinct
    first = frame(texts[:160], ["p", "q"] * 80)
    grown = pd.concat([first, frame(texts[160:], ["q", "p"] * 48)], ignore_index=True)
    grown["id"] = [f"g{i}" for i in range(len(grown))]  # ids and row order change too
    spec = spec_for(validation_size=0.2, test_size=0.25, split_method="hash")
    before = _split_of(preprocess.preprocess(as_raw(first), spec, seed=0).splits)
    after_parts = preprocess.preprocess(as_raw(grown.iloc[::-1]), spec, seed=0).splits
    after = _split_of(after_parts)
    assert {t: after[t] for t in before} == before  # nothing moved
    shares = {s: len(p) / len(grown) for s, p in after_parts.items()}
    assert abs(shares["test"] - 0.25) < 0.08 and abs(shares["validation"] - 0.2) < 0.08
    # the stratified cut of the same data moves rows when data is added
    strat = spec_for(validation_size=0.2, test_size=0.25)
    s_before = _split_of(preprocess.preprocess(as_raw(first), strat, seed=0).splits)
    s_after = _split_of(preprocess.preprocess(as_raw(grown), strat, seed=0).splits)
    assert any(s_after[t] != s_before[t] for t in s_before)
    # another seed, another assignment
    other = _split_of(preprocess.preprocess(as_raw(first), spec, seed=1).splits)
    assert other != before


def test_hash_split_carves_missing_splits_from_predefined_train(tmp_path: Path) -> None:
    df = frame(
        [f"review number {i} {'good' if i % 2 else 'bad'}" for i in range(200)], ["p", "q"] * 100
    )
    df.iloc[:180].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[180:].to_csv(tmp_path / "test.csv", index=False)
    spec = spec_for(tmp_path, validation_size=0.2, test_size=0.25, split_method="hash")
    raw = sources.load(data_config(str(tmp_path)))
    assert raw.predefined_splits
    parts = preprocess.preprocess(raw, spec, seed=0).splits
    assert len(parts["test"]) == 20  # the file's own test split is kept whole
    assert 15 <= len(parts["validation"]) <= 55 and len(parts["train"]) >= 125
    fractions = hash_fractions(
        cleaning.normalized_keys(pa.chunked_array([parts["validation"]["text"]])).to_pylist(), 0
    )
    assert (fractions < 0.2).all()  # validation = the [0, 0.2) hash interval of train


def test_unknown_split_method_is_a_config_error_when_the_config_is_read(
    stage_cfg: dict[str, Any],
) -> None:
    stage_cfg["data"]["path"] = "missing.csv"  # the config error comes before the data is read
    stage_cfg["data"]["split"]["method"] = "random"
    with pytest.raises(ConfigError, match=r"data\.split\.method=\"random\": .*'hash' or 'strat"):
        preprocess.run(stage_cfg)
    assert not Path(stage_cfg["paths"]["processed_dir"]).exists()


# --- the stage: outputs, data report, no partial outputs ---


def test_run_writes_splits_label_map_and_report(stage_cfg: dict[str, Any]) -> None:
    result = preprocess.run(stage_cfg)
    paths = stage_cfg["paths"]
    processed = Path(paths["processed_dir"])
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
    report = json.loads(Path(paths["preprocess_report"]).read_text())
    assert report["rows_kept"] == 60 and report["num_classes"] == 3
    # Token lengths with the configured tokenizer: "[CLS] w1..w5 n [SEP]" = 8 tokens each.
    assert report["token_lengths"]["train"]["max"] == 8
    assert report["token_lengths"]["test"]["truncation_rate"] == 0.0
    counts = json.loads(Path(paths["preprocess_class_counts"]).read_text())
    assert counts["test"] == {"account": 4, "billing": 4, "shipping": 4}
    assert "class_counts" not in report and report["smallest_class_train_rows"] == 12
    md = Path(paths["preprocess_report_md"]).read_text()
    assert "| billing | 12 | 4 | 4 |" in md and "## Token lengths" in md and "tokens cut" in md
    hist = pd.read_csv(paths["token_length_plot"])
    assert list(hist.columns) == ["tokens", "train", "validation", "test"]
    assert hist["train"].sum() == 36
    assert Path(paths["token_length_image"]).read_bytes()[:4] == b"\x89PNG"


def test_truncation_rate_at_max_length(tiny_model_dir: Path) -> None:
    from finetune.modeling.tokens import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    lengths = token_counts(tok, ["refund", "refund card price payment invoice"])
    assert lengths.tolist() == [3, 7]
    stats = data_report.length_stats(np.array([3, 7, 10, 12]), max_length=8)
    assert stats["truncated"] == 2 and stats["truncation_rate"] == 0.5
    assert stats["tokens_cut_rate"] == round((2 + 4) / 32, 4)  # 6 of 32 tokens past 8


def test_data_report_logged_to_mlflow(stage_cfg: dict[str, Any], tmp_path: Path) -> None:
    import mlflow

    preprocess.run(stage_cfg)
    mlflow.set_tracking_uri(stage_cfg["tracking"]["uri"])
    with mlflow.start_run() as run:
        inputs.log_to_mlflow(typed(stage_cfg).paths)
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.metrics["data.rows_kept"] == 60
    assert logged.data.metrics["data.token_lengths.train.truncation_rate"] == 0.0
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "data")}
    assert {"data/data_report.json", "data/data_report.md", "data/token_lengths.png"} <= names


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("id,body,label,channel\n1,hi,a,c\n", r"missing column\(s\) \['text'\]"),
        ("id,text,channel\n1,hi,x\n", r"missing column\(s\) \['label'\]"),
        ("id,text,label,channel\n", "has a header but no rows"),
        ("id,text,label,channel\n1,a,x,c\n2,b,x,c\n3,c,x,c\n", "only one class"),
        ("id,text,label,channel\n1,a,,c\n", r"'label' is empty in 1 row\(s\)"),
    ],
    ids=[
        "missing-file",
        "no-text-column",
        "no-label-column",
        "no-rows",
        "single-class",
        "null-label",
    ],
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
    for key in ("processed_dir", "preprocess_report", "preprocess_report_md", "token_length_plot"):
        assert not Path(stage_cfg["paths"][key]).exists()
    assert [p for p in Path.cwd().rglob("*.tmp")] == []
