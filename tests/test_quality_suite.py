"""bench/quality_suite.py on tiny datasets it is given: init-data, compose, dvc repro per stage,
the table and the JSON line (the real suite runs on ../shared/datasets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_texts
from tests.helpers import env_with_venv

SUITE = str(REPO / "bench" / "quality_suite.py")


@pytest.mark.slow
def test_suite_runs_the_own_data_path_and_prints_one_table(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "datasets" / "sms_spam"  # a suite name, tiny contents
    data.mkdir(parents=True)
    texts = make_texts(n_per_class=24)[["text", "label"]]
    test = texts.groupby("label").head(6)
    test.to_csv(data / "test.csv", index=False)
    texts.drop(test.index).to_csv(data / "train.csv", index=False)
    (data / "extra_task.csv").write_text("text,label\nnot part of the task,other\n")
    proc = subprocess.run(
        [sys.executable, SUITE, "--datasets", str(tmp_path / "datasets"), "--only", "sms_spam",
         "--only", "sms_spam-8shot", "--stages", "preprocess,augment,train,evaluate",
         "--set", f"model.name_or_path={tiny_model_dir}", "--set", "model.max_length=32",
         "--set", "train.max_epochs=2", "--set", "train.learning_rate=5e-3"],
        capture_output=True, text=True, timeout=900, env=env_with_venv(), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    runs = {r["dataset"]: r for r in result["runs"]}
    assert set(runs) == {"sms_spam", "sms_spam-8shot"}, result
    full, few = runs["sms_spam"], runs["sms_spam-8shot"]
    assert full["classes"] == 3, "only train/validation/test files: extra_task.csv is left out"
    assert few["rows"]["train"] == 3 * 8 and few["rows"]["validation"] == 3 * 8
    assert few["rows"]["test"] == full["rows"]["test"] == 18
    for run in (full, few):
        assert set(run["minutes"]) == {"preprocess", "augment", "train", "evaluate"}
        assert run["stop_reason"] in {"plateau", "max_epochs"} and 0 < run["epochs"] <= 2
        assert 0 <= run["accuracy"] <= 1 and 0 <= run["baseline_f1_macro"] <= 1
        assert isinstance(run["beats_baseline"], bool)
    header = next(i for i, line in enumerate(lines) if line.startswith("dataset "))
    assert lines[header + 1].startswith("sms_spam ")
    assert lines[header + 2].startswith("sms_spam-8shot ")
    assert result["overrides"][0].startswith("model.name_or_path=")


def test_suite_refuses_an_unknown_dataset_and_lists_its_cases() -> None:
    bad = subprocess.run([sys.executable, SUITE, "--only", "nosuch"], capture_output=True,
                         text=True, timeout=120, env=env_with_venv())  # fmt: skip
    assert bad.returncode == 2 and "unknown dataset(s) ['nosuch']" in bad.stderr
    listed = subprocess.run([sys.executable, SUITE, "--list"], capture_output=True, text=True,
                            timeout=120, env=env_with_venv())  # fmt: skip
    assert listed.returncode == 0 and "clinc150-8shot: clinc150 (8 per class)" in listed.stdout


def test_suite_refuses_a_keep_directory_that_holds_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "sst2").mkdir()
    kept = subprocess.run(
        [sys.executable, SUITE, "--only", "sst2", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env_with_venv(),
    )  # fmt: skip
    assert kept.returncode == 2 and "already holds ['sst2']: choose another" in kept.stderr


@pytest.mark.slow
def test_a_dataset_with_a_shipped_preset_runs_and_a_failed_one_fails_the_suite(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """sst2 has a preset in conf/data/: the suite still runs the own-data path on it (init-data
    writes its own config in the suite's copy). A dataset that cannot run is a row saying why,
    and the suite exits 1 (this one has no label column: preprocess stops)."""
    texts = make_texts(n_per_class=12)[["text", "label"]]
    good = tmp_path / "datasets" / "sst2"
    good.mkdir(parents=True)
    test = texts.groupby("label").head(4)
    test.to_csv(good / "test.csv", index=False)
    texts.drop(test.index).to_csv(good / "train.csv", index=False)
    bad = tmp_path / "datasets" / "atis"
    bad.mkdir()
    (bad / "train.csv").write_text("text\nno label column here\n")
    (bad / "test.csv").write_text("text\nnor here\n")
    proc = subprocess.run(
        [sys.executable, SUITE, "--datasets", str(tmp_path / "datasets"), "--only", "sst2",
         "--only", "atis", "--stages", "preprocess",
         "--set", f"model.name_or_path={tiny_model_dir}", "--set", "model.max_length=32"],
        capture_output=True, text=True, timeout=600, env=env_with_venv(), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    runs = {r["dataset"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])["runs"]}
    assert "error" not in runs["sst2"] and runs["sst2"]["classes"] == 3, runs["sst2"]
    assert "dvc repro preprocess exited" in runs["atis"]["error"], runs["atis"]
    assert "failed: atis" in proc.stderr
