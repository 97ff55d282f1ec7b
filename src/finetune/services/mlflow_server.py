"""``mlflow server``: PostgreSQL as the backend store (runs, metrics, the model registry) and
artifacts proxied to ``s3://<bucket>/mlflow`` (``--serve-artifacts``), so that clients need
only the tracking URI, never S3 credentials."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from finetune.core.schema import ServicesConfig
from finetune.services import objectstore, postgres
from finetune.services.process import ServiceError, log_tail

ARTIFACTS_PREFIX = "mlflow"


def tracking_uri(cfg: ServicesConfig) -> str:
    return f"http://{cfg.host}:{cfg.mlflow.port}"


def artifacts_destination(cfg: ServicesConfig) -> str:
    return f"s3://{cfg.s3.bucket}/{ARTIFACTS_PREFIX}"


def server_env(cfg: ServicesConfig) -> dict[str, str]:
    """The server's own environment: S3 endpoint and keys (for its artifact proxy)."""
    return {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": objectstore.endpoint(cfg.s3, cfg.host),
        "AWS_ACCESS_KEY_ID": cfg.s3.access_key,
        "AWS_SECRET_ACCESS_KEY": cfg.s3.secret_key,
        "AWS_DEFAULT_REGION": cfg.s3.region,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        # the database URL (with its password) in the environment, not on the command line
        "MLFLOW_BACKEND_STORE_URI": postgres.uri(cfg.postgres, cfg.host),
    }


def argv(cfg: ServicesConfig) -> list[str]:
    mlflow = Path(sys.executable).parent / "mlflow"
    if not mlflow.is_file():
        raise ServiceError(f"{mlflow} is missing: install the project (make setup)")
    return [
        str(mlflow),
        "server",
        "--artifacts-destination",
        artifacts_destination(cfg),
        "--serve-artifacts",
        "--host",
        cfg.host,
        "--port",
        str(cfg.mlflow.port),
        "--workers",
        str(cfg.mlflow.workers),
    ]


def problem(cfg: ServicesConfig) -> str | None:
    """None when ``/health`` answers OK."""
    url = tracking_uri(cfg) + "/health"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        return f"{url} unreachable ({getattr(exc, 'reason', exc)})"


def why_failed(log_file: Path) -> str:
    """The exception line of the server's traceback (a bad backend URI, a port in use)."""
    return log_tail(
        log_file,
        2,
        match=lambda ln: "Error" in ln or "error" in ln or "in use" in ln,
    )
