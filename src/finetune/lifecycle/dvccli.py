"""Running the ``dvc`` command line from ``finetune`` commands (retrain, tune).

DVC runs as this interpreter's module, with this interpreter's ``bin/`` first on PATH (DVC's
queue workers start ``dvc`` by name) and without the variables DVC sets inside an experiment, so
a command started from within a stage still sees the real repository.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DVC_EXPERIMENT_VARS = ("DVC_EXP_NAME", "DVC_ROOT", "DVC_EXP_BASELINE_REV")


def dvc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def dvc_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DVC_EXPERIMENT_VARS}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env
