"""PostgreSQL for MLflow's backend store: Debian's server binaries (``initdb``, ``pg_ctl``) on a
private data directory and port, listening on TCP only (no socket in /var/run).

PostgreSQL refuses to run as root. Run as root (CI, containers), the cluster belongs to the
``postgres`` system user that Debian's package creates, and the commands run through
``runuser``; the data directory must then be reachable by that user.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from finetune.core.schema import PostgresConfig
from finetune.services.process import ServiceError, log_tail, require_free

log = logging.getLogger(__name__)

SYSTEM_USER = "postgres"  # who owns the cluster when this runs as root
CONNECT_TIMEOUT_S = 3


def binary(name: str, bin_dir: str | None) -> str:
    """``initdb`` / ``pg_ctl``: from ``bin_dir``, PATH, or the newest /usr/lib/postgresql/*/bin."""
    candidates = [Path(bin_dir) / name] if bin_dir else []
    if not bin_dir:
        found = shutil.which(name)
        candidates += [Path(found)] if found else []
        versions = sorted(
            Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
        candidates += list(reversed(versions))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    where = (
        f"in services.postgres.bin_dir={bin_dir}" if bin_dir else "on PATH or /usr/lib/postgresql"
    )
    raise ServiceError(
        f"PostgreSQL's {name} is not {where}: install Debian's server package "
        "(apt-get install postgresql; .ci/run does) or set services.postgres.bin_dir"
    )


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        raise ServiceError("running as root, PostgreSQL needs `runuser` (util-linux) to drop root")
    try:
        import pwd

        pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise ServiceError(
            f"PostgreSQL refuses to run as root and there is no {SYSTEM_USER!r} user: install "
            "Debian's postgresql package (it creates one) or run `make services` as a normal user"
        ) from exc
    return ["runuser", "-u", SYSTEM_USER, "--", *argv]


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = " | ".join(
            ln.strip() for ln in (proc.stderr or proc.stdout).splitlines()[-3:] if ln.strip()
        )
        raise ServiceError(f"PostgreSQL {what} failed: {detail}")
    return proc


def _prepare_owner(base: Path) -> None:
    """As root: hand ``base`` to the postgres user and check it can reach it."""
    if os.geteuid() != 0:
        return
    import pwd

    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(base, entry.pw_uid, entry.pw_gid)
    probe = subprocess.run(_as_owner(["test", "-w", str(base)]), check=False)
    if probe.returncode != 0:
        blocked = next(
            (p for p in reversed(base.parents) if not p.stat().st_mode & 0o001),
            base.parent,
        )
        raise ServiceError(
            f"PostgreSQL runs as the {SYSTEM_USER!r} user, who cannot reach {base}: "
            f"{blocked} is closed to other users (chmod o+x {blocked}) or choose another "
            "paths.services_dir"
        )


def uri(cfg: PostgresConfig, host: str) -> str:
    """The SQLAlchemy URL MLflow's server uses (psycopg2 driver)."""
    return f"postgresql+psycopg2://{cfg.user}:{cfg.password}@{host}:{cfg.port}/{cfg.database}"


def problem(cfg: PostgresConfig, host: str, database: str | None = None) -> str | None:
    """None when the server accepts ``cfg.user`` on ``database``; else what is wrong, one line."""
    import psycopg2

    try:
        conn = psycopg2.connect(
            host=host,
            port=cfg.port,
            user=cfg.user,
            password=cfg.password,
            dbname=database or cfg.database,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
    except psycopg2.OperationalError as exc:
        return " ".join(str(exc).split())
    conn.close()
    return None


def start(cfg: PostgresConfig, host: str, data_root: Path, timeout_s: float) -> bool:
    """Initialise the cluster on first use, start it unless running, create the database.
    Returns True when it was started now."""
    pg_ctl = binary("pg_ctl", cfg.bin_dir)
    data = data_root / "data"
    log_file = data_root / "postgres.log"
    data_root.mkdir(parents=True, exist_ok=True)
    _prepare_owner(data_root)
    if not (data / "PG_VERSION").is_file():
        _init(cfg, data_root, data)
    status = subprocess.run(_as_owner([pg_ctl, "status", "-D", str(data)]), capture_output=True)
    started = status.returncode != 0
    if started:
        require_free(host, {"services.postgres.port": cfg.port})
        options = f"-p {cfg.port} -c listen_addresses={host} -c unix_socket_directories=''"
        _run(
            [pg_ctl, "start", "-D", str(data), "-l", str(log_file), "-w", "-t", str(int(timeout_s)),
             "-o", options],
            f"start (log {log_file}: {log_tail(log_file)})",
        )  # fmt: skip
    _ensure_database(cfg, host)
    return started


def _init(cfg: PostgresConfig, data_root: Path, data: Path) -> None:
    initdb = binary("initdb", cfg.bin_dir)
    pwfile = data_root / ".pwfile"
    pwfile.write_text(cfg.password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        _run(
            [initdb, "-D", str(data), "-U", cfg.user, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"],
            "initdb",
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    log.info("PostgreSQL: new cluster in %s (user %s)", data, cfg.user)


def _ensure_database(cfg: PostgresConfig, host: str) -> None:
    import psycopg2

    wrong = problem(cfg, host, database="postgres")
    if wrong:
        raise ServiceError(
            f"PostgreSQL on {host}:{cfg.port} refuses user {cfg.user!r}: {wrong} (the cluster "
            "keeps the password it was created with: services.postgres.password must match)"
        )
    conn = psycopg2.connect(
        host=host, port=cfg.port, user=cfg.user, password=cfg.password, dbname="postgres"
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{cfg.database}"')
                log.info("PostgreSQL: created database %s", cfg.database)
    finally:
        conn.close()


def stop(cfg: PostgresConfig, data_root: Path) -> bool:
    """``pg_ctl stop -m fast`` (clients disconnected, data flushed); True if it was running."""
    data = data_root / "data"
    if not (data / "PG_VERSION").is_file():
        return False
    pg_ctl = binary("pg_ctl", cfg.bin_dir)
    status = subprocess.run(_as_owner([pg_ctl, "status", "-D", str(data)]), capture_output=True)
    if status.returncode != 0:
        return False
    _run([pg_ctl, "stop", "-D", str(data), "-m", "fast", "-w"], "stop")
    return True


def restart(cfg: PostgresConfig, data_root: Path) -> None:
    """``pg_ctl restart -m fast``: what an operator does after a config change or an upgrade."""
    pg_ctl = binary("pg_ctl", cfg.bin_dir)
    log_file = str(data_root / "postgres.log")  # the server's output: never our pipes
    _run([pg_ctl, "restart", "-D", str(data_root / "data"), "-l", log_file, "-m", "fast", "-w"],
         "restart")  # fmt: skip


def running(cfg: PostgresConfig, data_root: Path) -> bool:
    data = data_root / "data"
    if not (data / "PG_VERSION").is_file():
        return False
    pg_ctl = binary("pg_ctl", cfg.bin_dir)
    return (
        subprocess.run(
            _as_owner([pg_ctl, "status", "-D", str(data)]), capture_output=True
        ).returncode
        == 0
    )
