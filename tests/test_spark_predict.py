"""finetune predict --engine spark: the model as an MLflow Spark UDF gives what local predict
gives, for CSV, JSONL and Parquet, PyTorch and ONNX, a directory and models:/; a task killed
once is retried into complete output; bad input stops with one line and writes nothing."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finetune import cli
from finetune.core.errors import DataError
from finetune.core.labels import prob_columns
from finetune.lifecycle import predict, spark_predict
from finetune.modeling.classifier import open_classifier
from finetune.monitoring import predlog
from tests.conftest import REPO, make_stage_cfg, make_texts, train_tiny
from tests.helpers import BIN, env_with_venv

pytest.importorskip("pyspark")  # the `spark` extra (part of `dev`)

LABELS = ["account", "billing", "shipping"]
PROBS = prob_columns(LABELS)
ADDED = ["predicted", "confidence", "status", *PROBS]


# --------------------------------------------------------------------------- without Spark


def test_installing_spark_does_not_end_a_fileless_main_silently() -> None:
    """MLflow's signature inference (every log_model) imports pyspark.sql.connect once pyspark is
    installed; without the `connect` extra's grpc that import calls sys.exit(0) when __main__ has
    no file (`python -c`, a script on stdin, xdist workers): training ended with status 0."""
    import subprocess

    code = "from mlflow.models import infer_signature; infer_signature(['a'], ['b']); print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_output_format_from_the_name_or_the_flag() -> None:
    assert spark_predict.output_format("out", "auto", "parquet") == "parquet"
    assert spark_predict.output_format("out.csv", None, "parquet") == "csv"
    assert spark_predict.output_format("out", "csv", "parquet") == "csv"
    with pytest.raises(DataError, match=r"--output-format jsonl is not one --engine spark writes"):
        spark_predict.output_format("out", "jsonl", "parquet")


def test_input_files_one_format_and_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text\nx\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"holds csv, parquet files: score one format at a time"):
        spark_predict.input_files(str(tmp_path), "auto")
    files, kind = spark_predict.input_files(str(tmp_path / "*.csv"), "auto")
    assert (files, kind) == ([str(tmp_path / "a.csv")], "csv")
    with pytest.raises(DataError, match=r"input file .*nope.csv does not exist: .*set --input"):
        spark_predict.input_files(str(tmp_path / "nope.csv"), "auto")
    with pytest.raises(DataError, match=r"--input glob .* matches no files"):
        spark_predict.input_files(str(tmp_path / "*.jsonl"), "auto")


def test_reason_is_the_python_error_of_a_failed_task() -> None:
    text = (
        "An error occurred while calling o81.parquet.\n: org.apache.spark.SparkException: "
        "Job aborted.\norg.apache.spark.api.python.PythonException: Traceback (most recent "
        'call last):\n  File "x.py", line 1\nValueError: the model broke\n\tat org.apache'
    )
    assert spark_predict._reason(RuntimeError(text)) == "ValueError: the model broke"
    assert spark_predict._reason(RuntimeError("[PATH_NOT_FOUND] no\nmore")) == "[PATH_NOT_FOUND] no"


def test_spark_engine_needs_an_output_directory(tmp_path: Path, caplog: Any) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n")
    assert cli.main(["predict", "--engine", "spark", "-m", "models/model", "-i", str(src)]) == 1
    assert "--engine spark writes a directory: pass -o/--output DIR" in caplog.text
    caplog.clear()
    args = ["predict", "--engine", "spark", "-m", "m", "-i", str(src), "-o", str(tmp_path / "o")]
    assert cli.main([*args, "--conf", "spark.executor.memory"]) == 1
    assert "--conf 'spark.executor.memory': expected KEY=VALUE" in caplog.text


# --------------------------------------------------------------------------- with Spark


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """The tiny model trained and registered (champion), then exported to int8 ONNX and
    registered as <name>-onnx v1 from the same run."""
    from finetune.export import export

    cfg = train_tiny(make_stage_cfg(tmp_path_factory.mktemp("spark"), tiny_model_dir, make_texts()))
    cfg = copy.deepcopy(cfg)
    cfg["export"].update({"max_f1_drop": 1.0, "latency_texts": 5, "variants": ["int8"]})
    export.run(cfg)
    return cfg


@pytest.fixture(scope="module")
def spark() -> Any:
    """One local Spark for the module: 2 cores, each task retried up to 4 times (local[N,F]),
    4 texts per Arrow batch so that a task scores several batches."""
    from pyspark.sql import SparkSession

    python = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the tasks' interpreter: this venv's
    session = (
        SparkSession.builder.master("local[2,4]")
        .appName("test_spark_predict")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    if python is None:
        os.environ.pop("PYSPARK_PYTHON")
    else:
        os.environ["PYSPARK_PYTHON"] = python


def inputs_frame() -> pd.DataFrame:
    texts = [
        "my card was charged twice refund please",
        "",
        "   ",
        "parcel tracking says delivered but not arrived",
        " ".join(["password", "login", "locked"] * 40),  # over 32 tokens
        "email reset",
        *[f"invoice {i} refund price login" for i in range(10)],
    ]
    return pd.DataFrame({"id": [f"q{i}" for i in range(len(texts))], "text": texts})


def write_input(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


def read_output(path: Path) -> pd.DataFrame:
    files = sorted(path.glob("part-*"))
    if files and files[0].name.endswith(".csv"):  # read as local predict reads CSV
        frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files]
        out = pd.concat(frames, ignore_index=True)
        numbers = ["confidence", *[c for c in out.columns if c.startswith("prob_")]]
        out[numbers] = out[numbers].apply(pd.to_numeric)  # an empty cell: NaN
        return out.replace({"predicted": {"": None}})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def cells(column: pd.Series) -> list[Any]:
    """A column's values with every missing one (None, NaN, pd.NA) as None."""
    return [None if pd.isna(value) else value for value in column]


