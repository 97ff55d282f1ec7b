"""Experiments: a `dvc exp run --queue` grid run with `dvc queue start`, seen in the MLflow UI.

One temporary git + DVC copy of the project (tiny model, smoke preset, 300 rows, its data
prepared and committed) queues two experiments up to evaluate that differ in
``train.learning_rate`` and runs them with ``dvc queue start``. Then:

- each experiment is exactly one MLflow run named and tagged with its DVC experiment name, and
  ``dvc exp show`` and MLflow agree on its params and metrics;
- the real ``mlflow ui`` on 127.0.0.1, driven by headless Chromium (Selenium + Debian's
  chromedriver), shows both runs in the experiment's training-runs view and their differing
  params and metrics in the run-comparison view. Screenshots are saved (path printed).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import (
    CHROMEDRIVER,
    CHROMIUM,
    CHROMIUM_FLAGS,
    MlflowServer,
    sh,
    tiny_project,
)

pytestmark = pytest.mark.slow

EXPERIMENTS = {"q-lr-low": 0.001, "q-lr-high": 0.004}
QUEUE_TIMEOUT_S = 600


def queue_states(repo: Path) -> dict[str, str]:
    """{experiment name: status} from `dvc queue status`."""
    out = sh(repo, "dvc", "queue", "status").stdout
    states = {}
    for line in out.splitlines():
        for name in EXPERIMENTS:
            if re.search(rf"\b{re.escape(name)}\b", line):
                states[name] = line.split()[-1]
    return states


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Path]:
    root = tiny_project(tmp_path_factory.mktemp("queue"), tiny_model_dir, raw_rows=300)
    sh(root, "dvc", "repro", "augment")  # both experiments start from the same data
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    for name, lr in EXPERIMENTS.items():
        lr_arg = f"train.learning_rate={lr}"
        sh(root, "dvc", "exp", "run", "--queue", "-S", lr_arg, "-n", name, "evaluate")
    began = time.perf_counter()
    sh(root, "dvc", "queue", "start", "-j", "1")
    try:
        while True:
            states = queue_states(root)
            if states and all(s in {"Success", "Failed"} for s in states.values()):
                break
            if time.perf_counter() - began > QUEUE_TIMEOUT_S:
                raise AssertionError(f"queue not done after {QUEUE_TIMEOUT_S} s: {states}")
            time.sleep(3)
        print(f"dvc queue: 2 experiments done in {time.perf_counter() - began:.0f} s: {states}")
        failed = [n for n, s in states.items() if s != "Success"]
        for name in failed:
            print(sh(root, "dvc", "queue", "logs", name, check=False).stdout[-3000:])
        assert not failed, f"queued experiments failed: {failed}"
        yield root
    finally:
        sh(root, "dvc", "queue", "stop", check=False)


def exp_show(repo: Path) -> dict[str, Any]:
    show = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    return {
        rev["name"]: rev["data"]
        for baseline in show
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }


def store(repo: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{repo / '.mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("finetune-pipeline")
    assert experiment is not None, "the queued runs logged into the repository's store"
    return client, experiment.experiment_id


def test_each_queued_experiment_is_one_mlflow_run_agreeing_with_exp_show(repo: Path) -> None:
    exps = exp_show(repo)
    client, experiment_id = store(repo)
    runs = client.search_runs([experiment_id])
    for name, lr in EXPERIMENTS.items():
        mine = [r for r in runs if r.data.tags.get("dvc.experiment") == name]
        assert len(mine) == 1, f"{name}: {len(mine)} MLflow runs"
        (run,) = mine
        assert run.info.run_name == name and run.info.status == "FINISHED"
        data = exps[name]
        params = data["params"]["params.yaml"]["data"]
        assert params["train"]["learning_rate"] == lr
        assert float(run.data.params["train.learning_rate"]) == lr
        assert run.data.params["train.max_steps"] == str(params["train"]["max_steps"])
        metrics = data["metrics"]["metrics/evaluate.json"]["data"]
        assert run.data.metrics["test_f1_macro"] == pytest.approx(metrics["f1_macro"])
        assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])


# --------------------------------------------------------------------------- the real MLflow UI


@pytest.fixture(scope="module")
def mlflow_ui(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = f"sqlite:///{repo / '.mlflow' / 'mlflow.db'}"
    root = tmp_path_factory.mktemp("mlflow-ui")
    with MlflowServer(root, command="ui", backend_uri=store) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM and Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        *CHROMIUM_FLAGS,
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_text(driver: Any, needles: list[str], timeout_s: float = 60) -> str:
    """The page's visible text once it contains every needle (fails with what was missing)."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(n in text for n in needles):
            return text
        time.sleep(0.5)
    missing = [n for n in needles if n not in text]
    raise AssertionError(f"page never showed {missing}; it shows:\n{text[:3000]}")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mlflow-ui-screenshots")
    print(f"\nMLflow UI screenshots: {path}")
    return path


def test_mlflow_ui_experiment_view_lists_both_runs(
    repo: Path, mlflow_ui: str, browser: Any, shots: Path
) -> None:
    _, experiment_id = store(repo)
    browser.get(f"{mlflow_ui}/#/experiments/{experiment_id}/runs")
    text = wait_for_text(browser, [*EXPERIMENTS, "finetune-pipeline"])
    browser.save_screenshot(str(shots / "experiment_runs.png"))
    assert all(name in text for name in EXPERIMENTS)


def test_mlflow_ui_compare_view_shows_differing_params_and_metrics(
    repo: Path, mlflow_ui: str, browser: Any, shots: Path
) -> None:
    client, experiment_id = store(repo)
    runs = {
        r.data.tags["dvc.experiment"]: r
        for r in client.search_runs([experiment_id])
        if r.data.tags.get("dvc.experiment") in EXPERIMENTS
    }
    ids = [runs[name].info.run_id for name in EXPERIMENTS]
    query = urllib.parse.urlencode(
        {"runs": json.dumps(ids), "experiments": json.dumps([experiment_id])}
    )
    browser.get(f"{mlflow_ui}/#/compare-runs?{query}")
    wait_for_text(browser, [*EXPERIMENTS, "Run details", "Show diff only"])
    browser.save_screenshot(str(shots / "compare_runs.png"))
    # "Show diff only" for params, metrics and tags: what differs between the two runs remains.
    for switch in browser.find_elements("css selector", "[role=switch]"):
        if switch.get_attribute("aria-checked") != "true":
            switch.click()
    a, b = (runs[name].data.metrics for name in EXPERIMENTS)
    differing = sorted(k for k in a if k in b and f"{a[k]:.3g}" != f"{b[k]:.3g}")
    assert differing, "two learning rates give different losses"
    first = differing[0]  # the metrics table is virtualised: its first rows are rendered
    text = wait_for_text(browser, ["train.learning_rate", first])
    details = browser.find_element("xpath", "//*[text()='Run details']")
    browser.execute_script("arguments[0].scrollIntoView()", details)
    browser.save_screenshot(str(shots / "compare_runs_diff_only.png"))
    rows = text.splitlines()
    (lr_row,) = [r for r in rows if r.startswith("train.learning_rate ")]
    assert set(lr_row.split()[1:]) == {str(lr) for lr in EXPERIMENTS.values()}, lr_row
    assert "train.max_steps" not in text, "equal params are hidden by show-diff-only"
    for value in (a[first], b[first]):
        shown = {f"{value:.{d}g}" for d in range(3, 7)} | {f"{value:.{d}f}" for d in range(2, 5)}
        assert any(s in rows for s in shown), f"{first}={value} not shown:\n{text[-2000:]}"
