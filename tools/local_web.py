"""Local web processes for the end-to-end tests and the documentation tools: headless Chromium's
flags, a free port, waiting for a server to answer, stopping a server's process group, and a
real ``mlflow server`` / ``mlflow ui`` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p), None)
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless Chromium without network chatter, sandbox or GPU (containers, CI).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def env_with_venv(**extra: str) -> dict[str, str]:
    """os.environ with this interpreter's bin/ first on PATH (dvc, mlflow, finetune)."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 90
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} in {timeout_s} s:\n{log_path.read_text()}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server started with ``start_new_session=True`` and its workers; SIGKILL if
    it is still there after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied local artifacts) that a
    test can stop and start again on the same port and store, as an outage would.
    ``command="ui"`` with ``backend_uri``: ``mlflow ui`` on an existing store instead."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        command: str = "server",
        backend_uri: str | None = None,
    ) -> None:
        self.root = root
        self.command = command
        self.backend_uri = backend_uri or f"sqlite:///{root / 'mlflow.db'}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "server.log"
        root.mkdir(parents=True, exist_ok=True)

    def start(self) -> MlflowServer:
        artifacts = (
            ["--artifacts-destination", (self.root / "artifacts").as_uri()]
            if self.command == "server"
            else []
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    self.command,
                    "--backend-store-uri",
                    self.backend_uri,
                    *artifacts,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env_with_venv(),
            )
        wait_until_up(f"{self.url}/health", self.proc, self.log_path, timeout_s=120)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc)
        self.proc = None

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
