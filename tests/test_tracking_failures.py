"""What happens when the tracking server is not there: a real `mlflow server` that the tests
stop. An unreachable URI stops a stage or command within seconds with one line; a server that
goes away during training costs no output and a rerun completes the same run; a registry that
fails in the middle of the promotion gate moves no alias."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import make_stage_cfg, make_texts, train_stage, typed
from tests.helpers import BIN, MlflowServer, env_with_venv, free_port, sh, tiny_project

pytestmark = pytest.mark.slow


def run(repo: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``args`` in ``repo`` with ``env`` added (the tracking URI, say); (process, seconds)."""
    full = env_with_venv(**env)
    for var in ("DVC_ROOT", "DVC_EXP_NAME"):
        full.pop(var, None)
    began = time.perf_counter()
    proc = subprocess.run(args, cwd=repo, env=full, capture_output=True, text=True, timeout=600)
    return proc, time.perf_counter() - began


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny project with preprocess and augment done (they need no tracking store)."""
    root = tiny_project(tmp_path_factory.mktemp("repo"), tiny_model_dir, raw_rows=200)
    sh(root, "dvc", "repro", "augment")
    return root


def test_unreachable_server_stops_train_within_seconds_with_one_line(repo: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc, seconds = run(repo, "dvc", "repro", "-f", "train", MLFLOW_TRACKING_URI=uri)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert seconds < 30, f"took {seconds:.0f} s"
    # -f forces the stages before train too: the first of them stops, in seconds
    (line,) = [x for x in output.splitlines() if "stage preprocess failed" in x]
    assert f"MLflow tracking server {uri} is unreachable" in line
    assert "unset MLFLOW_TRACKING_URI to use the local store" in line
    assert "Traceback" not in output
    assert not (repo / "models" / "model").exists()
    # the same failure in a command, and the traceback only when asked for
    proc, seconds = run(repo, str(BIN / "finetune"), "aliases", MLFLOW_TRACKING_URI=uri)
    assert proc.returncode == 1 and seconds < 30
    assert f"finetune aliases failed: MLflow tracking server {uri} is unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc, _ = run(
        repo, "dvc", "repro", "-f", "train", MLFLOW_TRACKING_URI=uri, FINETUNE_LOG_LEVEL="DEBUG"
    )
    assert proc.returncode != 0 and "Traceback" in proc.stdout + proc.stderr


def test_server_gone_during_training_keeps_outputs_and_a_rerun_completes_the_run(
    repo: Path, tmp_path: Path
) -> None:
    sh(repo, sys.executable, "-m", "finetune.core.config", "compose",
       "train.max_steps=-1", "train.epochs=6", "train.logging_steps=2",
       "train.keep_checkpoints=true", "tracking.outage_wait_s=0")  # fmt: skip
    server = MlflowServer(tmp_path / "server").start()
    env = env_with_venv(MLFLOW_TRACKING_URI=server.url, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1")
    try:
        child = subprocess.Popen(
            ["dvc", "repro", "train"],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        checkpoints = repo / "checkpoints"
        deadline = time.monotonic() + 300
        while not any(checkpoints.glob("*/checkpoint-*/trainer_state.json")):
            assert child.poll() is None, child.stdout.read() if child.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.stop()  # the first epoch is checkpointed: the server goes away mid-training
        output, _ = child.communicate(timeout=600)
        assert child.returncode != 0, output
        assert "stopped answering during training" in output, output
        assert "The model and every output are written" in output
        assert (repo / "models" / "model" / "config.json").is_file()
        assert (repo / "reports" / "train" / "metrics.json").is_file()
        run_id = json.loads((repo / "models" / "mlflow_run.json").read_text())["run_id"]
        (pending,) = checkpoints.glob("*/pending_metrics.jsonl")
        assert pending.read_text().count("\n") > 0, "metric points wait for the server"

        server.start()  # back, same store
        proc, _ = run(repo, "dvc", "repro", "train", MLFLOW_TRACKING_URI=server.url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads((repo / "models" / "mlflow_run.json").read_text())["run_id"] == run_id
        client = MlflowClient(server.url)
        finished = client.get_run(run_id)
        assert finished.info.status == "FINISHED"
        state_file = max(
            checkpoints.glob("*/checkpoint-*/trainer_state.json"),
            key=lambda p: int(p.parent.name.split("-")[1]),
        )
        logged = json.loads(state_file.read_text())["log_history"]
        losses = [e for e in logged if "loss" in e]
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == sorted(e["step"] for e in losses)
        evals = {e["step"] for e in logged if "eval_f1_macro" in e}
        assert evals <= {m.step for m in client.get_metric_history(run_id, "eval_f1_macro")}
        assert not list(checkpoints.glob("*/pending_metrics.jsonl"))
        versions = client.search_model_versions("name='support_tickets'")
        assert [v.run_id for v in versions] == [run_id], "the rerun registered its model once"
    finally:
        server.stop()
        sh(repo, "git", "checkout", "--", "params.yaml")


# --------------------------------------------------------------------------- the registry


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Any:
    """A real server whose registry holds v1 (champion) and v2 (challenger)."""
    from finetune.augment import augment
    from finetune.data import preprocess

    tmp_path = tmp_path_factory.mktemp("registry")
    server = MlflowServer(tmp_path / "server").start()
    cfg = make_stage_cfg(tmp_path / "ws", tiny_model_dir, make_texts())
    cfg["tracking"]["uri"] = server.url
    cfg["augment"]["enabled"] = False
    cfg["train"].update({"epochs": 1, "progress_bar": False})
    for stage in (preprocess, augment, train_stage):
        stage.run(cfg)
    cfg["train"]["learning_rate"] = 3e-3
    train_stage.run(cfg)
    try:
        yield server, typed(cfg)
    finally:
        server.stop()


def aliases(url: str) -> dict[str, str]:
    registered = MlflowClient(url).get_registered_model("support_tickets")
    return {k: str(v) for k, v in registered.aliases.items()}


def test_registry_failing_in_the_middle_of_the_gate_moves_no_alias(
    two_versions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.registry import gate
    from finetune.registry.aliases import RegistryError

    server, cfg = two_versions
    assert aliases(server.url) == {"champion": "1", "challenger": "2"}
    real = MlflowClient.get_registered_model
    calls: list[str] = []

    def outage_on_the_second_lookup(self: MlflowClient, name: str) -> Any:
        calls.append(name)
        if len(calls) != 2:  # the challenger lookup, and the calls after the outage
            return real(self, name)
        server.stop()  # the champion lookup meets a store that does not answer ...
        try:
            return real(self, name)
        finally:
            server.start()  # ... and it is back for whatever the gate does next

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(MlflowClient, "get_registered_model", outage_on_the_second_lookup)
    with pytest.raises(RegistryError, match=r"cannot read alias support_tickets@champion .*"
                       r"nothing was changed"):  # fmt: skip
        gate.apply_gate(cfg, cfg.promotion.model_copy(update={"min_f1_gain": -1.0}))
    monkeypatch.undo()
    assert len(calls) == 2
    assert aliases(server.url) == {"champion": "1", "challenger": "2"}, "nothing moved"
    version = MlflowClient(server.url).get_model_version("support_tickets", "2")
    assert not any(k.startswith("promotion.") for k in version.tags), "no decision recorded"
    # with the store answering, the same gate now runs and promotes (margin -1)
    result = gate.apply_gate(cfg, cfg.promotion.model_copy(update={"min_f1_gain": -1.0}))
    assert result.decision is not None and result.decision.promote
    assert aliases(server.url) == {"champion": "2", "challenger": "2"}


def test_a_model_without_aliases_is_the_only_absent_case(two_versions: Any) -> None:
    from finetune.registry.aliases import alias_version

    server, _ = two_versions
    client = MlflowClient(server.url)
    assert alias_version(client, "no-such-model", "champion") is None
    client.delete_registered_model_alias("support_tickets", "champion")
    assert alias_version(client, "support_tickets", "champion") is None
    assert alias_version(client, "support_tickets", "challenger").version == "2"
