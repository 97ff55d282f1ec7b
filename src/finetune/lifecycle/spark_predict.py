"""Batch scoring on Apache Spark: ``finetune predict --engine spark``.

The model is resolved once, on the driver: a local directory as it is (``models/model``,
``models/onnx``), a ``models:/`` or ``runs:/`` URI downloaded from the tracking store, with the
ONNX export of the same run preferred where one is registered (``predict.spark.prefer_onnx``:
no torch on the executors). It is wrapped in :class:`SparkScorer`, an MLflow pyfunc whose
``predict`` is local predict's own :func:`finetune.lifecycle.predict.predict_frame`, and scored
with :func:`mlflow.pyfunc.spark_udf` (``env_manager="local"``: the executors' Python must have
finetune-pipeline installed; MLflow ships the model to them). So every row gets what local
predict gives it: ``predicted``, ``confidence``, ``status`` and one ``prob_<label>`` per class,
the input columns kept, empty texts ``status=empty`` with nulls, long ones ``truncated``.

Input: CSV, TSV, JSONL or Parquet, a file, a directory or a glob (expanded as preprocess does),
or a URI Spark reads (``s3a://``, ``hdfs://``). Output: a directory of Parquet (or CSV) part
files in input order, with ``_SUCCESS`` and ``_SUMMARY.json`` (rows, seconds, rows/s, failed
rows, task attempts that failed and were retried). Nothing is half written: the job writes into
a hidden sibling directory through Spark's committer, the rows read back are counted against
the input's, and only then is it renamed to the output (an existing output is refused without
``--overwrite``). A task that dies (a lost executor, a killed Python worker) is retried by
Spark; its partial files are discarded by the committer.

The prediction log (``--log``) is written as local predict's (:mod:`finetune.monitoring.predlog`):
Parquet under ``date=YYYY-MM-DD/``, staged in a hidden directory and moved in when complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from finetune.core.errors import ConfigError, DataError, JobError, ModelNotFoundError
from finetune.core.labels import prob_columns
from finetune.data.sources import expand, format_of
from finetune.lifecycle import predict
from finetune.modeling.classifier import (
    URI_SCHEMES,
    Classifier,
    effective_max_length,
    kept_model_dir,
    open_classifier,
)

log = logging.getLogger(__name__)

SUMMARY_FILE = "_SUMMARY.json"
SUCCESS_FILE = "_SUCCESS"
OUTPUT_FORMATS = ("parquet", "csv")
MODEL_ARTIFACT = "model"
RESULT_COLUMN = "__finetune_result"
SUBMIT_GATEWAY = "PYSPARK_GATEWAY_PORT"  # set when spark-submit started this driver
ROW_COLUMN = "__finetune_row"
STATUS_COLUMN = "status"


@dataclass(frozen=True)
class SparkJob:
    """One ``finetune predict --engine spark`` run (the CLI fills it from flags + conf/predict)."""

    model: str
    input: str
    output: str
    text_column: str
    batch_size: int
    max_length: int | None
    input_format: str  # auto, csv, tsv, jsonl or parquet
    output_format: str  # parquet or csv (:func:`output_format` picks it)
    master: str
    partitions: int | None
    conf: dict[str, str]
    prefer_onnx: bool
    overwrite: bool
    tracking_uri: str | None = None
    log_dir: str | None = None


@dataclass
class SparkSummary:
    """What ``_SUMMARY.json`` holds and the run logs."""

    rows: int
    seconds: float
    rows_per_s: float
    failed_rows: int
    statuses: dict[str, int]
    failed_task_attempts: int
    model: str
    backend: str
    input: str
    input_files: int
    input_format: str
    output: str
    output_format: str
    master: str
    partitions: int
    stages: dict[str, float] = field(default_factory=dict)
    prediction_log: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- the model


class SparkScorer(mlflow.pyfunc.PythonModel):
    """What each Spark task runs: local predict's :func:`predict_frame` on a batch of texts.

    The model config holds ``batch_size``, ``max_length`` (resolved on the driver) and
    ``threads`` (ONNX Runtime / torch threads per task: ``spark.task.cpus``)."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        config = getattr(context, "model_config", None) or {}
        threads = int(config.get("threads") or 1)
        self.loaded = open_classifier(context.artifacts[MODEL_ARTIFACT], num_threads=threads)
        if self.loaded.backend == "pytorch":
            import torch

            torch.set_num_threads(threads)
        self.batch_size = int(config["batch_size"])
        self.max_length = int(config["max_length"])

    # model_input: the UDF's one unnamed column of texts, as a DataFrame. This model has no
    # signature (the UDF asks for the struct result_type it builds); MLflow infers none from
    # a DataFrame hint, and the hint stops its "add type hints" warning.
    def predict(  # type: ignore[no-untyped-def]
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        texts = model_input.iloc[:, 0] if isinstance(model_input, pd.DataFrame) else model_input
        frame = pd.DataFrame({"text": pd.Series(list(texts), dtype=object)})
        out = predict.predict_frame(frame, self.loaded, "text", self.batch_size, self.max_length)
        out = out.drop(columns=["text"])
        # MLflow casts a struct's string fields with astype(str), which makes None "None": an
        # empty text's missing label travels as "" and becomes null again on the Spark side.
        out["predicted"] = out["predicted"].fillna("")
        return out


@dataclass(frozen=True)
class ResolvedModel:
    directory: str  # a local directory predict.load reads
    description: str  # what scores: in the logs, the summary and the prediction log


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)/")


