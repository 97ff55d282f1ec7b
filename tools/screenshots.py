"""The documentation's screenshots (``docs/img/``) of the demo's results, after ``make run``: the
error-analysis report, and the MLflow UI's experiment page and run page, in headless Chromium
(Debian's ``chromium`` and ``chromium-driver``: ``.ci/run`` installs them).

    make screenshots        # python tools/screenshots.py [--out docs/img]

The MLflow UI is started on the repository's store (``.mlflow/mlflow.db``, as ``make mlflow-ui``)
on a free port and stopped afterwards. Fails with what is missing when the demo has not run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "error_analysis" / "report.html"
STORE = ROOT / ".mlflow" / "mlflow.db"
EXPERIMENT = "finetune-pipeline"
sys.path.insert(0, str(ROOT))  # tools.local_web, when run as `python tools/screenshots.py`
from tools.local_web import CHROMEDRIVER, CHROMIUM_FLAGS, MlflowServer  # noqa: E402

FLAGS = (*CHROMIUM_FLAGS, "--hide-scrollbars")

log = logging.getLogger("screenshots")


def chromium() -> str:
    found = shutil.which("chromium")
    if not found or not Path(CHROMEDRIVER).is_file():
        raise SystemExit(
            "needs Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (.ci/run installs them)"
        )
    return found


def save_png(source: Path, dest: Path, height: int | None = None) -> None:
    """``source`` as an optimised PNG at ``dest``, cut to its top ``height`` pixels if given."""
    from PIL import Image

    image = Image.open(source)
    if height is not None and image.height > height:
        image = image.crop((0, 0, image.width, height))
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, optimize=True)
    log.info("wrote %s (%dx%d)", dest, image.width, image.height)


def report_shot(browser: str, out: Path, work: Path) -> None:
    """The top of the error report: the verdict, the summary, the confusions."""
    if not REPORT.is_file():
        raise SystemExit(f"{REPORT.relative_to(ROOT)} is missing: run `make run` first")
    shot = work / "report.png"
    subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={work / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,1800", REPORT.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    save_png(shot, out / "error-report.png")


@contextmanager
def mlflow_ui(work: Path) -> Iterator[str]:
    """``mlflow ui`` on the repository's store, on a free port: its URL while it answers."""
    if not STORE.is_file():
        raise SystemExit(f"{STORE.relative_to(ROOT)} is missing: run `make run` first")
    with MlflowServer(work / "mlflow-ui", command="ui", backend_uri=f"sqlite:///{STORE}") as ui:
        yield ui.url


def wait_for_text(driver: Any, needles: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(n in text for n in needles):
            time.sleep(1)  # charts and icons finish drawing
            return
        time.sleep(0.5)
    raise SystemExit(f"the MLflow UI never showed {needles}")


def mlflow_shots(browser: str, out: Path, work: Path) -> None:
    """The experiment's runs, and the latest training run's page (params, metrics, tags)."""
    from mlflow.tracking import MlflowClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    client = MlflowClient(f"sqlite:///{STORE}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    if not runs:
        raise SystemExit(f"no runs in experiment {EXPERIMENT!r} of {STORE}: run `make run`")
    run = runs[0]  # the latest
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, "--window-size=1600,1000", f"--user-data-dir={work / 'profile2'}"):
        options.add_argument(flag)
    with mlflow_ui(work) as url:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(60)
            driver.get(f"{url}/#/experiments/{experiment.experiment_id}/runs")
            wait_for_text(driver, [EXPERIMENT, run.info.run_name])
            driver.save_screenshot(str(work / "runs.png"))
            save_png(work / "runs.png", out / "mlflow-runs.png")
            driver.get(f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
            wait_for_text(driver, [run.info.run_name, "Parameters", "Metrics"])
            driver.save_screenshot(str(work / "run.png"))
            save_png(work / "run.png", out / "mlflow-run.png")
        finally:
            driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    browser = chromium()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        report_shot(browser, args.out.resolve(), Path(tmp))
        mlflow_shots(browser, args.out.resolve(), Path(tmp))


if __name__ == "__main__":
    main()
