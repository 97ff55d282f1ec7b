"""`mlflow models serve -m models:/<name>@champion` answers a real HTTP request on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from finetune.augment import augment
from finetune.data import preprocess
from finetune.training import train
from tests.conftest import make_stage_cfg, make_texts
from tests.helpers import free_port, stop_group, wait_until_up

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def champion_store(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> dict[str, Any]:
    cfg = make_stage_cfg(tmp_path_factory.mktemp("serve"), tiny_model_dir, make_texts())
    cfg["augment"]["enabled"] = False
    for stage in (preprocess, augment, train):
        stage.run(cfg)  # the first registered version becomes champion
    return cfg


def test_champion_served_over_http(champion_store: dict[str, Any], tmp_path: Path) -> None:
    name = champion_store["tracking"]["registered_model_name"]
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion_store["tracking"]["uri"],
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{name}@champion",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "-p",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its workers below
        )
        try:
            began = time.perf_counter()
            wait_until_up(f"http://127.0.0.1:{port}/ping", proc, log_path, STARTUP_TIMEOUT_S)
            print(f"mlflow models serve ready in {time.perf_counter() - began:.1f} s")
            body = json.dumps(
                {"inputs": ["my card was charged twice refund please", "parcel not arrived"]}
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200
                answer = json.loads(response.read())
        finally:
            stop_group(proc)
    predictions = answer["predictions"]
    assert len(predictions) == 2, answer
    for item in predictions:
        assert item["label"] in {"account", "billing", "shipping"}
        assert 0 <= float(item["score"]) <= 1