def _onnx_export(uri: str) -> tuple[str, str] | None:
    """The registered ONNX version exported from the same run as ``uri`` (the export stage logs
    it into the model's run), as (its URI, a description); None when there is none or ``uri``
    is one already."""
    client = mlflow.MlflowClient()
    models, runs = _MODELS_URI.match(uri), _RUNS_URI.match(uri)
    if models:
        name = models["name"]
        version = (
            client.get_model_version_by_alias(name, models["alias"])
            if models["alias"]
            else client.get_model_version(name, models["version"])
        )
        if (version.tags or {}).get("format") == "onnx":
            return None
        run_id = version.run_id
    elif runs:
        run_id = runs["run"]
    else:
        return None  # a stage name or another form: scored as given
    exports = [
        v
        for v in client.search_model_versions(f"run_id='{run_id}'")
        if (v.tags or {}).get("format") == "onnx"
    ]
    if not exports:
        return None
    best = max(exports, key=lambda v: int(v.version))
    variant = (best.tags or {}).get("variant", "onnx")
    return (
        f"models:/{best.name}/{best.version}",
        f"models:/{best.name}/{best.version} (ONNX {variant}, exported from {uri})",
    )


def _deployment_dir(local: str) -> str:
    """Inside a downloaded ONNX pyfunc, its deployment directory (read by ONNX Runtime with
    the task's thread count); any other MLflow model as it is."""
    from mlflow.models import Model

    from finetune.modeling.onnx_pyfunc import ARTIFACT_KEY

    flavor = Model.load(local).flavors.get("python_function", {})
    artifact = (flavor.get("artifacts") or {}).get(ARTIFACT_KEY)
    return str(Path(local) / artifact["path"]) if artifact else local


def resolve_model(
    source: str, tracking_uri: str | None, prefer_onnx: bool, workdir: Path
) -> ResolvedModel:
    """A local directory for ``source``: a directory as it is; a ``models:/`` or ``runs:/``
    URI downloaded into ``workdir`` (its ONNX export instead, with ``prefer_onnx``)."""
    if not source.startswith(URI_SCHEMES):  # the model itself, not a pointer to it
        return ResolvedModel(str(Path(kept_model_dir(source)).absolute()), source)
    from mlflow.exceptions import MlflowException

    from finetune.core import store

    mlflow.set_tracking_uri(store.tracking_uri(tracking_uri))
    uri, description = source, source
    try:
        onnx = _onnx_export(source) if prefer_onnx else None
        if onnx is not None:
            uri, description = onnx
            log.info("%s: scoring with its registered ONNX export %s", source, uri)
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir))
    except (MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"cannot load {source}: {reason}") from exc
    return ResolvedModel(_deployment_dir(local), description)


