"""dvc.yaml cannot drift from the code: each stage depends on exactly the files of its entry
point's import closure (imports inside functions too), as tools/dvc_deps.py (`make deps`) writes
them, so an edit reruns only the stages whose code can see it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DVC_YAML = REPO / "dvc.yaml"
STAGES = yaml.safe_load(DVC_YAML.read_text())["stages"]


def load_tool():
    spec = importlib.util.spec_from_file_location("dvc_deps", REPO / "tools" / "dvc_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dvc_deps = load_tool()


def test_dvc_yaml_code_deps_are_what_make_deps_writes() -> None:
    text = DVC_YAML.read_text()
    generated = dvc_deps.render(text)
    assert generated == text, (
        "dvc.yaml's code deps differ from the imports: run `make deps`\n"
        + dvc_deps.diff(text, generated)
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_files_not_package_directories(stage: str) -> None:
    deps = [str(d) for d in STAGES[stage]["deps"]]
    code = [d for d in deps if d.startswith(("src/", "stages/"))]
    assert code, stage
    for dep in code:
        assert (REPO / dep).is_file(), f"dvc.yaml {stage}: {dep} is not a file"
    entry = dvc_deps.entry_point(STAGES[stage]["cmd"]).relative_to(REPO).as_posix()
    assert entry in code, f"dvc.yaml {stage}: its entry point {entry} is not a dep"


# An edit to each file, and the stages `dvc repro` reruns for it (issue 24, part 1). Before,
# deps were package directories: the first reran all six stages, the second all six and
# check_config, the fourth train.
RERUNS = {
    # the served ONNX wrapper: only export logs it
    "src/finetune/modeling/onnx_pyfunc.py": {"export"},
    # `finetune monitor --since`, `finetune tune --timeout`, and train.time_budget, which the
    # training schedule parses with it (finetune.training.schedule); error_analysis trains its
    # cross-validated models with the same trainer (finetune.training.kfold)
    "src/finetune/core/durations.py": {"train", "error_analysis"},
    # the stages whose reports are Markdown tables
    "src/finetune/reporting/markdown.py": {"preprocess", "error_analysis", "export"},
    # `finetune promote`'s report: no stage
    "src/finetune/registry/report.py": set(),
    # every stage parses params.yaml and checks conf/ with it
    "src/finetune/core/schema.py": set(STAGES),
}


@pytest.mark.parametrize("edited", sorted(RERUNS))
def test_an_edit_reruns_only_the_stages_that_import_it(edited: str) -> None:
    assert (REPO / edited).is_file(), edited
    reruns = {stage for stage, spec in STAGES.items() if edited in spec["deps"]}
    assert reruns == RERUNS[edited]


def test_dvc_itself_sees_each_edit_only_in_those_stages(tmp_path: Path) -> None:
    """DVC's own change detection on a copy of the code: each stage's code deps hashed as
    dvc.lock records them, one file edited, then which stages DVC finds changed."""
    from dvc.repo import Repo

    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("src", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    Repo.init(str(tmp_path), no_scm=True).close()
    with Repo(str(tmp_path)) as repo:
        code = {
            stage.name: [d for d in stage.deps if str(d.def_path).startswith(("src/", "stages/"))]
            for stage in repo.index.stages
        }
        assert set(code) == set(STAGES)
        for edited, expected in RERUNS.items():
            for deps in code.values():
                for dep in deps:
                    dep.save()
            path = tmp_path / edited
            before = path.read_text()
            path.write_text(before + "# an edit\n")
            changed = {name for name, deps in code.items() if any(d.changed() for d in deps)}
            path.write_text(before)
            assert changed == expected, edited


def test_export_depends_on_the_served_models_code_it_logs_by_path() -> None:
    """MLflow runs the entry file of the ONNX pyfunc from its path: no import reaches it."""
    from finetune.export.registration import entry_file

    entry = Path(entry_file()).resolve().relative_to(REPO).as_posix()
    assert entry == "src/finetune/serving/onnx_pyfunc_entry.py"
    assert entry in STAGES["export"]["deps"]


def test_the_closure_follows_imports_inside_functions() -> None:
    """backbones imports pooling_model only inside its loading functions; still a dep of train."""
    closure = dvc_deps.import_closure(REPO / "stages" / "train.py")
    assert SRC / "finetune" / "modeling" / "pooling_model.py" in closure
    assert SRC / "finetune" / "modeling" / "backbones.py" in closure


def test_every_stage_runs_through_the_runner_and_its_config_check() -> None:
    """Each stage script starts with the runner's checks (schema, conf/ freshness), so
    `dvc repro <stage>` is guarded even when check_config does not run."""
    for stage, spec in STAGES.items():
        entry = dvc_deps.entry_point(spec["cmd"])
        if stage == "check_config":
            continue
        assert SRC / "finetune" / "core" / "runner.py" in dvc_deps.import_closure(entry), stage
        assert "run_stage(" in entry.read_text(), stage


def fake_repo(root: Path, dvc_yaml: str) -> Path:
    """src/finetune with a stage module importing another inside a function, and ``dvc_yaml``."""
    pkg = root / "src" / "finetune"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "leaf.py").write_text("X = 1\n")
    (pkg / "low" / "other.py").write_text("Y = 2\n")
    (pkg / "stage.py").write_text("def run():\n    from finetune.low import leaf\n")
    (root / "dvc.yaml").write_text(dvc_yaml)
    return root


KEPT = """# a comment kept as it is
stages:
  one:
    cmd: python -m finetune.stage
    deps:
      - data/raw   # a data dep, kept
      {begin}
      - src/finetune/low/other.py
      {end}
      - ${{paths.processed}}
    outs:
      - out
"""


def test_make_deps_rewrites_only_the_marked_blocks(tmp_path: Path) -> None:
    text = KEPT.format(begin=dvc_deps.BEGIN, end=dvc_deps.END)
    root = fake_repo(tmp_path, text)
    rendered = dvc_deps.render(text, root)
    block = [
        "      - src/finetune/stage.py",
        "      - src/finetune/__init__.py",
        "      - src/finetune/low/__init__.py",
        "      - src/finetune/low/leaf.py",
    ]
    assert rendered == text.replace("      - src/finetune/low/other.py", "\n".join(block))
    assert dvc_deps.render(rendered, root) == rendered
    assert dvc_deps.main(["--check", "--file", str(root / "dvc.yaml")]) == 1
    assert dvc_deps.main(["--file", str(root / "dvc.yaml")]) == 0
    assert (root / "dvc.yaml").read_text() == rendered
    assert dvc_deps.main(["--check", "--file", str(root / "dvc.yaml")]) == 0


def test_a_stage_without_the_markers_is_refused(tmp_path: Path) -> None:
    text = KEPT.format(begin="# no marker", end="# none")
    root = fake_repo(tmp_path, text)
    with pytest.raises(dvc_deps.DepsError, match="stages one: no code deps block"):
        dvc_deps.render(text, root)
    unclosed = KEPT.format(begin=dvc_deps.BEGIN, end="# not the end marker")
    with pytest.raises(dvc_deps.DepsError, match="without"):
        dvc_deps.render(unclosed, root)
