"""Scheduled retraining: new raw data -> DVC data version -> ``dvc repro`` -> promotion gate.

``finetune retrain`` (cron, systemd timer, CI) does, holding the registry lock
(``finetune.registry.lock``: no promote or other registration meanwhile):

1. look for files matching ``retrain.incoming`` (default ``data/incoming/*.csv``) whose name and
   MD5 are not yet in the ledger ``paths.retrain_ledger``; none -> log and exit 0 at once;
2. append their rows to the raw dataset ``data.path`` (same columns; ids already present are
   skipped), so ``dvc repro`` sees a new data version and records its hash in ``dvc.lock``;
3. run ``dvc repro``, then register the trained model: a new version, the ``challenger``;
4. optionally ``dvc push`` data and models to the default DVC remote;
5. apply the promotion gate (``finetune.registry.gate.apply_gate``) and write its report;
6. record the files in the ledger.

``retrain.when`` (``--when``) says what else starts steps 3-6 when no file is new: ``drift``,
the last ``finetune monitor`` verdict (``paths.monitor_latest``) flagging drift that no retrain
has acted on yet (the ledger then records that verdict as handled); ``always``, every run. The
default ``new-data`` is the behaviour above.

Anything failing in steps 2-5, SIGTERM included, restores the raw file, leaves the ledger
unchanged (so the next run retries), leaves the champion alias where it was, and exits non-zero.
The raw file is read and appended as the pipeline reads it: ``data.format``, ``data.encoding``,
``data.delimiter`` (CSV, TSV or JSONL).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.core.errors import ConfigError, DataError, PipelineError
from finetune.core.io import atomic_path, file_md5
from finetune.core.schema import DataConfig, PipelineConfig, PromotionConfig, RetrainConfig
from finetune.data.label_sets import as_list
from finetune.lifecycle.dvccli import dvc_command, dvc_env
from finetune.registry.lock import exclusive_lock, lock_path
from finetune.registry.register import NO_REGISTER_VAR

log = logging.getLogger(__name__)

APPENDABLE = ("csv", "tsv", "jsonl")


class ReproFailed(PipelineError):
    """``dvc repro`` (or ``dvc push``) exited non-zero."""


# --------------------------------------------------------------------------- SIGTERM


class Terminated(PipelineError):
    """SIGTERM arrived during the retrain (a cancelled job, ``kill``, a stopped container)."""


class SigtermGuard:
    """What :func:`sigterm_as_error` yields: :meth:`held` defers SIGTERM over a short step that
    must finish once begun (recording the gate's decision in the ledger)."""

    def __init__(self) -> None:
        self.received = False
        self.holding = False
        self.deferred = False

    @contextmanager
    def held(self, what: str) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.deferred:
            raise Terminated(
                f"finetune retrain received SIGTERM while {what}; it finished that first, so "
                "the retrain is complete and recorded"
            )


@contextmanager
def sigterm_as_error() -> Iterator[SigtermGuard]:
    """SIGTERM raises Terminated in the main thread, so the retrain's cleanup runs (the raw
    file restored, the ledger left unchanged, ``dvc repro`` stopped) instead of the process
    dying mid-way with the rows appended and not recorded, to be appended again next time.
    Within :meth:`SigtermGuard.held` it is deferred to the end of that step. A second SIGTERM
    during the cleanup is logged, not obeyed. Outside the main thread (where Python cannot set
    handlers) nothing changes."""
    guard = SigtermGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return

    def terminate(signum: int, frame: Any) -> None:
        if guard.received:
            log.warning("SIGTERM again: still cleaning up after the first one")
            return
        guard.received = True
        if guard.holding:
            guard.deferred = True
            log.warning("SIGTERM: finishing the ledger first, then stopping")
            return
        raise Terminated(
            "finetune retrain received SIGTERM and stopped; nothing it did is kept (see below): "
            "run it again"
        )

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- new data


def read_ledger(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {"files": {}}
    try:
        ledger = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"retrain ledger {path} is not valid JSON ({exc}): fix or delete it"
        ) from exc
    ledger.setdefault("files", {})
    return ledger


def find_new_files(root: Path, pattern: str, ledger: Mapping[str, Any]) -> list[Path]:
    """Files matching ``pattern`` (relative to ``root``) whose name+MD5 the ledger lacks."""
    seen = ledger.get("files", {})
    new = []
    for path in sorted(root.glob(pattern)):
        name = str(path.relative_to(root))
        if not path.is_file():
            continue
        entry = seen.get(name)
        if entry is None or entry.get("md5") != file_md5(path):
            new.append(path)
    return new


@dataclass
class Ingested:
    path: str
    md5: str
    rows: int
    added: int
    skipped_ids: list[str] = field(default_factory=list)


def ingest(raw_path: Path, files: list[Path], data_cfg: DataConfig, root: Path) -> list[Ingested]:
    """Append the rows of ``files`` to ``raw_path`` (CSV, TSV or JSONL) in its column order.

    Both are read as the pipeline reads ``data.path``: ``data.format``, ``data.encoding`` and
    ``data.delimiter`` (found from the header when null); the rows are appended in the raw
    file's encoding with its separator. The incoming file must have the text and label columns
    (and the id column when the data has one); extra columns the raw data lacks are dropped,
    missing optional ones left empty. Rows whose id is already in the raw data (or earlier in
    this batch) are skipped.
    """
    import pandas as pd

    from finetune.data.sources import format_of, read_file, sniff_delimiter

    kind = format_of(raw_path, data_cfg.format)
    if kind not in APPENDABLE:
        raise ConfigError(
            f"data.path={raw_path} is {kind}, not CSV, TSV or JSONL: retrain appends new rows "
            "and supports only those; convert the raw data or append to it yourself"
        )
    encoding = data_cfg.encoding
    delimiter = data_cfg.delimiter
    if kind == "csv" and delimiter is None:
        delimiter = sniff_delimiter(raw_path, encoding)
    elif kind == "tsv" and delimiter is None:
        delimiter = "\t"
    raw = read_file(raw_path, kind, encoding, delimiter).to_pandas()
    label_col, id_col = data_cfg.label_column, data_cfg.id_column
    required = [*data_cfg.text_columns, label_col] + ([id_col] if id_col else [])
    known_ids = set(raw[id_col].astype(str)) if id_col and id_col in raw.columns else set()
    results = []
    frames = []
    for path in files:
        df = read_file(path, "auto", encoding, data_cfg.delimiter).to_pandas()
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {missing} (found {list(df.columns)}); incoming files "
                f"need the raw data's columns {list(raw.columns)} and are read with "
                f"data.encoding={encoding!r}, data.delimiter={data_cfg.delimiter!r}"
            )
        dropped = [c for c in df.columns if c not in raw.columns]
        if dropped:
            log.warning("%s: column(s) %s are not in %s; dropped", path, dropped, raw_path)
        df = df.reindex(columns=raw.columns)
        skipped: list[str] = []
        if id_col:
            ids = df[id_col].astype(str)
            dup = ids.isin(known_ids) | ids.duplicated(keep="first")
            skipped = ids[dup].tolist()
            if skipped:
                log.warning(
                    "%s: %d row(s) skipped, their id is already in the data: %s%s",
                    path,
                    len(skipped),
                    ", ".join(skipped[:5]),
                    " ..." if len(skipped) > 5 else "",
                )
            df = df[~dup]
            known_ids.update(df[id_col].astype(str))
        frames.append(df)
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        results.append(Ingested(rel, file_md5(path), len(df) + len(skipped), len(df), skipped))
    new_rows = pd.concat(frames, ignore_index=True) if frames else raw.iloc[:0]
    if len(new_rows):
        append_rows(raw_path, kind, new_rows, encoding, delimiter)
    return results


