"""Server processes started in the background and found again: one pid file and one log per
server under the services directory, so ``up`` twice does not start twice and ``down`` stops
what ``up`` started, from any shell.

The pid file (JSON) keeps the pid, the process's start time (so a pid the kernel has given to
another program since, after a crash or a reboot, is not taken for the server) and the command
line it was started with (so ``up`` with other settings says so instead of waiting on a port
nobody listens on)."""

from __future__ import annotations

import contextlib
import json
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


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None


@dataclass(frozen=True)
class Managed:
    """A server that this package starts and stops: its name, pid file and log file."""

    name: str
    pid_file: Path
    log_file: Path

    def _record(self) -> dict | None:
        try:
            record = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) and "pid" in record else None

    def pid(self) -> int | None:
        """The server's pid while it runs, else None (a stale pid file is removed)."""
        record = self._record()
        if record is None:
            return None
        pid = int(record["pid"])
        if alive(pid) and start_time(pid) == record.get("start"):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def check_same(self, argv: Sequence[str]) -> None:
        """Raise when the running server was started with another command line."""
        record = self._record()
        if record is not None and record.get("argv") != list(argv):
            raise ServiceError(
                f"{self.name} is running with other settings than these: stop the stack "
                "first (make services-down), then start it again"
            )


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


def require_free(host: str, ports: Mapping[int, str], setting: str) -> None:
    """Raise unless every port (``{port: what it is}``) is free on ``host``; ``setting`` is the
    config key that moves them."""
    for port, what in ports.items():
        if port_in_use(host, port):
            raise ServiceError(
                f"port {port} on {host} ({what}) is already in use by another program: stop "
                f"it, or choose another port with -S {setting}=<port>"
            )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte (a temporary
    sibling made 0600, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


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
    record = {"pid": proc.pid, "start": start_time(proc.pid), "argv": list(argv)}
    write_private(server.pid_file, json.dumps(record) + "\n")
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
    server: Managed,
    what: str,
    check: Callable[[], str | None],
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None,
    why: Callable[[], str] | None = None,
) -> None:
    """Until ``check()`` returns None (healthy; otherwise it returns what is wrong). Raises at
    once when ``proc`` exits, and after ``timeout_s`` (stopping the ``proc`` it started, so
    that the next ``up`` starts afresh), with the log's telling lines."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if not problem:
            return
        detail = why if why is not None else lambda: log_tail(server.log_file)
        if proc is not None and proc.poll() is not None:
            server.pid_file.unlink(missing_ok=True)
            raise ServiceError(
                f"{what} exited with code {proc.returncode} while starting: {detail()} "
                f"(full log: {server.log_file})"
            )
        if time.monotonic() >= deadline:
            if proc is not None:
                terminate(server)
            raise ServiceError(
                f"{what} did not become healthy in {timeout_s:.0f} s ({problem}); "
                f"its log {server.log_file} ends: {detail()}"
            )
        time.sleep(0.5)


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap it when it is ours (a failed start)
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's group: not ours to wait for
        return False
    return True


def terminate(server: Managed, timeout_s: float = 30.0) -> bool:
    """SIGTERM to the server's process group (its workers too), SIGKILL to what is left after
    ``timeout_s``; waits until the whole group is gone. True if it ran."""
    pid = server.pid()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pid):
        log.warning(
            "%s (pid %d) ignored SIGTERM for %.0f s: killing it", server.name, pid, timeout_s
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    server.pid_file.unlink(missing_ok=True)
    return True
