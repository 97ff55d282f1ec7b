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
from urllib.parse import quote_plus

from finetune.core.schema import PostgresConfig
from finetune.services.process import ServiceError, log_tail, require_free, write_private

log = logging.getLogger(__name__)

SYSTEM_USER = "postgres"  # who owns the cluster when this runs as root
CONNECT_TIMEOUT_S = 3


def binary(name: str, bin_dir: str | None, data: Path | None = None) -> str:
    """``initdb`` / ``pg_ctl``: from ``bin_dir``; else, for an existing cluster in ``data``, from
    the version that made it (/usr/lib/postgresql/<PG_VERSION>/bin); else PATH or the newest
    /usr/lib/postgresql/*/bin."""
    candidates = [Path(bin_dir) / name] if bin_dir else []
    version = data / "PG_VERSION" if data is not None else None
    if not bin_dir and version is not None and version.is_file():
        made_by = version.read_text().strip()
        candidates.append(Path(f"/usr/lib/postgresql/{made_by}/bin/{name}"))
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
    """The SQLAlchemy URL MLflow's server uses (psycopg2 driver), user and password quoted."""
    user, password = quote_plus(cfg.user), quote_plus(cfg.password)
    return f"postgresql+psycopg2://{user}:{password}@{host}:{cfg.port}/{quote_plus(cfg.database)}"


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
    data = data_root / "data"
    log_file = data_root / "postgres.log"
    data_root.mkdir(parents=True, exist_ok=True)
    _prepare_owner(data_root)
    if not (data / "PG_VERSION").is_file():
        _init(cfg, data_root, data)
    started = not running(cfg, data_root)
    if started:
        require_free(host, {cfg.port: "services.postgres.port"}, "services.postgres.port")
        options = f"-p {cfg.port} -c listen_addresses={host} -c unix_socket_directories=''"
        pg_ctl = binary("pg_ctl", cfg.bin_dir, data)
        argv = [pg_ctl, "start", "-D", str(data), "-l", str(log_file), "-w",
                "-t", str(int(timeout_s)), "-o", options]  # fmt: skip
        proc = subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)
        if proc.returncode != 0:  # pg_ctl says "examine the log": the log says why
            raise ServiceError(
                f"PostgreSQL did not start: {log_tail(log_file, 2)} (full log: {log_file})"
            )
    _ensure_database(cfg, host)
    return started


def _init(cfg: PostgresConfig, data_root: Path, data: Path) -> None:
    initdb = binary("initdb", cfg.bin_dir)
    pwfile = data_root / ".pwfile"
    write_private(pwfile, cfg.password + "\n")
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
    from psycopg2 import sql

    wrong = problem(cfg, host, database="postgres")
    if wrong and "password authentication failed" in wrong:
        raise ServiceError(
            f"PostgreSQL on {host}:{cfg.port} refuses user {cfg.user!r}: {wrong} (the cluster "
            "keeps the password it was created with: services.postgres.password must match)"
        )
    if wrong:
        raise ServiceError(f"PostgreSQL on {host}:{cfg.port} does not answer: {wrong}")
    conn = psycopg2.connect(
        host=host, port=cfg.port, user=cfg.user, password=cfg.password, dbname="postgres"
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg.database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(cfg.database)))
                log.info("PostgreSQL: created database %s", cfg.database)
    finally:
        conn.close()


def stop(cfg: PostgresConfig, data_root: Path) -> bool:
    """``pg_ctl stop -m fast`` (clients disconnected, data flushed); True if it was running."""
    if not running(cfg, data_root):
        return False
    data = data_root / "data"
    _run([binary("pg_ctl", cfg.bin_dir, data), "stop", "-D", str(data), "-m", "fast", "-w"], "stop")
    return True


def restart(cfg: PostgresConfig, data_root: Path) -> None:
    """``pg_ctl restart -m fast``: what an operator does after a config change or an upgrade."""
    data = data_root / "data"
    log_file = str(data_root / "postgres.log")  # the server's output: never our pipes
    pg_ctl = binary("pg_ctl", cfg.bin_dir, data)
    _run([pg_ctl, "restart", "-D", str(data), "-l", log_file, "-m", "fast", "-w"], "restart")


def running(cfg: PostgresConfig, data_root: Path) -> bool:
    """``pg_ctl status``: the cluster in ``data_root`` has a live postmaster."""
    data = data_root / "data"
    if not (data / "PG_VERSION").is_file():
        return False
    status = subprocess.run(
        _as_owner([binary("pg_ctl", cfg.bin_dir, data), "status", "-D", str(data)]),
        capture_output=True,
        check=False,
    )
    return status.returncode == 0