def save_scorer(
    resolved: ResolvedModel,
    batch_size: int,
    max_length: int,
    threads: int,
    directory: Path,
    scorer: mlflow.pyfunc.PythonModel | None = None,
) -> str:
    """The pyfunc the UDF runs, saved in ``directory`` with the model's files inside it."""
    from finetune import __version__

    path = directory / "scorer"
    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=scorer or SparkScorer(),
        artifacts={MODEL_ARTIFACT: resolved.directory},
        model_config={"batch_size": batch_size, "max_length": max_length, "threads": threads},
        pip_requirements=[f"finetune-pipeline=={__version__}"],  # not inferred: env is local
    )
    return str(path)


# --------------------------------------------------------------------------- Spark


def _reason(exc: BaseException) -> str:
    """One line out of a Spark/py4j error: the Python error a task raised, else the first line."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    python = [x for x in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", x)]
    if python and "PythonException" in text:
        return python[-1][:500]
    for line in lines:
        if not line.startswith(("An error occurred while calling", "JVM stacktrace")):
            return line.removeprefix(": ")[:500]
    return type(exc).__name__


def start_session(master: str, conf: dict[str, str]) -> tuple[Any, bool]:
    """The active SparkSession (True: started here, to stop when done)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "--engine spark needs pyspark: pip install 'finetune-pipeline[spark]' "
            "(and Java 17+, e.g. apt-get install openjdk-17-jre-headless)"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info(
            "using the running Spark session (master %s); --master and --conf apply to a new one",
            active.sparkContext.master,
        )
        return active, False
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise ConfigError(
            "Spark needs Java 17+: apt-get install openjdk-17-jre-headless, or set JAVA_HOME"
        )
    if "PYSPARK_PYTHON" not in os.environ and SUBMIT_GATEWAY not in os.environ:
        # the tasks' interpreter (PySpark reads only this; spark-submit sets it from its conf)
        if master.startswith("local"):
            os.environ["PYSPARK_PYTHON"] = sys.executable
        else:
            log.warning(
                "PYSPARK_PYTHON is not set: the executors run `python3`, which must have "
                "finetune-pipeline installed (set PYSPARK_PYTHON to the interpreter that has it)"
            )
    builder = SparkSession.builder.appName("finetune predict")
    if SUBMIT_GATEWAY in os.environ:  # under spark-submit: its --master decides
        log.info("started by spark-submit: its master is used, not %s", master)
    else:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up errors of many types
        raise JobError(f"cannot start Spark (master {master}): {_reason(exc)}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


class HadoopFs:
    """Exists/rename/delete/list/write through Hadoop's FileSystem: the same calls for a
    local path, HDFS or S3 (``s3a://``), as Spark itself writes there."""

    def __init__(self, spark: Any, path: str) -> None:
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self.fs = self._path(path).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._path(path)))

    def rename(self, src: str, dst: str) -> None:
        if not self.fs.rename(self._path(src), self._path(dst)):
            raise JobError(f"could not rename {src} to {dst}")

    def delete(self, path: str) -> None:
        self.fs.delete(self._path(path), True)

    def mkdirs(self, path: str) -> None:
        self.fs.mkdirs(self._path(path))

    def names(self, path: str) -> list[str]:
        return [s.getPath().getName() for s in self.fs.listStatus(self._path(path))]

    def write_text(self, path: str, text: str) -> None:
        stream = self.fs.create(self._path(path), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()


class StageProgress:
    """A line per finished Spark stage of this run's job group (polled from the status
    tracker), and the task attempts that failed (and were retried)."""

    def __init__(self, spark: Any, group: str) -> None:
        self.sc, self.group = spark.sparkContext, group
        self.phase = "start"
        self.done: set[int] = set()
        self.seen: dict[int, float] = {}  # stage -> when it was first seen running
        self.failed: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="spark-progress", daemon=True)

    def __enter__(self) -> StageProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    @property
    def failed_attempts(self) -> int:
        return sum(self.failed.values())

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def poll(self) -> None:
        with self._lock:  # the thread and a phase's end
            self._poll()

    def _poll(self) -> None:
        tracker = self.sc.statusTracker()
        for job_id in tracker.getJobIdsForGroup(self.group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                info = tracker.getStageInfo(stage_id)
                if info is None:
                    continue
                self.failed[stage_id] = max(self.failed.get(stage_id, 0), info.numFailedTasks)
                if stage_id in self.done or not info.numTasks:
                    continue
                self.seen.setdefault(stage_id, time.monotonic())
                if info.numCompletedTasks >= info.numTasks:
                    self.done.add(stage_id)
                    log.info(
                        "spark predict [%s]: stage %d finished: %d task(s), %d failed attempt(s) "
                        "retried, %.1f s",
                        self.phase,
                        stage_id,
                        info.numTasks,
                        info.numFailedTasks,
                        time.monotonic() - self.seen[stage_id],
                    )


# --------------------------------------------------------------------------- input and output


def _is_uri(path: str) -> bool:
    return "://" in path


def input_files(path: str, fmt: str) -> tuple[list[str], str]:
    """The files Spark reads and their one format: a local file, directory or glob expanded
    as preprocess does; a URI (``s3a://``, ``hdfs://``) as it is."""
    if _is_uri(path):
        return [path], format_of(Path(path.rstrip("/")), fmt, setting="--input-format")
    files = expand(path, fmt, setting="--input")
    kinds = {format_of(f, fmt, setting="--input-format") for f in files}
    if len(kinds) > 1:
        raise DataError(
            f"{path} holds {', '.join(sorted(kinds))} files: score one format at a time "
            f"(a glob such as {Path(path) / '*.parquet'}, or --input-format)"
        )
    return [str(f.absolute()) for f in files], kinds.pop()


def _json_key_order(path: str) -> list[str]:
    """The keys of a local JSONL file's first record, in order (Spark sorts them)."""
    if _is_uri(path):
        return []
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return []
                return list(record) if isinstance(record, dict) else []
    return []


def read_frame(spark: Any, files: list[str], kind: str, source: str, text_column: str) -> Any:
    """The input as a Spark DataFrame (CSV/TSV all strings, as local predict reads them);
    a file Spark cannot read, or no text column: a DataError naming ``source``. Several files
    are read one by one and joined by name in the order given: one read of them all would plan
    its tasks by file size, largest first, and the output would not follow the input."""
    from functools import reduce

    try:
        frames = [_read_one(spark, path, kind) for path in files]
        df = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
        columns = list(df.columns)
    except Exception as exc:  # AnalysisException, Py4JJavaError ...: the reader's own words
        raise DataError(f"{source}: cannot read it as {kind}: {_reason(exc)}") from exc
    if text_column not in columns:
        raise predict.no_text_column(source, text_column, columns)
    return df


def _read_one(spark: Any, path: str, kind: str) -> Any:
    reader = spark.read
    if kind in {"csv", "tsv"}:
        return (
            reader.options(
                header=True,
                multiLine=True,  # quoted newlines, as pandas reads them
                escape='"',
                sep="\t" if kind == "tsv" else ",",
                mode="FAILFAST",
            )
            .csv(path)
            .fillna("")  # an empty cell is "" (Spark reads null), as local predict keeps it
        )
    if kind == "jsonl":
        df = reader.option("mode", "FAILFAST").json(path)
        first = [c for c in _json_key_order(path) if c in df.columns]
        return df.select(*first, *[c for c in df.columns if c not in first])
    return reader.parquet(path)


def _ordered(df: Any, partitions: int) -> Any:
    """``df`` in ``partitions`` tasks, keeping the input order: ranges of a row id, one per
    task (part files in order), sorted inside each."""
    from pyspark.sql import functions as F

    return (
        df.withColumn(ROW_COLUMN, F.monotonically_increasing_id())
        .repartitionByRange(partitions, ROW_COLUMN)
        .sortWithinPartitions(ROW_COLUMN)
    )


def score_frame(df: Any, udf: Any, text_column: str, labels: list[str]) -> Any:
    """``df`` plus local predict's columns, from the UDF's struct."""
    from pyspark.sql import functions as F

    result = F.col(RESULT_COLUMN)
    scored = df.withColumn(RESULT_COLUMN, udf(F.col(text_column).cast("string")))
    predicted = result["predicted"]
    added = {
        "predicted": F.when(predicted == "", None).otherwise(predicted),
        "confidence": F.nanvl(result["confidence"], F.lit(None)),
        STATUS_COLUMN: result[STATUS_COLUMN],
        **{c: F.nanvl(result[c], F.lit(None)) for c in prob_columns(labels)},
    }
    scored = scored.withColumns(added).drop(RESULT_COLUMN)
    return scored.drop(ROW_COLUMN) if ROW_COLUMN in scored.columns else scored


def result_type(labels: list[str]) -> Any:
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    return StructType(
        [
            StructField("predicted", StringType()),
            StructField("confidence", DoubleType()),
            StructField(STATUS_COLUMN, StringType()),
            *[StructField(c, DoubleType()) for c in prob_columns(labels)],
        ]
    )


def _read_output(spark: Any, path: str, fmt: str) -> Any:
    if fmt == "csv":
        return spark.read.options(header=True, multiLine=True, escape='"').csv(path)
    return spark.read.parquet(path)


def _write(df: Any, path: str, fmt: str) -> None:
    writer = df.write.mode("errorifexists")
    if fmt == "csv":  # cells as they are (Spark's CSV writer trims them by default)
        writer.options(
            header=True, escape='"', ignoreLeadingWhiteSpace=False, ignoreTrailingWhiteSpace=False
        ).csv(path)
    else:
        writer.parquet(path)


def check_output(spark: Any, written: Any, expected_rows: int, path: str) -> dict[str, Any]:
    """Rows per status and failed rows (a non-empty text without a prediction) in what was
    written; a JobError if it holds other than ``expected_rows`` rows."""
    from pyspark.sql import functions as F

    failed = (F.col(STATUS_COLUMN).isNull()) | (
        (F.col(STATUS_COLUMN) != predict.STATUS_EMPTY) & F.col("predicted").isNull()
    )
    rows = (
        written.groupBy(STATUS_COLUMN)
        .agg(F.count(F.lit(1)).alias("n"), F.sum(failed.cast("long")).alias("failed"))
        .collect()
    )
    statuses = {str(r[STATUS_COLUMN]): int(r["n"]) for r in rows}
    total = sum(statuses.values())
    if total != expected_rows:
        raise JobError(
            f"the job wrote {total} rows for {expected_rows} input rows into {path}: nothing "
            "committed; run it again"
        )
    return {"statuses": statuses, "failed_rows": sum(int(r["failed"] or 0) for r in rows)}


def _sibling(path: str, tag: str) -> str:
    """A hidden name next to ``path`` (same file system: the rename is a move)."""
    head, _, name = path.rstrip("/").rpartition("/")
    return f"{head}/.{name}.{tag}-{uuid.uuid4().hex[:12]}"


def output_format(path: str, fmt: str | None, configured: str) -> str:
    """parquet or csv: ``fmt``; auto/None: csv for a name ending .csv, else ``configured``."""
    if fmt in (None, "auto"):
        return "csv" if path.rstrip("/").lower().endswith(".csv") else configured
    if fmt not in OUTPUT_FORMATS:
        raise DataError(
            f"--output-format {fmt} is not one --engine spark writes: use {OUTPUT_FORMATS}"
        )
    return fmt


def write_prediction_log(
    spark: Any,
    fs: HadoopFs,
    written: Any,
    log_dir: str,
    text_column: str,
    labels: list[str],
    model: str,
    now: datetime,
) -> str:
    """The scored rows appended to the prediction log as local predict appends them
    (:func:`finetune.monitoring.predlog.append`: the text stripped, probabilities as a list,
    null for an empty text), under ``date=<today>/``; returns that directory."""
    from pyspark.sql import functions as F

    probs = [F.col(c).cast("double") for c in prob_columns(labels)]
    table = written.select(
        F.lit(now).cast("timestamp").alias("time"),
        F.coalesce(
            F.regexp_replace(F.col(text_column).cast("string"), r"(?U)^\s+|\s+$", ""), F.lit("")
        ).alias("text"),
        F.col("predicted"),
        F.col("confidence").cast("double").alias("confidence"),
        F.when(F.col("predicted").isNull(), None).otherwise(F.array(*probs)).alias("probabilities"),
        F.array(*[F.lit(label) for label in labels]).alias("labels"),
        F.lit(model).alias("model"),
        F.col(STATUS_COLUMN),
    )
    staging = f"{log_dir.rstrip('/')}/.spark-{uuid.uuid4().hex[:12]}"
    previous = spark.conf.get("spark.sql.parquet.outputTimestampType")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # as pyarrow
    moved: list[str] = []
    try:
        table.write.parquet(staging)
        day = f"{log_dir.rstrip('/')}/date={now:%Y-%m-%d}"
        fs.mkdirs(day)
        for name in fs.names(staging):
            if name.endswith(".parquet") and not name.startswith((".", "_")):
                fs.rename(f"{staging}/{name}", f"{day}/{name}")
                moved.append(f"{day}/{name}")
    except Exception:
        for path in moved:  # all of this output's rows in the log, or none
            fs.delete(path)
        raise
    finally:
        spark.conf.set("spark.sql.parquet.outputTimestampType", previous)
        fs.delete(staging)
    return day


# --------------------------------------------------------------------------- the run


@contextmanager
def _phase(progress: StageProgress, stages: dict[str, float], name: str) -> Iterator[None]:
    progress.phase = name
    began = time.perf_counter()
    yield
    progress.poll()  # this phase's last stages are reported under its name
    stages[name] = round(time.perf_counter() - began, 3)
    log.info("spark predict: %s done in %.1f s", name, stages[name])


def _exists(output: str) -> DataError:
    return DataError(f"{output} exists: pass --overwrite to replace it, or choose another -o")


def _absolute(path: str) -> str:
    return path if _is_uri(path) else str(Path(path).absolute())


def run_spark_predict(
    job: SparkJob, scorer: mlflow.pyfunc.PythonModel | None = None
) -> SparkSummary:
    """Score ``job.input`` into ``job.output`` on Spark (see the module doc). ``scorer``: the
    pyfunc the tasks run (default :class:`SparkScorer`; tests pass one that fails once)."""
    began = time.perf_counter()
    files, kind = input_files(job.input, job.input_format)
    out_fmt = output_format(job.output, job.output_format, job.output_format)
    output = _absolute(job.output)
    if not _is_uri(output) and Path(output).exists() and not job.overwrite:
        raise _exists(job.output)  # before the model and Spark start
    with tempfile.TemporaryDirectory(prefix="finetune-spark-") as tmp:
        resolved = resolve_model(job.model, job.tracking_uri, job.prefer_onnx, Path(tmp))
        loaded = open_classifier(resolved.directory)  # fails here, before Spark, if it cannot
        max_length = effective_max_length(loaded, job.max_length)
        spark, started = start_session(job.master, job.conf)
        try:
            threads = int(spark.conf.get("spark.task.cpus", "1"))
            scorer_dir = save_scorer(
                resolved, job.batch_size, max_length, threads, Path(tmp), scorer
            )
            return _run(
                spark, job, files, kind, output, out_fmt, resolved, loaded, scorer_dir, began
            )
        finally:
            if started:
                spark.stop()


def _run(
    spark: Any,
    job: SparkJob,
    files: list[str],
    kind: str,
    output: str,
    out_fmt: str,
    resolved: ResolvedModel,
    loaded: Classifier,
    scorer_dir: str,
    began: float,
) -> SparkSummary:
    fs = HadoopFs(spark, output)
    if fs.exists(output) and not job.overwrite:
        raise _exists(job.output)
    staging = _sibling(output, "spark")
    group = f"finetune-predict-{uuid.uuid4().hex[:8]}"
    spark.sparkContext.setJobGroup(group, f"finetune predict {job.input} -> {job.output}")
    stages: dict[str, float] = {}
    with StageProgress(spark, group) as progress:
        try:
            with _phase(progress, stages, "read"):
                df = read_frame(spark, files, kind, job.input, job.text_column)
                rows = df.count()
                partitions = job.partitions or max(
                    df.rdd.getNumPartitions(), spark.sparkContext.defaultParallelism
                )
                if partitions != df.rdd.getNumPartitions():
                    df = _ordered(df, partitions)
                log.info(
                    "spark predict: %d rows from %d %s file(s), %d partition(s); model %s (%s)",
                    rows,
                    len(files),
                    kind,
                    partitions,
                    resolved.description,
                    loaded.backend,
                )
            with _phase(progress, stages, "score"):
                udf = mlflow.pyfunc.spark_udf(
                    spark, scorer_dir, result_type=result_type(loaded.labels), env_manager="local"
                )
                _write(score_frame(df, udf, job.text_column, loaded.labels), staging, out_fmt)
            with _phase(progress, stages, "check"):
                if not fs.exists(f"{staging}/{SUCCESS_FILE}"):
                    raise JobError(f"the job left no {SUCCESS_FILE} in {staging}: not committed")
                checked = check_output(
                    spark, _read_output(spark, staging, out_fmt), rows, job.output
                )
            _commit(fs, staging, output)  # a previous output is back in place if this fails
        except (DataError, JobError, ModelNotFoundError):
            fs.delete(staging)
            raise
        except Exception as exc:  # a failed Spark job: its reason in one line, nothing kept
            fs.delete(staging)
            reason = _reason(exc)
            if re.search(r"MALFORMED_RECORD|FAILED_READ_FILE|Malformed|CANNOT_READ", str(exc)):
                raise DataError(f"{job.input}: cannot read it as {kind}: {reason}") from exc
            raise JobError(f"the Spark job failed, nothing written: {reason}") from exc
        log_day = None
        if job.log_dir is not None:  # only rows of an output that was committed are logged
            with _phase(progress, stages, "log"):
                try:
                    log_day = write_prediction_log(
                        spark,
                        HadoopFs(spark, _absolute(job.log_dir)),
                        _read_output(spark, output, out_fmt),
                        _absolute(job.log_dir),
                        job.text_column,
                        loaded.labels,
                        resolved.description,
                        datetime.now(UTC),
                    )
                except Exception as exc:  # the output stands; say the log does not have it
                    raise JobError(
                        f"{job.output} is written, but appending it to the prediction log "
                        f"{job.log_dir} failed (nothing of it was logged): {_reason(exc)}"
                    ) from exc
    seconds = time.perf_counter() - began
    summary = SparkSummary(
        rows=rows,
        seconds=round(seconds, 3),
        rows_per_s=round(rows / seconds, 1) if seconds else 0.0,
        failed_rows=checked["failed_rows"],
        statuses=checked["statuses"],
        failed_task_attempts=progress.failed_attempts,
        model=resolved.description,
        backend=loaded.backend,
        input=job.input,
        input_files=len(files),
        input_format=kind,
        output=job.output,
        output_format=out_fmt,
        master=spark.sparkContext.master,
        partitions=partitions,
        stages=stages,
        prediction_log=log_day,
    )
    fs.write_text(f"{output}/{SUMMARY_FILE}", json.dumps(summary.as_dict(), indent=2) + "\n")
    log.info(
        "spark predict: %d rows in %.1f s (%.1f rows/s), %d failed row(s), %d task attempt(s) "
        "retried; %s written to %s",
        summary.rows,
        summary.seconds,
        summary.rows_per_s,
        summary.failed_rows,
        summary.failed_task_attempts,
        out_fmt,
        job.output,
    )
    return summary


def _commit(fs: HadoopFs, staging: str, output: str) -> None:
    """``staging`` becomes ``output``; a previous output (--overwrite) is moved aside first,
    put back if the rename fails, and deleted after."""
    old = None
    if fs.exists(output):
        old = _sibling(output, "replaced")
        fs.rename(output, old)
    try:
        fs.rename(staging, output)
    except Exception:
        if old is not None:
            fs.rename(old, output)
        raise
    if old is not None:
        fs.delete(old)
