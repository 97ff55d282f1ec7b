"""Server processes started in the background and found again: one pid file and one log per
server under the services directory, so ``up`` twice does not start twice and ``down`` stops
what ``up`` started, from any shell."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from finetune.core.errors import PipelineError

log = logging.getLogger(__name__)


class ServiceError(PipelineError):
    """A server could not be started, stopped or reached."""


@dataclass(frozen=True)
class Managed:
    """A server that this package starts and stops: its name, pid file and log file."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The server's pid while it runs, else None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state != "Z"


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def require_free(host: str, ports: Mapping[str, int]) -> None:
    """Raise unless every port (``{config key: port}``) is free on ``host``."""
    for key, port in ports.items():
        if port_in_use(host, port):
            raise ServiceError(
                f"port {port} on {host} ({key}) is already in use by another program: stop it, "
                f"or choose another port with -S {key}=<port>"
            )


def spawn(
    server: Managed, argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (it outlives this process), output to the log."""
    server.log_file.parent.mkdir(parents=True, exist_ok=True)
    with server.log_file.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {server.name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tmp = server.pid_file.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(server.pid_file)
    return proc


def log_tail(path: Path, lines: int = 3, match: Callable[[str], bool] | None = None) -> str:
    """The last ``lines`` lines of a log (those ``match`` keeps), joined with " | "."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and (match is None or match(ln))]
    return " | ".join(kept[-lines:]) or "(empty log)"


def wait_healthy(
    what: str,
    check: Callable[[], str | None],
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None,
    log_file: Path,
    why: Callable[[], str] | None = None,
) -> None:
    """Until ``check()`` returns None (healthy; otherwise it returns what is wrong). Raises at
    once when ``proc`` exits, and after ``timeout_s``, with the log's last lines."""
    deadline = time.monotonic() + timeout_s
    problem = "not checked"
    while True:
        problem = check() or ""
        if not problem:
            return
        if proc is not None and proc.poll() is not None:
            detail = why() if why else log_tail(log_file)
            raise ServiceError(
                f"{what} exited with code {proc.returncode} while starting: {detail} "
                f"(full log: {log_file})"
            )
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{what} did not become healthy in {timeout_s:.0f} s ({problem}); "
                f"its log {log_file} ends: {why() if why else log_tail(log_file)}"
            )
        time.sleep(0.5)


def terminate(server: Managed, timeout_s: float = 30.0) -> bool:
    """SIGTERM to the server's process group, SIGKILL after ``timeout_s``; True if it ran."""
    pid = server.pid()
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        server.pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        log.warning(
            "%s (pid %d) ignored SIGTERM for %.0f s: killing it", server.name, pid, timeout_s
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)
    server.pid_file.unlink(missing_ok=True)
    return True