def assert_same_as_local(out: pd.DataFrame, frame: pd.DataFrame, model: str) -> None:
    """Same rows in the same order, the input columns first, then local predict's columns
    with the same labels and probabilities within 1e-5 (ONNX int8 too: its activations are
    quantized per batch, so it scores each text alone, local and on Spark alike)."""
    local = predict.predict_frame(frame, open_classifier(model), batch_size=64, max_length=32)
    assert list(out.columns) == list(local.columns)
    for column in frame.columns:  # the input's cells as local predict keeps them ("" stays "")
        assert cells(out[column]) == cells(local[column]), column
    assert out["status"].tolist() == local["status"].tolist()
    assert cells(out["predicted"]) == cells(local["predicted"])
    np.testing.assert_allclose(
        out[["confidence", *PROBS]].to_numpy(dtype=float),
        local[["confidence", *PROBS]].to_numpy(dtype=float),
        atol=1e-5,
    )


def spark_cli(model: str, src: Path, out: Path, *extra: str) -> int:
    flags = ["--engine", "spark", "--max-length", "32", "--no-log", *extra]
    return cli.main(["predict", "-m", model, "-i", str(src), "-o", str(out), *flags])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "model"),
    [(suffix, model) for suffix in (".csv", ".jsonl", ".parquet") for model in ("pytorch", "onnx")],
)
def test_spark_scores_like_local_predict(
    trained: dict[str, Any], spark: Any, tmp_path: Path, suffix: str, model: str
) -> None:
    model_dir = trained["paths"]["model_dir" if model == "pytorch" else "export_dir"]
    frame = inputs_frame()
    src = write_input(frame, tmp_path / f"in{suffix}")
    out = tmp_path / ("out.csv" if suffix == ".jsonl" else "out")  # CSV part files, once
    assert spark_cli(model_dir, src, out, "--partitions", "3") == 0
    assert_same_as_local(read_output(out), frame, model_dir)
    summary = json.loads((out / spark_predict.SUMMARY_FILE).read_text())
    assert summary["rows"] == len(frame) and summary["failed_rows"] == 0
    assert summary["statuses"] == {"ok": 13, "empty": 2, "truncated": 1}
    assert summary["backend"] == model and summary["partitions"] == 3
    assert (out / spark_predict.SUCCESS_FILE).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no leftovers"


@pytest.mark.slow
def test_null_texts_in_parquet_are_empty(
    trained: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "text": ["refund my card", None, "  "]})
    src, out = write_input(frame, tmp_path / "in.parquet"), tmp_path / "out"
    assert spark_cli(trained["paths"]["model_dir"], src, out) == 0
    assert_same_as_local(read_output(out), frame, trained["paths"]["model_dir"])


