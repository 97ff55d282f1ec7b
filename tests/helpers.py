"""Helpers shared by the slow end-to-end tests: shell calls, temp project copies, servers,
headless Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import copy_repo
from tools.local_web import (  # noqa: F401 (the tests import them from here)
    BIN,
    CHROMEDRIVER,
    CHROMIUM,
    CHROMIUM_FLAGS,
    MlflowServer,
    env_with_venv,
    free_port,
    stop_group,
    wait_until_up,
)


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