def append_rows(
    raw_path: Path, kind: str, rows: Any, encoding: str = "utf-8", delimiter: str | None = ","
) -> None:
    """Append without rewriting the existing bytes (a small, reviewable diff), in the file's
    ``encoding`` and, for CSV/TSV, with its ``delimiter``."""
    data = raw_path.read_bytes()
    # The new rows were read in the same encoding (ingest), so each of their characters fits it.
    with raw_path.open("a", encoding=encoding, newline="") as fh:
        if data and not data.endswith(b"\n"):
            fh.write("\n")
        if kind in {"csv", "tsv"}:
            rows.to_csv(fh, header=False, index=False, lineterminator="\n", sep=delimiter or ",")
        else:
            # label lists were read as text ("a␟b␟", finetune.data.sources): lists again
            rows = rows.map(as_list)
            rows.to_json(fh, orient="records", lines=True, force_ascii=False)
            fh.write("\n")
    log.info("appended %d row(s) to %s", len(rows), raw_path)


# --------------------------------------------------------------------------- running dvc


def run_dvc(root: Path, args: list[str], timeout_s: float) -> None:
    """Run ``dvc <args>`` in ``root`` with this interpreter's environment first on PATH. The
    train stage it runs does not register the model (:data:`NO_REGISTER_VAR`): the retrain
    registers it itself, under the registry lock it holds. Stopped (a timeout, SIGTERM), the
    command is sent SIGTERM and given 30 s to stop before it is killed."""
    env = dvc_env(**{NO_REGISTER_VAR: "finetune retrain registers the model itself"})
    command = dvc_command(*args)
    log.info("running: dvc %s", " ".join(args))
    began = time.perf_counter()
    with subprocess.Popen(command, cwd=root, env=env) as proc:
        try:
            returncode = proc.wait(timeout=timeout_s)
        except BaseException as exc:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise ReproFailed(
                    f"`dvc {' '.join(args)}` took longer than {timeout_s:g} s "
                    "(retrain.repro_timeout_s)"
                ) from exc
            raise
    if returncode != 0:
        raise ReproFailed(
            f"`dvc {' '.join(args)}` failed with exit code {returncode} (see its output above)"
        )
    log.info("dvc %s done in %.1f s", " ".join(args), time.perf_counter() - began)


