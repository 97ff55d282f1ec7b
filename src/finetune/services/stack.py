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

import importlib.util
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from finetune.core.schema import ServicesConfig
from finetune.services import mlflow_server, objectstore, postgres
from finetune.services.process import (
    Managed,
    ServiceError,
    require_free,
    spawn,
    terminate,
    wait_healthy,
    write_private,
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
    require_team_extra()
    layout = Layout(root)
    with layout.lock:
        started = postgres.start(cfg.postgres, cfg.host, layout.postgres, cfg.start_timeout_s)
        log.info(
            "PostgreSQL %s on %s:%d", "started" if started else "already running", cfg.host,
            cfg.postgres.port,
        )  # fmt: skip
        objectstore.prepare(cfg.s3, layout.s3_dir)
        _ensure_running(
            cfg,
            layout.s3,
            f"SeaweedFS S3 at {objectstore.endpoint(cfg.s3, cfg.host)}",
            objectstore.argv(cfg.s3, cfg.host, layout.s3_dir),
            dict(os.environ),
            layout.s3_dir,
            objectstore.ports(cfg.s3),
            "services.s3.port",
            lambda: _s3_answers(cfg),
            lambda: objectstore.why_failed(layout.s3.log_file),
        )
        objectstore.ensure_bucket(cfg.s3, cfg.host)
        _ensure_running(
            cfg,
            layout.mlflow,
            f"MLflow server at {mlflow_server.tracking_uri(cfg)} (PostgreSQL backend, "
            f"artifacts in {mlflow_server.artifacts_destination(cfg)})",
            mlflow_server.argv(cfg),
            mlflow_server.server_env(cfg),
            layout.mlflow_dir,
            {cfg.mlflow.port: "services.mlflow.port"},
            "services.mlflow.port",
            lambda: mlflow_server.problem(cfg),
            lambda: mlflow_server.why_failed(layout.mlflow.log_file),
        )
        env = client_env(cfg)
        write_private(layout.env_file, env_lines(env))
    return env


def require_team_extra() -> None:
    """The client libraries ``up`` and ``status`` use, or one line saying how to get them."""
    missing = [name for name in ("psycopg2", "boto3") if importlib.util.find_spec(name) is None]
    if missing:
        raise ServiceError(
            f"{' and '.join(missing)} not installed: pip install -e '.[team]' (make setup does)"
        )


def _ensure_running(
    cfg: ServicesConfig,
    server: Managed,
    what: str,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    ports: dict[int, str],
    setting: str,
    check: Callable[[], str | None],
    why: Callable[[], str],
) -> None:
    """Leave a server that runs with these settings alone, start it when it does not run;
    then wait until it is healthy."""
    if server.pid() is not None:
        server.check_same(argv)
        log.info("%s already running", what)
        proc = None
    else:
        require_free(cfg.host, ports, setting)
        cwd.mkdir(parents=True, exist_ok=True)
        proc = spawn(server, argv, env, cwd)
        log.info("%s starting", what)
    wait_healthy(server, what, check, cfg.start_timeout_s, proc, why=why)


def _s3_answers(cfg: ServicesConfig) -> str | None:
    """Healthy once it answers the keys: a missing bucket is fine here (up creates it)."""
    found = objectstore.problem(cfg.s3, cfg.host)
    return None if found is None or "has no bucket" in found else found


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
    require_team_extra()
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
