"""The team stack as one unit: ``up`` starts PostgreSQL, the S3 store and the MLflow server (in
that order, each waited for until healthy; one already running is left alone), writes the
environment a shell should export, and ``down`` stops them in reverse order. The data of each
stays in the services directory across down/up cycles.

Layout of the services directory (``paths.services_dir``)::

    postgres/data/   postgres/postgres.log      the cluster (pg_ctl keeps its own pid file)
    s3/data/  s3/s3.json  s3.log  s3.pid        SeaweedFS's volumes and filer, its access keys
    mlflow/  mlflow.log  mlflow.pid             the tracking server
    env                                         `export NAME=value` lines (what `up` printed)
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from finetune.core.io import atomic_path
from finetune.core.schema import ServicesConfig
from finetune.services import mlflow_server, objectstore, postgres
from finetune.services.process import (
    Managed,
    require_free,
    terminate,
    wait_healthy,
)

log = logging.getLogger(__name__)

ENV_FILE = "env"
DVC_PREFIX = "dvc"  # s3://<bucket>/dvc: DVC's `s3` remote (.dvc/config)


@dataclass(frozen=True)
class Layout:
    """Where each server keeps its data, log and pid under the services directory."""

    root: Path

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def s3_dir(self) -> Path:
        return self.root / "s3"

    @property
    def s3(self) -> Managed:
        return Managed("SeaweedFS S3", self.root / "s3.pid", self.root / "s3.log")

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow(self) -> Managed:
        return Managed("MLflow server", self.root / "mlflow.pid", self.root / "mlflow.log")

    @property
    def env_file(self) -> Path:
        return self.root / ENV_FILE

    @property
    def lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".lock")


def client_env(cfg: ServicesConfig) -> dict[str, str]:
    """What a client shell exports: MLflow's tracking URI (artifacts go through the server, so
    no S3 keys for MLflow), and the endpoint and keys DVC's ``s3`` remote reads."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri(cfg),
        "AWS_ENDPOINT_URL_S3": objectstore.endpoint(cfg.s3, cfg.host),
        "AWS_ACCESS_KEY_ID": cfg.s3.access_key,
        "AWS_SECRET_ACCESS_KEY": cfg.s3.secret_key,
        "AWS_DEFAULT_REGION": cfg.s3.region,
    }


def env_lines(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def up(cfg: ServicesConfig, root: Path) -> dict[str, str]:
    """Start what is not running, wait until all are healthy, write and return the client env."""
    layout = Layout(root)
    with layout.lock:
        started = postgres.start(cfg.postgres, cfg.host, layout.postgres, cfg.start_timeout_s)
        log.info(
            "PostgreSQL %s on %s:%d", "started" if started else "already running", cfg.host,
            cfg.postgres.port,
        )  # fmt: skip
        _start_s3(cfg, layout)
        objectstore.ensure_bucket(cfg.s3, cfg.host)
        _start_mlflow(cfg, layout)
        env = client_env(cfg)
        with atomic_path(layout.env_file) as tmp:
            tmp.write_text(env_lines(env))
            tmp.chmod(0o600)  # the keys are the user's alone, from the first byte
    return env


def _start_s3(cfg: ServicesConfig, layout: Layout) -> None:
    where = objectstore.endpoint(cfg.s3, cfg.host)
    if layout.s3.pid() is not None:
        log.info("S3 (SeaweedFS) already running at %s", where)
        proc = None
    else:
        require_free(cfg.host, objectstore.ports(cfg.s3))
        proc = objectstore.start(cfg.s3, cfg.host, layout.s3_dir, layout.s3)
        log.info("S3 (SeaweedFS) starting at %s", where)
    wait_healthy(
        f"SeaweedFS S3 at {where}",
        lambda: _s3_answers(cfg),
        cfg.start_timeout_s,
        proc,
        layout.s3.log_file,
        why=lambda: objectstore.why_failed(layout.s3.log_file),
    )


def _s3_answers(cfg: ServicesConfig) -> str | None:
    """Healthy once it answers the keys: a missing bucket is fine here (up creates it)."""
    found = objectstore.problem(cfg.s3, cfg.host)
    return None if found is None or "has no bucket" in found else found


def _start_mlflow(cfg: ServicesConfig, layout: Layout) -> None:
    where = mlflow_server.tracking_uri(cfg)
    if layout.mlflow.pid() is not None:
        log.info("MLflow server already running at %s", where)
        proc = None
    else:
        require_free(cfg.host, {"services.mlflow.port": cfg.mlflow.port})
        proc = mlflow_server.start(cfg, layout.mlflow_dir, layout.mlflow)
        log.info("MLflow server starting at %s (PostgreSQL backend, artifacts in %s)", where,
                 mlflow_server.artifacts_destination(cfg))  # fmt: skip
    wait_healthy(
        f"MLflow server at {where}",
        lambda: mlflow_server.problem(cfg),
        cfg.start_timeout_s,
        proc,
        layout.mlflow.log_file,
        why=lambda: mlflow_server.why_failed(layout.mlflow.log_file),
    )


def down(cfg: ServicesConfig, root: Path) -> list[str]:
    """Stop the MLflow server, the S3 store and PostgreSQL (the reverse of ``up``); returns
    what was running. The data stays."""
    layout = Layout(root)
    stopped = []
    with layout.lock:
        if terminate(layout.mlflow):
            stopped.append("mlflow")
        if terminate(layout.s3):
            stopped.append("s3")
        if postgres.stop(cfg.postgres, layout.postgres):
            stopped.append("postgres")
    return stopped


def status(cfg: ServicesConfig, root: Path) -> dict[str, str | None]:
    """{service: None when healthy, else what is wrong}, as a client with the current
    environment sees them (the S3 keys in AWS_* when set, else the configured ones)."""
    layout = Layout(root)
    pg = (
        postgres.problem(cfg.postgres, cfg.host)
        if postgres.running(cfg.postgres, layout.postgres)
        else f"PostgreSQL is not running (data in {layout.postgres})"
    )
    s3 = objectstore.problem(
        cfg.s3,
        cfg.host,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
    )
    return {"postgres": pg, "s3": s3, "mlflow": mlflow_server.problem(cfg)}
