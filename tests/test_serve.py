"""`mlflow models serve` answers real HTTP requests on localhost: the champion (transformers
flavour) and the export stage's ONNX version (pyfunc on onnxruntime)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from finetune.export import export
from finetune.modeling.classifier import open_classifier
from finetune.monitoring import predlog
from tests.conftest import make_stage_cfg, make_texts, train_tiny
from tests.helpers import free_port, stop_group, wait_until_up

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def champion_store(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> dict[str, Any]:
    cfg = make_stage_cfg(tmp_path_factory.mktemp("serve"), tiny_model_dir, make_texts())
    return train_tiny(cfg)  # the first registered version becomes champion


def ask_served_model(
    model_uri: str, tracking_uri: str, texts: list[str], log_path: Path, **extra_env: str
) -> Any:
    """Start `mlflow models serve -m model_uri`, POST ``texts`` to /invocations, stop it."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **extra_env,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                "mlflow",
                "models",
                "serve",
                "-m",
                model_uri,
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
            print(f"mlflow models serve {model_uri} ready in {time.perf_counter() - began:.1f} s")
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=json.dumps({"inputs": texts}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200
                return json.loads(response.read())
        finally:
            stop_group(proc)


TEXTS = ["my card was charged twice refund please", "parcel not arrived"]


def test_champion_served_over_http(champion_store: dict[str, Any], tmp_path: Path) -> None:
    name = champion_store["tracking"]["registered_model_name"]
    answer = ask_served_model(
        f"models:/{name}@champion", champion_store["tracking"]["uri"], TEXTS, tmp_path / "s.log"
    )
    predictions = answer["predictions"]
    assert len(predictions) == 2, answer
    for item in predictions:
        assert item["label"] in {"account", "billing", "shipping"}
        assert 0 <= float(item["score"]) <= 1


def test_onnx_model_served_over_http(champion_store: dict[str, Any], tmp_path: Path) -> None:
    """The export stage's registered ONNX version: label, confidence and every probability;
    with FINETUNE_PREDICTION_LOG set it appends each request to the prediction log."""
    cfg = copy.deepcopy(champion_store)
    cfg["export"].update({"max_f1_drop": 1.0, "latency_texts": 5, "variants": ["int8"]})
    # each request written as it comes (the flush at shutdown, which a loaded machine's SIGKILL
    # after 20 s can cut, is tested on the writer in test_monitor.py)
    cfg["monitor"]["log_flush_rows"] = 1
    export.run(cfg)
    name = f"{cfg['tracking']['registered_model_name']}-onnx"
    log_dir = tmp_path / "predictions"
    answer = ask_served_model(
        f"models:/{name}/1",
        cfg["tracking"]["uri"],
        TEXTS,
        tmp_path / "onnx.log",
        FINETUNE_PREDICTION_LOG=str(log_dir),
    )
    predictions = answer["predictions"]
    assert len(predictions) == 2, answer
    expected = open_classifier(cfg["paths"]["export_dir"]).predict(TEXTS, 8, 32).probabilities
    for item, probs in zip(predictions, expected, strict=True):
        assert set(item) == {"label", "score", "prob_account", "prob_billing", "prob_shipping"}
        assert item["label"] == ["account", "billing", "shipping"][int(np.argmax(probs))]
        assert item["score"] == pytest.approx(float(probs.max()), abs=1e-5)
        total = item["prob_account"] + item["prob_billing"] + item["prob_shipping"]
        assert total == pytest.approx(1.0, abs=1e-5)
    logged = predlog.read_log(log_dir, None)
    assert logged["text"].tolist() == TEXTS
    assert logged["predicted"].tolist() == [item["label"] for item in predictions]
    assert logged["model"].iloc[0] == f"{cfg['tracking']['registered_model_name']} v1 (onnx int8)"
