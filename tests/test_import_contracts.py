"""The layer contracts in pyproject.toml (`lint-imports`, run by `make lint`) hold, and the next
wrong-way import breaks them: a package importing a layer above it, or preprocess reaching
model or serving code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (  # the cycle the served model's entry made, back in modeling
            "modeling/onnx_pyfunc.py",
            "from finetune.monitoring import predlog",
            "finetune.modeling is not allowed to import finetune.monitoring",
        ),
        (  # core must not know about tracking, even inside a function
            "core/runner.py",
            "def later():\n    from finetune.tracking import runs",
            "finetune.core is not allowed to import finetune.tracking",
        ),
        (  # preprocess would rerun when the classifier code changes
            "data/report.py",
            "from finetune.modeling.inference import predict_proba",
            "finetune.data is not allowed to import finetune.modeling.inference",
        ),
    ],
)
def test_a_wrong_way_import_fails_lint(tmp_path: Path, module: str, line: str, broken: str) -> None:
    shutil.copytree(
        REPO / "src" / "finetune",
        tmp_path / "src" / "finetune",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "finetune" / module
    target.write_text(target.read_text() + f"\n\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert broken in result.stdout, result.stdout