# --------------------------------------------------------------------------- the command


@dataclass
class RetrainResult:
    status: str  # no-new-data | no-trigger | no-new-rows | promoted | kept | already-champion
    files: list[Ingested] = field(default_factory=list)
    challenger_version: str | None = None
    champion_version: str | None = None
    reason: str | None = None
    seconds: float = 0.0


def retrain(
    root: str | Path,
    cfg: PipelineConfig,
    spec: RetrainConfig | None = None,
    gate_spec: PromotionConfig | None = None,
) -> RetrainResult:
    """The whole retrain (see the module docstring). ``root`` is the repository (the cwd)."""
    from dataclasses import asdict

    began = time.perf_counter()
    root = Path(root).resolve()
    spec = spec or cfg.retrain
    paths = cfg.paths
    ledger_path = root / paths.retrain_ledger
    lock = lock_path(cfg.model_copy(update={"retrain": spec}), root)
    with exclusive_lock(lock, spec.lock_timeout_s), sigterm_as_error() as sigterm:
        ledger = read_ledger(ledger_path)
        new = find_new_files(root, spec.incoming, ledger)
        drift = (
            unhandled_drift(root / paths.monitor_latest, ledger) if spec.when == "drift" else None
        )
        if not new:
            if spec.when == "new-data" or (spec.when == "drift" and drift is None):
                status = "no-new-data" if spec.when == "new-data" else "no-trigger"
                log.info(
                    "no new data in %s%s: nothing to do",
                    spec.incoming,
                    "" if spec.when == "new-data" else " and no unhandled drift verdict",
                )
                return RetrainResult(status, seconds=time.perf_counter() - began)
            why = (
                "retrain.when is always"
                if drift is None
                else f"monitor flagged drift ({drift['summary']})"
            )
            log.warning(
                "no new labelled data, but %s: running dvc repro and the gate. With the same "
                "data, conf/ and code, dvc repro has nothing to retrain on: label the texts in "
                "the monitor's to_label.csv and put them in %s",
                why,
                spec.incoming,
            )
            result = _train_and_gate(root, cfg, spec, gate_spec, [])
            with sigterm.held("writing the ledger"):
                _write_ledger(ledger_path, ledger, [], result, root, drift)
            result.seconds = time.perf_counter() - began
            return result
        log.info("new data: %s", ", ".join(str(p.relative_to(root)) for p in new))
        method = cfg.data.split.method
        if method != "hash":
            log.warning(
                "data.split.method is %r: adding rows reshuffles the splits, so the new test "
                "split can hold the champion's training rows and flatter it in the gate; set "
                "data.split.method: hash to keep every text in its split as data grows",
                method,
            )
        raw_path = root / str(cfg.data.path)
        backup = raw_path.read_bytes() if raw_path.is_file() else None
        result, recorded = None, False
        try:
            files = ingest(raw_path, new, cfg.data, root)
            if sum(f.added for f in files) == 0:
                log.info("the new file(s) hold no rows that are not already in %s", raw_path)
                result = RetrainResult("no-new-rows", files)
            else:
                result = _train_and_gate(root, cfg, spec, gate_spec, files)
            # The gate has decided: the data it decided on and the ledger entry stay together
            with sigterm.held("writing the ledger"):
                _write_ledger(ledger_path, ledger, files, result, root, drift)
                recorded = True
        except BaseException:
            if recorded:  # a SIGTERM deferred over the ledger write: the retrain is complete
                raise
            # Also on SIGTERM (sigterm_as_error): the rows go, so the next run appends them once.
            if backup is not None:
                with atomic_path(raw_path) as staged:
                    staged.write_bytes(backup)
            log.error(
                "retrain failed: %s restored, ledger %s unchanged, %s",
                raw_path,
                ledger_path,
                "champion unchanged"
                if result is None or result.status == "no-new-rows"
                else f"the gate's decision stands ({result.status})",
            )
            raise
    result.seconds = time.perf_counter() - began
    log.info(
        "retrain %s in %.1f s: %s",
        result.status,
        result.seconds,
        json.dumps({k: v for k, v in asdict(result).items() if k != "files"}),
    )
    return result