@pytest.mark.slow
def test_models_uri_prefers_the_registered_onnx_export(
    trained: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    name, uri = trained["tracking"]["registered_model_name"], trained["tracking"]["uri"]
    frame = inputs_frame()
    src = write_input(frame, tmp_path / "in.csv")
    tracking = ["--tracking-uri", uri]
    assert spark_cli(f"models:/{name}@champion", src, tmp_path / "onnx", *tracking) == 0
    summary = json.loads((tmp_path / "onnx" / spark_predict.SUMMARY_FILE).read_text())
    assert summary["backend"] == "onnx"
    assert summary["model"].startswith(f"models:/{name}-onnx/1 (ONNX int8, exported from")
    assert_same_as_local(read_output(tmp_path / "onnx"), frame, trained["paths"]["export_dir"])
    by_version = tmp_path / "onnx-v1"
    assert spark_cli(f"models:/{name}-onnx/1", src, by_version, *tracking) == 0
    summary = json.loads((by_version / spark_predict.SUMMARY_FILE).read_text())
    assert summary["backend"] == "onnx" and summary["model"].startswith(f"models:/{name}-onnx/1")
    assert_same_as_local(read_output(by_version), frame, trained["paths"]["export_dir"])
    out = tmp_path / "torch"
    assert spark_cli(f"models:/{name}@champion", src, out, *tracking, "--no-prefer-onnx") == 0
    assert json.loads((out / spark_predict.SUMMARY_FILE).read_text())["backend"] == "pytorch"
    assert_same_as_local(read_output(out), frame, trained["paths"]["model_dir"])


@pytest.mark.slow
def test_a_command_starts_its_own_spark_and_spark_submit_keeps_its_master(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """Two fresh processes, no Spark running in them: `finetune predict --engine spark`
    starts Spark with its --master (and --conf); the docs' `spark-submit ... cli.py predict`
    runs on spark-submit's master, not on --master."""
    model, frame = trained["paths"]["model_dir"], inputs_frame()
    src = write_input(frame, tmp_path / "in.csv")
    env = env_with_venv(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.pop("MLFLOW_TRACKING_URI", None)
    predict_args = ["predict", "--engine", "spark", "-m", model, "-i", str(src), "--no-log",
                    "--max-length", "32", "--repo", str(REPO), "--master", "local[1]"]  # fmt: skip
    runs = {
        "own": [
            str(BIN / "finetune"),
            *predict_args,
            "--conf",
            "spark.sql.execution.arrow.maxRecordsPerBatch=3",
        ],
        "submitted": [
            str(BIN / "spark-submit"),
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            str(REPO / "src" / "finetune" / "cli.py"),
            *predict_args,
        ],
    }
    masters = {}
    for name, command in runs.items():
        out = tmp_path / name
        proc = subprocess.run(
            [*command, "-o", str(out)], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"
        masters[name] = json.loads((out / spark_predict.SUMMARY_FILE).read_text())["master"]
        assert_same_as_local(read_output(out), frame, model)
        if name == "submitted":
            said = proc.stdout + proc.stderr
            assert "started by spark-submit: its master is used, not local[1]" in said
    assert masters == {"own": "local[1]", "submitted": "local[2]"}


class FailOnceScorer(spark_predict.SparkScorer):
    """Kills its Python worker (as a lost executor would) in the middle of the first task
    that reaches a second batch, once: the marker file says it happened."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def load_context(self, context):  # type: ignore[no-untyped-def]
        super().load_context(context)
        self.calls = 0

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker):  # noqa: PTH110
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().predict(context, model_input, params)


@pytest.mark.slow
def test_a_killed_task_is_retried_into_complete_output(
    trained: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the tasks cannot import tests
    frame = inputs_frame()
    src, out, marker = write_input(frame, tmp_path / "in.csv"), tmp_path / "out", tmp_path / "m"
    job = spark_predict.SparkJob(
        model=trained["paths"]["model_dir"],
        input=str(src),
        output=str(out),
        text_column="text",
        batch_size=8,
        max_length=32,
        input_format="auto",
        output_format="parquet",
        master="local[2,4]",
        partitions=2,
        conf={},
        prefer_onnx=True,
        overwrite=False,
    )
    try:
        summary = spark_predict.run_spark_predict(job, scorer=FailOnceScorer(str(marker)))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists(), "the fault was injected"
    assert summary.failed_task_attempts >= 1
    assert summary.rows == len(frame) and summary.failed_rows == 0
    out_frame = read_output(out)
    assert out_frame["id"].is_unique
    assert_same_as_local(out_frame, frame, trained["paths"]["model_dir"])


@pytest.mark.slow
def test_prediction_log_is_read_by_monitor(
    trained: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    frame = inputs_frame()
    src, model = write_input(frame, tmp_path / "in.jsonl"), trained["paths"]["export_dir"]
    logs = tmp_path / "logs"
    flags = ["--engine", "spark", "--max-length", "32", "--log", str(logs)]
    code = cli.main(["predict", "-m", model, "-i", str(src), "-o", str(tmp_path / "o"), *flags])
    assert code == 0
    logged = predlog.read_log(logs, None)
    loaded = open_classifier(model)
    local_frame = predict.predict_frame(frame, loaded, max_length=32)
    predict.log_predictions(tmp_path / "local", local_frame, loaded, "text")
    local = predlog.read_log(tmp_path / "local", None)
    assert sorted(logged["text"]) == sorted(local["text"])
    merged = logged.drop_duplicates("text").merge(
        local.drop_duplicates("text"), on="text", suffixes=("", "_local")
    )
    for column in ("predicted", "status"):
        assert merged[column].tolist() == merged[f"{column}_local"].tolist()
    for got, want in zip(merged["probabilities"], merged["probabilities_local"], strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert set(logged["labels"].map(tuple)) == {tuple(LABELS)}


@pytest.mark.slow
def test_bad_inputs_fail_in_one_line_and_leave_nothing(
    trained: dict[str, Any], spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = trained["paths"]["model_dir"]
    out = tmp_path / "out"

    def fails(src: Path, message: str, *extra: str, model: str = model) -> None:
        caplog.clear()
        assert spark_cli(model, src, out, *extra) == 1
        assert message in caplog.text, caplog.text
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    no_text = tmp_path / "no_text.csv"
    no_text.write_text("id,message\n1,hello\n")
    fails(no_text, "no column 'text' (columns: ['id', 'message']); pass --text-column NAME")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": "no end\n')
    fails(broken, "broken.jsonl: cannot read it as jsonl")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    fails(corrupt, "corrupt.parquet: cannot read it as parquet")
    good = write_input(inputs_frame(), tmp_path / "good.csv")
    fails(
        good,
        "cannot load models:/no-such-model@champion",
        "--tracking-uri",
        trained["tracking"]["uri"],
        model="models:/no-such-model@champion",
    )
    fails(good, "neither a directory nor a models:/", model=str(tmp_path / "nope"))
    out.mkdir()
    (out / "keep").write_text("x")
    caplog.clear()
    assert spark_cli(model, good, out) == 1
    assert "out exists: pass --overwrite to replace it, or choose another -o" in caplog.text
    assert (out / "keep").exists()
    assert spark_cli(model, good, out, "--overwrite") == 0
    assert not (out / "keep").exists()
    assert len(read_output(out)) == len(inputs_frame())


@pytest.mark.slow
def test_several_input_files_come_out_in_their_order(
    trained: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    # one read of both would plan the larger file's task first: b.csv's rows before a.csv's
    model = trained["paths"]["model_dir"]
    small = pd.DataFrame({"id": ["a0", "a1"], "text": ["refund please", "login locked"]})
    large = pd.DataFrame(
        {"id": [f"b{i}" for i in range(40)], "text": [f"parcel {i} " * 20 for i in range(40)]}
    )
    folder = tmp_path / "in"
    folder.mkdir()
    write_input(small, folder / "a.csv")
    write_input(large, folder / "b.csv")
    for extra in ([], ["--partitions", "3"]):
        out = tmp_path / f"out{len(extra)}"
        assert spark_cli(model, folder, out, *extra) == 0
        assert read_output(out)["id"].tolist() == [*small["id"], *large["id"]]


@pytest.mark.slow
def test_a_failed_commit_puts_the_previous_output_back_and_logs_nothing(
    trained: dict[str, Any], spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, out, logs = trained["paths"]["model_dir"], tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    (out / "keep").write_text("x")
    good = write_input(inputs_frame(), tmp_path / "good.csv")
    rename = spark_predict.HadoopFs.rename

    def failing(self: Any, src: str, dst: str) -> None:
        if Path(dst.removeprefix("file:")).name == "out" and "replaced" not in src:
            raise OSError("disk full")
        rename(self, src, dst)

    monkeypatch.setattr(spark_predict.HadoopFs, "rename", failing)
    flags = ["--engine", "spark", "--max-length", "32", "--log", str(logs), "--overwrite"]
    assert cli.main(["predict", "-m", model, "-i", str(good), "-o", str(out), *flags]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep"], "the previous output is back"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no leftovers"
    assert not list(logs.rglob("*.parquet")), "rows of an output never written are not logged"
