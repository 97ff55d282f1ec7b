"""finetune predict: CSV/JSONL in, probabilities out, from a directory or models:/...@champion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finetune import cli
from finetune.core.errors import DataError, ModelNotFoundError
from finetune.lifecycle import predict
from finetune.modeling.classifier import open_classifier
from tests.conftest import make_stage_cfg, make_texts, train_tiny

LABELS = ["account", "billing", "shipping"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    cfg = make_stage_cfg(tmp_path_factory.mktemp("predict"), tiny_model_dir, make_texts())
    return train_tiny(cfg)


@pytest.fixture
def inputs(tmp_path: Path) -> pd.DataFrame:
    texts = [
        "my card was charged twice refund please",
        "",
        "   ",
        "parcel tracking says delivered but not arrived",
        " ".join(["password", "login", "locked"] * 40),  # 120+ words: over 32 tokens
        "email reset",
    ]
    return pd.DataFrame({"id": [f"q{i}" for i in range(len(texts))], "text": texts})


def run_cli(model: str, src: Path, out: Path, *extra: str) -> int:
    """`finetune predict` at max length 32 (the tiny model's)."""
    return cli.main(
        ["predict", "-m", model, "-i", str(src), "-o", str(out), "--max-length", "32", *extra]
    )


def test_csv_from_model_directory(
    trained: dict[str, Any], inputs: pd.DataFrame, tmp_path: Path
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    inputs.to_csv(src, index=False)
    code = run_cli(trained["paths"]["model_dir"], src, out)
    assert code == 0
    df = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert df["id"].tolist() == inputs["id"].tolist(), "input order and columns are kept"
    assert df["status"].tolist() == ["ok", "empty", "empty", "ok", "truncated", "ok"]
    probs = df[[f"prob_{label}" for label in LABELS]].to_numpy()
    answered = df["status"] != "empty"
    np.testing.assert_allclose(probs[answered].sum(axis=1), 1.0, atol=1e-5)
    assert df.loc[answered, "predicted"].isin(LABELS).all()
    np.testing.assert_allclose(
        df.loc[answered, "confidence"], probs[answered].max(axis=1), atol=1e-6
    )
    assert (
        df.loc[~answered, ["predicted", "confidence", *[f"prob_{x}" for x in LABELS]]]
        .isna()
        .all()
        .all()
    )


def test_batching_by_length_does_not_change_results(
    trained: dict[str, Any], inputs: pd.DataFrame
) -> None:
    loaded = open_classifier(trained["paths"]["model_dir"])
    one = predict.predict_frame(inputs, loaded, batch_size=1, max_length=32)
    many = predict.predict_frame(inputs, loaded, batch_size=64, max_length=32)
    cols = [f"prob_{label}" for label in LABELS]
    np.testing.assert_allclose(one[cols].to_numpy(), many[cols].to_numpy(), atol=1e-5)
    assert one["predicted"].tolist() == many["predicted"].tolist()


def test_jsonl_from_registry_champion_matches_directory(
    trained: dict[str, Any], inputs: pd.DataFrame, tmp_path: Path
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.to_json(src, orient="records", lines=True)
    name = trained["tracking"]["registered_model_name"]
    code = run_cli(
        f"models:/{name}@champion", src, out, "--tracking-uri", trained["tracking"]["uri"]
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == inputs["id"].tolist()
    assert rows[1]["predicted"] is None and rows[1]["prob_billing"] is None
    local = predict.predict_frame(
        inputs, open_classifier(trained["paths"]["model_dir"]), max_length=32
    )
    for row, (_, expected) in zip(rows, local.iterrows(), strict=True):
        assert row["status"] == expected["status"]
        if row["status"] != "empty":
            assert row["predicted"] == expected["predicted"]
            assert row["prob_billing"] == pytest.approx(expected["prob_billing"], abs=1e-5)


def test_empty_input_file_gives_empty_output(trained: dict[str, Any], tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    src.write_text("id,text\n")
    assert (
        cli.main(["predict", "-m", trained["paths"]["model_dir"], "-i", str(src), "-o", str(out)])
        == 0
    )
    assert out.read_text() == ""


def test_bad_inputs_fail_with_a_message(
    trained: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,message\n1,hello\n")
    with pytest.raises(
        DataError, match=r"no column 'text' \(columns: \['id', 'message'\]\); pass --text-column"
    ):
        predict.read_inputs(src)
    assert cli.main(["predict", "-m", trained["paths"]["model_dir"], "-i", str(src)]) == 1
    assert "no column 'text'" in caplog.text
    with pytest.raises(DataError, match=r"cannot tell the format from the extension '\.txt'"):
        predict.read_inputs(tmp_path / "x.txt") if (tmp_path / "x.txt").write_text("a") else None
    with pytest.raises(ModelNotFoundError, match="neither a directory nor a models:/"):
        open_classifier(str(tmp_path / "nope"))
    assert (
        cli.main(
            [
                "predict",
                "-m",
                "models:/no-such-model@champion",
                "-i",
                str(src),
                "--text-column",
                "message",
                "--tracking-uri",
                trained["tracking"]["uri"],
            ]
        )
        == 1
    )
    assert "cannot load models:/no-such-model@champion" in caplog.text


def test_a_failed_write_leaves_the_previous_output_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.DataFrame({"text": ["a", "b"], "predicted": ["x", None]})
    out = tmp_path / "scored.jsonl"
    predict.write_outputs(frame, out)
    before = out.read_text()
    assert [json.loads(line)["predicted"] for line in before.splitlines()] == ["x", None]

    def dies(df: pd.DataFrame, fh: Any) -> None:
        fh.write('{"text": "a"')
        raise OSError("disk full")

    monkeypatch.setattr(predict, "_write_jsonl", dies)
    with pytest.raises(OSError, match="disk full"):
        predict.write_outputs(frame.iloc[:1], out)
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scored.jsonl"], "no temporary file left"
