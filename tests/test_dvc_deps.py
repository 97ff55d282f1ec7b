"""dvc.yaml cannot drift from the code: each stage depends on exactly the package directories
its entry point imports, directly or through other modules (imports inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path | None:
    """The file of a ``finetune...`` module (a package's ``__init__.py``), or None."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every ``finetune`` module ``path`` imports, at module level or inside functions; for
    ``from finetune.x import y`` that is ``finetune.x.y`` when y is a module, else finetune.x."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "finetune"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "finetune":
                continue
            found.add(node.module)
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if module_file(submodule) is not None:
                    found.add(submodule)
    return found


def import_closure(entry: Path) -> set[Path]:
    """The files of every finetune module reachable from ``entry`` (parent packages too)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        for module in imported_modules(path):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/ and a/b/ too
                file = module_file(".".join(parts[:depth]))
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


def package_dirs(files: set[Path]) -> set[str]:
    """The ``src/finetune/<package>`` directories holding ``files`` (top-level modules by file)."""
    out = set()
    for file in files:
        rel = file.relative_to(REPO)
        if rel.parent == Path("src/finetune"):
            if rel.name != "__init__.py":
                out.add(rel.as_posix())
        else:
            out.add(Path(*rel.parts[:3]).as_posix())
    return out


def entry_point(cmd: str) -> Path:
    words = cmd.split()
    if words[:2] == ["python", "-m"]:
        file = module_file(words[2])
        assert file is not None, cmd
        return file
    assert words[0] == "python" and words[1].endswith(".py"), f"unexpected cmd {cmd!r}"
    return REPO / words[1]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_the_packages_it_imports(stage: str) -> None:
    entry = entry_point(STAGES[stage]["cmd"])
    needed = package_dirs(import_closure(entry))
    declared = {d for d in STAGES[stage]["deps"] if str(d).startswith("src/")}
    assert needed - declared == set(), f"dvc.yaml {stage}: add these deps"
    assert declared - needed == set(), f"dvc.yaml {stage}: these deps are not imported"
    if entry.is_relative_to(REPO / "stages"):
        assert entry.relative_to(REPO).as_posix() in STAGES[stage]["deps"], "its script too"


def test_the_closure_follows_imports_inside_functions() -> None:
    """The train stage imports the registry only inside a function; it is still a dep."""
    closure = import_closure(REPO / "stages" / "train.py")
    assert SRC / "finetune" / "registry" / "aliases.py" in closure
    assert SRC / "finetune" / "modeling" / "pooling_model.py" in closure


def test_every_stage_runs_through_the_runner_and_its_config_check() -> None:
    """Each stage script starts with the runner's checks (schema, conf/ freshness), so
    `dvc repro <stage>` is guarded even when check_config does not run."""
    for stage, spec in STAGES.items():
        entry = entry_point(spec["cmd"])
        if stage == "check_config":
            continue
        assert SRC / "finetune" / "core" / "runner.py" in import_closure(entry), stage
        assert "run_stage(" in entry.read_text(), stage
