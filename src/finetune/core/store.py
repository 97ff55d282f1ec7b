"""Where MLflow data lives, and whether it is there: checked before a stage or command works.

:func:`tracking_uri` resolves the store: ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else
SQLite at ``<repo>/.mlflow/mlflow.db`` (``DVC_ROOT`` in ``dvc exp run --temp/--queue`` copies).

Without this, an unreachable ``MLFLOW_TRACKING_URI`` costs minutes: MLflow's HTTP client
retries each request with exponential backoff (measured: 251 s, then a 120-line traceback).
:func:`check_tracking` asks the server's ``/health`` endpoint once with a short timeout and
stops with one line saying what to do. :func:`bound_retries` also caps the client's own retries
for the rest of the process, so a server that goes away mid-run costs seconds per request, not
minutes (an environment variable the user set wins).
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from finetune.core.errors import PipelineError
from finetune.core.schema import TrackingConfig
from finetune.core.secrets import mask_url

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
# MLflow's HTTP client: retries with backoff 1, 2, 4, 8 s (about 15 s in all) ride out a server
# restart; each request waits at most 20 s for an answer.
RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class TrackingUnavailable(PipelineError):
    """The MLflow tracking store cannot be reached or written."""


def bound_retries() -> None:
    for name, value in RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def advice(uri: str) -> str:
    if "MLFLOW_TRACKING_URI" in os.environ:
        return (
            "start the server (`make services` for the team setup, or `mlflow server`), or "
            "unset MLFLOW_TRACKING_URI to use the local store .mlflow/mlflow.db"
        )
    return "start the server, or set tracking.uri: null in conf/tracking/ for the local store"


def check_uri(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Raise TrackingUnavailable unless ``uri`` answers (HTTP) or can be written (local)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s):
                return
        except urllib.error.HTTPError:
            return  # it answered (a proxy or an auth layer may refuse /health): it is there
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingUnavailable(
                f"MLflow tracking server {mask_url(uri)} is unreachable ({reason}): {advice(uri)}"
            ) from exc
    elif parsed.scheme in ("sqlite", "file", ""):
        local = parsed.path if parsed.scheme else uri
        if parsed.scheme == "sqlite":
            local = uri.removeprefix("sqlite:///")
        directory = Path(local).parent if parsed.scheme == "sqlite" else Path(local)
        existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            raise TrackingUnavailable(
                f"MLflow store {mask_url(uri)} cannot be written ({existing or directory} is not "
                f"writable): {advice(uri)}"
            )


def check_tracking(tracking_cfg: TrackingConfig) -> str:
    """The store's URI, checked (see :func:`check_uri`) and, for SQLite, its tables made;
    retries bounded from now on."""
    bound_retries()
    uri = tracking_uri(tracking_cfg.uri)
    check_uri(uri)
    initialise_sqlite(uri)
    log.debug("MLflow store %s answers", mask_url(uri))
    return uri


def initialise_sqlite(uri: str) -> None:
    """Create a new SQLite store's tables under a file lock, one process at a time.

    MLflow creates the tables of a new SQLite store in whichever process touches it first. Two
    stages starting at once on a new store, as two ``dvc queue start -j 2`` workers do, both
    ran the migrations and one failed with ``duplicate column name`` (measured,
    tests/test_services.py). Done here first, under a lock, the second process finds the tables
    made. On an existing store it only checks the schema version (a store of an older MLflow
    is reported with MLflow's advice, ``mlflow db upgrade``)."""
    if not uri.startswith("sqlite:///"):
        return
    from filelock import FileLock
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    from mlflow.exceptions import MlflowException

    with FileLock(f"{db}.lock"):
        try:
            SqlAlchemyStore(uri, artifact_location(uri) or db.parent.as_uri())
        except MlflowException as exc:
            raise TrackingUnavailable(f"MLflow store {mask_url(uri)}: {exc}") from exc


STORE_DIR = ".mlflow"


def project_root() -> Path:
    """The repository MLflow data belongs to: DVC_ROOT in experiments, else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri(configured: str | None = None) -> str:
    """``tracking.uri`` if set (it is recorded in params), else MLFLOW_TRACKING_URI, else SQLite."""
    if configured:
        return str(configured)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    store = project_root() / STORE_DIR
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Absolute artifact root for local SQLite stores (so temp copies write to the repo)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "artifacts").as_uri()
    return None
