"""End to end: real `dvc repro` / `dvc exp run` in a temporary copy of the repository."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import sh, tiny_project

pytestmark = pytest.mark.slow

STAGES = [
    "check_config",
    "preprocess",
    "augment",
    "train",
    "evaluate",
    "error_analysis",
    "export",
]


def ran(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", proc.stdout + proc.stderr)


def runs(repo: Path) -> list[mlflow.entities.Run]:
    client = MlflowClient(f"sqlite:///{repo / '.mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("finetune-pipeline")
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A git copy of the project whose conf/ selects the tiny model and the smoke preset."""
    return tiny_project(tmp_path_factory.mktemp("repo"), tiny_model_dir)


def test_repro_runs_everything_then_nothing(repo: Path) -> None:
    first = sh(repo, "dvc", "repro")
    assert ran(first) == STAGES
    for path in (
        "data/processed/test.parquet",
        "data/augmented/train.parquet",
        "models/model/model.safetensors",
        "reports/evaluate/metrics.json",
        "reports/error_analysis/report.md",
        "reports/error_analysis/report.html",
        "reports/evaluate/figures/reliability.png",
        "reports/error_analysis/tables/errors.csv",
        "reports/export/metrics.json",
        "models/onnx/deployment.json",
    ):
        assert (repo / path).is_file(), path
    (run,) = runs(repo)
    run_info = json.loads((repo / "models/mlflow_run.json").read_text())
    assert run.info.run_id == run_info["run_id"]
    assert (
        run.data.tags["mlflow.source.git.commit"]
        == sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    )
    assert run.data.tags["data.version"] and any(t.startswith("data.md5.") for t in run.data.tags)
    assert "test_f1_macro" in run.data.metrics and "errors_num_errors" in run.data.metrics

    # the DVC metrics are the three headline files, and `dvc metrics show` reads in a
    # terminal (every other figure is in the stages' outputs).
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    headline = {"metrics/train.json", "metrics/evaluate.json",
                "metrics/export.json"}  # fmt: skip
    assert set(shown[""]["data"]) == headline
    table = sh(repo, "dvc", "metrics", "show").stdout
    assert max(len(line) for line in table.splitlines()) <= 200, table

    began = time.perf_counter()
    again = sh(repo, "dvc", "repro")
    assert ran(again) == [] and "up to date" in again.stdout
    print(f"no-op dvc repro: {time.perf_counter() - began:.2f} s")
    assert len(runs(repo)) == 1, "re-running with unchanged inputs creates no new run"

    plots = json.loads(sh(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    assert {"reports/evaluate/confusion.csv", "reports/evaluate/confusion_matrix.png"} <= set(plots)
    for curve in ("pr_curve.csv", "roc_curve.csv", "reliability.csv"):
        assert plots[f"reports/evaluate/{curve}"], f"{curve} renders in dvc plots show"
    assert "reports/evaluate/figures/pr_curves.png" in plots
    (image,) = plots["reports/evaluate/confusion_matrix.png"]
    assert Path(image["url"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Issue 24, part 1: the stages `dvc status` finds changed after a comment line is appended to
# each file (before, when deps were package directories: all six; all six and check_config;
# preprocess, evaluate, error_analysis and export; train). tests/test_dvc_deps.py says why.
CODE_EDITS = {
    "src/finetune/modeling/onnx_pyfunc.py": {"export"},
    "src/finetune/core/durations.py": {"train", "error_analysis"},
    "src/finetune/reporting/markdown.py": {"preprocess", "error_analysis", "export"},
    "src/finetune/registry/report.py": set(),
}


def changed_stages(repo: Path) -> set[str]:
    status = json.loads(sh(repo, "dvc", "status", "--json").stdout or "{}")
    return {name.split(":")[-1] for name in status}


def test_a_code_edit_changes_only_the_stages_that_import_it(repo: Path) -> None:
    assert changed_stages(repo) == set()
    for edited, expected in CODE_EDITS.items():
        path = repo / edited
        before = path.read_text()
        path.write_text(before + "# an edit\n")
        try:
            assert changed_stages(repo) == expected, edited
        finally:
            path.write_text(before)
    assert changed_stages(repo) == set()


def test_stale_params_stop_repro_with_the_fix(repo: Path) -> None:
    train_conf = repo / "conf" / "train" / "default.yaml"
    original = train_conf.read_text()
    train_conf.write_text(original.replace("weight_decay: 0.01", "weight_decay: 0.02"))
    try:
        proc = sh(repo, "dvc", "repro", check=False)
        assert proc.returncode != 0
        assert ran(proc) == ["check_config"]
        assert "out of date with conf/" in proc.stdout + proc.stderr
        assert "make params" in proc.stdout + proc.stderr
    finally:
        train_conf.write_text(original)
    assert ran(sh(repo, "dvc", "repro")) == [], "conf/ is back to what dvc.lock recorded"


def test_evaluate_param_reruns_only_evaluate_and_error_analysis(repo: Path) -> None:
    before = len(runs(repo))
    proc = sh(repo, "dvc", "exp", "run", "-S", "evaluate.batch_size=16", "-n", "eval-bs16")
    assert ran(proc) == ["evaluate", "error_analysis"]
    assert len(runs(repo)) == before, "evaluate logs into the train run DVC restored"
    sh(repo, "git", "checkout", "--", "params.yaml")
    sh(repo, "dvc", "checkout", "--force")


def test_export_param_reruns_only_export(repo: Path) -> None:
    proc = sh(repo, "dvc", "exp", "run", "-S", "export.max_f1_drop=0.5", "-n", "export-gate")
    assert ran(proc) == ["export"]
    metrics = json.loads((repo / "reports/export/metrics.json").read_text())
    assert metrics["max_f1_drop"] == 0.5
    assert {"pytorch", "fp32", "int8"} <= set(metrics["variants"])
    sh(repo, "git", "checkout", "--", "params.yaml")
    sh(repo, "dvc", "checkout", "--force")


def test_learning_rate_experiment_in_a_temp_copy(repo: Path) -> None:
    before = {r.info.run_id for r in runs(repo)}
    proc = sh(
        repo, "dvc", "exp", "run", "--temp", "-S", "train.learning_rate=0.001", "-n", "lr-1e-3"
    )
    assert ran(proc) == ["train", "evaluate", "error_analysis", "export"]
    new = [r for r in runs(repo) if r.info.run_id not in before]
    assert len(new) == 1, "the temp copy logged into the real repository's store"
    (run,) = new
    assert run.data.tags["dvc.experiment"] == "lr-1e-3"
    assert run.data.params["train.learning_rate"] == "0.001"
    assert "test_f1_macro" in run.data.metrics
    show = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    exps = {
        rev["name"]: rev["data"]
        for baseline in show
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }
    assert {"lr-1e-3", "eval-bs16"} <= set(exps)
    for name, lr in (("lr-1e-3", 0.001), ("eval-bs16", 0.0001)):
        data = exps[name]
        assert data["params"]["params.yaml"]["data"]["train"]["learning_rate"] == lr
        headline = {path: m["data"] for path, m in data["metrics"].items()}
        assert 0 <= headline["metrics/evaluate.json"]["f1_macro"] <= 1
        # dvc exp show lists the headline per experiment, and only it
        assert set(headline["metrics/evaluate.json"]) == {
            "accuracy", "f1_macro", "tfidf_f1_macro", "beats_tfidf", "ece"
        }  # fmt: skip
        assert set(headline["metrics/export.json"]) == {"chosen", "latency_ms"}
        assert "stop_reason" in headline["metrics/train.json"]
    assert exps["lr-1e-3"]["metrics"]["metrics/evaluate.json"]["data"]["f1_macro"] == (
        pytest.approx(run.data.metrics["test_f1_macro"])
    )
    # dvc plots diff still compares the experiments: one PR curve per experiment
    diff = json.loads(sh(repo, "dvc", "plots", "diff", "lr-1e-3", "eval-bs16", "--json").stdout)
    assert not diff.get("errors"), diff["errors"]
    (pr,) = diff["data"]["reports/evaluate/pr_curve.csv"]
    assert set(pr["revisions"]) == {"lr-1e-3", "eval-bs16"}, pr["revisions"]


def test_changing_the_data_reruns_everything(repo: Path) -> None:
    raw = repo / "data" / "raw" / "support_tickets.csv"
    raw.write_text(
        raw.read_text() + 'msg-e2e-1,"my card got charged twice, refund please",billing,chat\n'
    )
    proc = sh(repo, "dvc", "repro")
    assert ran(proc) == STAGES[1:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # DVC checks deps before running the stage and names the missing file itself.
        (None, r"failed to reproduce 'preprocess'.*No such file.*support_tickets\.csv"),
        ("id,text,label,channel\n", "has a header but no rows"),
        ("id,text,label,channel\nm1,hello,billing,chat\nm2,hi,billing,chat\n", "only one class"),
        ("id,message,label,channel\nm1,hello,billing,chat\n", r"missing column\(s\) \['text'\]"),
    ],
    ids=["missing-file", "no-rows", "single-class", "missing-text-column"],
)
def test_bad_input_stops_repro_with_a_message_and_no_outputs(
    repo: Path, content: str | None, message: str
) -> None:
    raw = repo / "data" / "raw" / "support_tickets.csv"
    original = raw.read_bytes()
    try:
        if content is None:
            raw.unlink()
        else:
            raw.write_text(content)
        proc = sh(repo, "dvc", "repro", "preprocess", check=False)
        assert proc.returncode != 0
        output = proc.stdout + proc.stderr
        assert re.search(message, output), output
        assert "Traceback" not in output, "a user error is one clear message, not a traceback"
        assert not (repo / "data" / "processed").exists()
        assert not (repo / "reports" / "preprocess" / "data_report.json").exists()
    finally:
        raw.write_bytes(original)
