"""Helpers shared by the slow end-to-end tests: shell calls, temp project copies, servers,
headless Chromium."""

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

from tests.conftest import copy_repo

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


def sh(
    repo: Path, *args: str, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run a command in ``repo`` as a user would: no tracking URI or DVC variables inherited."""
    env = env_with_venv()
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(var, None)
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_project(dest: Path, tiny_model_dir: Path, raw_rows: int | None = None) -> Path:
    """A committed git copy of the project whose conf/ selects the tiny model and the smoke
    preset (optionally only the first ``raw_rows`` rows of the demo data), params composed."""
    root = copy_repo(dest)
    (root / "conf" / "model" / "tiny.yaml").write_text(
        f"name: tiny-bert\nname_or_path: {tiny_model_dir}\nlicense: null\nmax_length: 32\n"
        "pooling: cls\nlong_text: auto\nhead_share: 0.25\nchunk_overlap: 0.25\nchunk_pool: mean\n"
    )
    config = root / "conf" / "config.yaml"
    config.write_text(
        config.read_text()
        .replace("- model: minilm", "- model: tiny")
        .replace("- optional experiment: null", "- optional experiment: smoke")
    )
    # The tiny random model is a stand-in for the pipeline's mechanics, not a classifier: it
    # never beats the TF-IDF baseline, so the guard that keeps such a model from becoming
    # champion is off here (tests/test_registry.py tests the guard itself).
    with (root / "conf" / "experiment" / "smoke.yaml").open("a") as smoke:
        smoke.write("promotion:\n  require_beat_baseline: false\n")
    if raw_rows is not None:
        raw = root / "data" / "raw" / "support_tickets.csv"
        raw.write_text("".join(raw.read_text().splitlines(keepends=True)[: raw_rows + 1]))
    sh(root, sys.executable, "-m", "finetune.core.config", "compose")
    sh(root, "git", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    return root


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
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in {timeout_s} s:\n{log_path.read_text()}")


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
