"""Batch scoring: local ``finetune predict`` (ONNX int8) against ``--engine spark``, same texts.

    python bench/batch_predict.py [--model DIR] [--rows 100000] [--master local[2]] [--cluster]

Texts: sst2's train sentences (../shared/datasets/sst2/train.csv), repeated up to ``--rows``,
as one CSV (id, text). The model: ``--model`` (an ONNX deployment directory such as models/onnx,
or a PyTorch model directory exported here to int8 with the export stage's functions); without
it, all-MiniLM-L6-v2 (the default backbone, from its offline wheel) with an untrained 2-class
head, exported to int8: the demo model's size and speed, not its answers.

Rows of the table, each one `finetune` process as a user runs it (wall time, rows/s, peak
memory of its whole process tree: the JVM and the Python workers included):

- ``local``: ``finetune predict`` (one process, ONNX Runtime on every core);
- ``spark <master>``: ``--engine spark --master local[2]`` (two tasks at once, one thread each);
- with ``--cluster``: a standalone cluster started here (``spark-class`` master and two workers
  on 127.0.0.1, one core each) and ``--master spark://127.0.0.1:<port>``.

Each Spark output is compared row by row with the local one: same ids in the same order,
labels, statuses and the largest probability difference (equal within 1e-5 expected: a
dynamically quantized int8 graph scores each text alone, whatever ``--batch-size`` says, so
a text's output does not depend on which texts share its batch or its Spark task). The last
line is JSON.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from _common import REPO, SST2, cpu_flags, setup_logging

log = logging.getLogger("bench")
BIN = Path(sys.executable).parent
LABEL_COLUMNS = ("predicted", "status")


def texts(rows: int) -> tuple[pd.DataFrame, str]:
    """``rows`` sst2 train sentences (repeated when it has fewer), with an id column."""
    source = SST2 / "train.csv"
    pool = pd.read_csv(source)["text"].dropna().astype(str).tolist()
    picked = [pool[i % len(pool)] for i in range(rows)]
    note = f"sst2 train.csv: {rows} sentences" + (
        f" ({len(pool)} distinct, repeated)" if rows > len(pool) else ""
    )
    return pd.DataFrame({"id": [f"r{i}" for i in range(rows)], "text": picked}), note


def untrained_minilm(dest: Path) -> Path:
    """The configured backbone (params.yaml's model section: its pooling too) with a fresh
    2-class head, saved as the train stage saves a model (max length 128 where it is auto)."""
    from finetune.core.config import load_config
    from finetune.modeling.backbones import load_classifier
    from finetune.modeling.tokens import load_tokenizer

    spec = load_config(REPO).model
    model = load_classifier(spec.name_or_path, ["negative", "positive"], spec.pooling)
    tokenizer = load_tokenizer(spec.name_or_path)
    tokenizer.model_max_length = 128 if spec.max_length == "auto" else int(spec.max_length)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def int8_dir(model_dir: Path, work: Path) -> Path:
    """``model_dir`` exported to ONNX, optimised and quantized to int8 (per tensor) as the
    export stage does, with params.yaml's export settings; an ONNX directory as it is."""
    from finetune.core.config import load_config
    from finetune.export import onnx_export as ox
    from finetune.export.export import bundle, make_variants
    from finetune.modeling.backbones import load_trained
    from finetune.modeling.onnx_runtime import ONNX_FILE, is_onnx_dir

    if is_onnx_dir(model_dir):
        return model_dir
    out = bundle(model_dir, work / "onnx")
    model, tokenizer = load_trained(model_dir)
    model.set_attn_implementation("eager")
    spec = load_config(REPO).export
    ox.export_onnx(model, tokenizer, work / "raw.onnx", spec.opset)
    made = make_variants(
        work / "raw.onnx",
        work,
        model.config,
        spec.model_copy(update={"variants": ["int8"]}),
        gpu=False,
    )
    shutil.copy2(made["int8"][0], out / ONNX_FILE)
    return out


class PeakMemory:
    """The largest total RSS of a process and its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.root, self.peak = psutil.Process(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak MiB) of one ``finetune`` command; fails loudly when it fails."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "finetune"), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    memory = PeakMemory(proc.pid)
    output, _ = proc.communicate()
    seconds, peak = time.perf_counter() - began, memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"finetune {' '.join(args)} failed ({proc.returncode}):\n{output}")
    for line in output.splitlines():
        if "spark predict" in line or "predicted" in line:
            log.info("  %s", line)
    return seconds, peak


def read_spark(path: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(f) for f in sorted(path.glob("part-*.parquet"))], ignore_index=True
    )


def compare(local: pd.DataFrame, other: pd.DataFrame) -> dict[str, Any]:
    """Row by row: same ids in the same order, labels and statuses, largest probability gap."""
    probs = [c for c in local.columns if c.startswith("prob_")]
    same_order = local["id"].tolist() == other["id"].tolist()
    labels = (local["predicted"].fillna("") == other["predicted"].fillna("")).to_numpy()
    status = (local["status"] == other["status"]).to_numpy()
    gap = np.nanmax(np.abs(local[probs].to_numpy(float) - other[probs].to_numpy(float)))
    return {
        "rows": len(other),
        "same_order": same_order,
        "labels_identical": int(labels.sum()),
        "labels_differ": int((~labels).sum()),
        "status_identical": bool(status.all()),
        "max_prob_diff": float(gap),
        "within_1e-5": bool(gap <= 1e-5 and labels.all()),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def start_cluster(work: Path, workers: int = 2) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A standalone master and ``workers`` one-core workers on 127.0.0.1."""
    home = spark_home()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(work / "logs")}
    env["PYSPARK_PYTHON"] = sys.executable
    port = free_port()
    master = f"spark://127.0.0.1:{port}"
    cls = str(home / "bin" / "spark-class")
    procs = []

    def start(name: str, *argv: str) -> None:
        log_file = (work / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [cls, *argv],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
          "--port", str(port), "--webui-port", str(free_port()))  # fmt: skip
    time.sleep(8)
    for i in range(workers):
        start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
              "--cores", "1", "--memory", "2g", "--webui-port", str(free_port()),
              "--work-dir", str(work / f"worker{i}"), master)  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        registered = (work / "master.log").read_text(errors="replace").count("Registering worker")
        if registered >= workers:
            return master, procs
        time.sleep(1)
    stop_cluster(procs)
    raise SystemExit(f"the workers did not register in 90 s: see {work / 'master.log'}")


