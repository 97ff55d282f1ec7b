"""The declared dependencies are the tested ones: the environment the tests run in meets every
floor in pyproject.toml, torch's pin is written there only, and a logged model asks for the
torch and transformers it was trained with."""

from __future__ import annotations

import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from finetune.tracking.models import pip_requirements

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OWN = "finetune-pipeline"
# Extras `make setup` does not install: optional backbone weights (hundreds of MB).
OPTIONAL_WEIGHTS = {"mpnet"}


def declared() -> list[Requirement]:
    extras = [
        r
        for name, group in PROJECT["optional-dependencies"].items()
        if name not in OPTIONAL_WEIGHTS
        for r in group
    ]
    reqs = [Requirement(r) for r in [*PROJECT["dependencies"], *extras]]
    return [r for r in reqs if r.name != OWN]


@pytest.mark.parametrize("req", declared(), ids=str)
def test_the_installed_version_meets_the_declared_floor(req: Requirement) -> None:
    try:
        installed = version(req.name)
    except PackageNotFoundError:
        pytest.fail(f"{req.name} is declared but not installed: run `make setup`")
    assert req.specifier.contains(installed, prereleases=True), (
        f"{req.name} {installed} is installed, pyproject.toml says {req.specifier}"
    )


def test_transformers_floor_is_a_version_with_the_arguments_the_code_uses() -> None:
    """train_sampling_strategy, and a float warmup_steps as a ratio: transformers 5."""
    (req,) = [r for r in declared() if r.name == "transformers"]
    assert not req.specifier.contains("4.99"), req


def test_torch_is_pinned_in_one_place() -> None:
    pins = [r for r in PROJECT["dependencies"] if r.startswith("torch==")]
    assert len(pins) == 1
    tracked = subprocess.run(
        ["git", "grep", "-l", "-F", pins[0], "--", ".", ":!*.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert tracked == ["pyproject.toml"]


def test_a_logged_model_requires_the_torch_it_was_trained_with() -> None:
    import torch

    reqs = {Requirement(r).name: Requirement(r) for r in pip_requirements()}
    assert reqs["torch"].specifier.contains(torch.__version__.split("+")[0])
    assert str(reqs["torch"].specifier) == f"=={version('torch').split('+')[0]}"
    assert set(reqs) == {"torch", "transformers", OWN}