def _train_and_gate(
    root: Path,
    cfg: PipelineConfig,
    spec: RetrainConfig,
    gate_spec: PromotionConfig | None,
    files: list[Ingested],
) -> RetrainResult:
    from finetune.registry.gate import apply_gate
    from finetune.registry.register import register_run, trained_run_id

    run_dvc(root, ["repro"], spec.repro_timeout_s)
    # Also when DVC restored `train` from its run cache: the model that matches the data (its
    # version is found, not registered twice). The retrain holds the registry lock.
    register_run(cfg, trained_run_id(cfg, root), locked=True)
    if spec.push:
        run_dvc(root, ["push"], spec.repro_timeout_s)
    gate = apply_gate(cfg, gate_spec, locked=True)
    if gate.decision is None:
        return RetrainResult(
            "already-champion", files, gate.challenger_version, gate.champion_after, gate.skipped
        )
    return RetrainResult(
        gate.decision.outcome,
        files,
        gate.challenger_version,
        gate.champion_after,
        gate.decision.reason,
    )


def unhandled_drift(latest_path: Path, ledger: dict[str, Any]) -> dict[str, Any] | None:
    """The last ``finetune monitor`` verdict when it flagged drift and no retrain acted on it
    yet (the ledger's ``drift_handled`` holds the verdict's MLflow run id)."""
    from finetune.core.io import read_json

    if not latest_path.is_file():
        return None
    try:
        latest = read_json(latest_path)
    except json.JSONDecodeError as exc:
        raise DataError(f"{latest_path} is not valid JSON ({exc}): rerun finetune monitor") from exc
    if not latest.get("drift") or latest.get("mlflow_run_id") == ledger.get("drift_handled"):
        return None
    return dict(latest)


def _write_ledger(
    path: Path,
    ledger: dict[str, Any],
    files: list[Ingested],
    result: RetrainResult,
    root: Path,
    drift: dict[str, Any] | None = None,
) -> None:
    from finetune.core.io import write_json
    from finetune.tracking import runs as tracking

    hashes = tracking.data_version(root / "dvc.lock", ("preprocess", "augment"))  # = run tag
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for item in files:
        ledger["files"][item.path] = {
            "md5": item.md5,
            "rows": item.rows,
            "rows_added": item.added,
            "ingested_at": now,
            "data_version": tracking.version_digest(hashes) if hashes else None,
            "outcome": result.status,
            "challenger_version": result.challenger_version,
            "champion_version": result.champion_version,
        }
    if drift is not None:  # this retrain acted on that verdict: the next one does not again
        ledger["drift_handled"] = drift.get("mlflow_run_id")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as staged:  # a crash mid-write leaves the previous ledger whole
        write_json(staged, ledger)