def stop_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    import signal

    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX or PyTorch model directory (default: see above)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cluster", action="store_true", help="also a 2-worker standalone run")
    parser.add_argument("--keep", help="keep the inputs and outputs in this directory")
    args = parser.parse_args()
    setup_logging()

    # absolute before the chdir to the repository below; removed however the run ends
    work = Path(args.keep).absolute() if args.keep else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.model:
        args.model = Path(args.model).absolute()
    try:
        os.environ["PYSPARK_PYTHON"] = sys.executable
        model_note = str(args.model or "all-MiniLM-L6-v2 + untrained 2-class head (speed only)")
        source = args.model if args.model else untrained_minilm(work / "model")
        onnx = int8_dir(source, work)
        frame, note = texts(args.rows)
        src = work / "texts.csv"
        frame.to_csv(src, index=False)
        common = ["-m", str(onnx), "--batch-size", str(args.batch_size), "--no-log"]
        rows: list[dict[str, Any]] = []
        comparisons: dict[str, Any] = {}

        def record(name: str, seconds: float, peak: float) -> None:
            rows.append(
                {
                    "engine": name,
                    "rows": args.rows,
                    "seconds": round(seconds, 1),
                    "rows_per_s": round(args.rows / seconds, 1),
                    "peak_mib": round(peak),
                }
            )
            log.info("%s", rows[-1])

        os.chdir(REPO)  # --engine spark reads conf/predict from the repository
        seconds, peak = run(["predict", *common, "-i", str(src), "-o", str(work / "local.csv")])
        record("local (ONNX int8, 1 process)", seconds, peak)
        local = pd.read_csv(work / "local.csv")

        out = work / "spark"
        spark_args = ["predict", "--engine", "spark", *common, "-i", str(src), "-o", str(out)]
        seconds, peak = run([*spark_args, "--master", args.master, "--overwrite"])
        record(f"spark {args.master}", seconds, peak)
        comparisons[f"spark {args.master}"] = compare(local, read_spark(out))
        summary = json.loads((out / "_SUMMARY.json").read_text())

        if args.cluster:
            master, procs = start_cluster(work / "cluster")
            try:
                cluster_out = work / "cluster_out"
                cluster = ["--master", master, "--overwrite", "--conf", "spark.executor.memory=1g"]
                cluster += ["--conf", "spark.driver.host=127.0.0.1"]
                seconds, peak = run([*spark_args[:-1], str(cluster_out), *cluster])
            finally:
                stop_cluster(procs)
            name = "spark standalone, 2 workers x 1 core"
            record(name, seconds, peak)
            comparisons[name] = compare(local, read_spark(cluster_out))
            comparisons[name]["vs_spark_local_identical"] = bool(
                read_spark(cluster_out).equals(read_spark(out))
            )

        table = pd.DataFrame(rows)
        print(
            f"\n{note}; model {model_note}, ONNX int8 {onnx}; --batch-size {args.batch_size} "
            "(the int8 graph scores one text per run)"
        )
        print(f"CPU: {cpu_flags()}\n")
        print(table.to_string(index=False))
        print()
        print(pd.DataFrame(comparisons).T.to_string())
        result = {
            "texts": note,
            "model": model_note,
            "batch_size": args.batch_size,
            "cpu": cpu_flags(),
            "runs": rows,
            "comparisons": comparisons,
            "spark_summary": {k: summary[k] for k in ("rows", "seconds", "rows_per_s", "stages")},
            "spark_overhead_s": round(rows[1]["seconds"] - rows[0]["seconds"], 1),
        }
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
