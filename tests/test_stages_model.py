"""train -> evaluate -> error_analysis run() with the tiny model: outputs and one MLflow run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from finetune.augment import augment
from finetune.core.errors import ConfigError, ModelNotFoundError
from finetune.data import preprocess
from finetune.evaluation import evaluate
from finetune.training import train
from finetune.training.hardware import select_precision
from tests.conftest import config


@pytest.fixture
def trained(pipeline_cfg: dict[str, Any]) -> dict[str, Any]:
    return pipeline_cfg


def _client(cfg: dict[str, Any]) -> MlflowClient:
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    return MlflowClient()


def _runs(cfg: dict[str, Any]) -> list[Any]:
    client = _client(cfg)
    exp = client.get_experiment_by_name(cfg["tracking"]["experiment_name"])
    return client.search_runs([exp.experiment_id])


def test_train_saves_model_run_info_and_logs_run(trained: dict[str, Any]) -> None:
    paths = trained["paths"]
    model_dir = Path(paths["model_dir"])
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "account", "1": "billing", "2": "shipping"}
    metrics = json.loads(Path(paths["train_report"]).read_text())
    assert 0 <= metrics["val_f1_macro"] <= 1 and metrics["precision"] == "fp32"
    headline = json.loads(Path(paths["metrics_train"]).read_text())  # the DVC metrics file
    assert set(headline) == {"val_f1_macro", "val_accuracy", "val_loss", "epochs", "steps",
                             "stop_reason"}  # fmt: skip
    assert headline["val_f1_macro"] == metrics["val_f1_macro"]
    assert headline["steps"] == metrics["steps"] and headline["epochs"] == round(
        metrics["epochs"], 2
    )
    run_id = json.loads(Path(paths["run_info"]).read_text())["run_id"]
    (run,) = _runs(trained)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.info.run_name.startswith("repro-")
    experiment = _client(trained).get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.params["train.learning_rate"] == "0.005"
    assert run.data.params["model.name_or_path"] == trained["model"]["name_or_path"]
    assert "val_f1_macro" in run.data.metrics and "train_loss" in run.data.metrics
    history = _client(trained).get_metric_history(run_id, "loss")
    assert len(history) >= 2, "training loss is logged per logging step"
    assert len(_client(trained).get_metric_history(run_id, "eval_f1_macro")) >= 2  # per epoch
    versions = _client(trained).search_model_versions(
        f"name='{trained['tracking']['registered_model_name']}'"
    )
    assert [v.run_id for v in versions] == [run_id]


def test_logged_model_predicts_raw_texts(trained: dict[str, Any]) -> None:
    run_id = json.loads(Path(trained["paths"]["run_info"]).read_text())["run_id"]
    _client(trained)
    model_uri = mlflow.get_run(run_id).outputs.model_outputs[0].model_id
    loaded = mlflow.pyfunc.load_model(f"models:/{model_uri}")
    out = loaded.predict(["my refund is late", "parcel tracking please"])
    assert list(out["label"]) and set(out["label"]) <= {"account", "billing", "shipping"}
    assert ((out["score"] > 0) & (out["score"] <= 1)).all()


def test_evaluate_and_error_analysis_log_into_the_train_run(trained: dict[str, Any]) -> None:
    paths = trained["paths"]
    metrics = json.loads(Path(paths["evaluate_metrics"]).read_text())
    summary = json.loads(Path(paths["error_metrics"]).read_text())
    per_class = json.loads(Path(paths["evaluate_per_class"]).read_text())
    assert set(per_class) == {"account", "billing", "shipping"}
    test_split = pd.read_parquet(Path(paths["processed_dir"]) / "test.parquet")
    assert per_class["billing"]["support"] == int((test_split["label"] == "billing").sum())
    assert metrics["num_examples"] == len(test_split)
    preds = pd.read_parquet(paths["predictions"])
    assert metrics["accuracy"] == pytest.approx(float(preds["correct"].mean()))
    assert np.allclose(preds[[c for c in preds if c.startswith("prob_")]].sum(axis=1), 1, atol=1e-5)
    plot = pd.read_csv(paths["confusion_plot"])
    assert list(plot.columns) == ["actual", "predicted"] and len(plot) == 12
    assert summary["num_errors"] == int((~preds["correct"]).sum())
    report = Path(paths["error_report"]).read_text()
    assert "## Most frequent confusions" in report and "most confident first" in report
    (run,) = _runs(trained)  # still one run: evaluate and error_analysis resumed it
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert "errors_num_errors" in run.data.metrics
    artifacts = {a.path for a in _client(trained).list_artifacts(run.info.run_id, "evaluate")}
    assert "evaluate/confusion_matrix.png" in artifacts
    names = {a.path for a in _client(trained).list_artifacts(run.info.run_id, "error_analysis")}
    assert "error_analysis/report.md" in names


def test_evaluate_when_the_run_is_not_in_this_store(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    cfg = copy.deepcopy(trained)
    cfg["tracking"]["uri"] = f"sqlite:///{tmp_path / 'other.db'}"
    cfg["paths"]["evaluate_metrics"] = str(tmp_path / "m.json")
    cfg["paths"]["predictions"] = str(tmp_path / "p.parquet")
    cfg["paths"]["confusion_plot"] = str(tmp_path / "c.csv")
    evaluate.run(cfg)
    (run,) = _runs(cfg)
    original = json.loads(Path(trained["paths"]["run_info"]).read_text())["run_id"]
    assert run.data.tags["finetune.train_run_id"] == original


def test_a_failing_later_stage_is_recorded_without_failing_the_train_run(tmp_path: Path) -> None:
    """export (or evaluate, error_analysis) failing leaves train's run FINISHED, with the
    stage's outcome in its own tags; a later success clears the error."""
    from finetune.tracking import runs as tracking

    cfg = config({"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}).tracking
    experiment_id = tracking.setup(cfg)
    with tracking.active_run(None, experiment_id) as run:  # what train leaves behind
        run_id = run.info.run_id
    info = tmp_path / "run_info.json"
    info.write_text(json.dumps({"run_id": run_id}))
    with (
        pytest.raises(RuntimeError, match="onnx said no"),
        tracking.train_run(info, cfg, stage="export"),
    ):
        raise RuntimeError("onnx said no")
    run = MlflowClient(tracking_uri=cfg.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["export.status"] == "failed"
    assert run.data.tags["export.error"] == "RuntimeError: onnx said no"
    with tracking.train_run(info, cfg, stage="export"):
        pass
    run = MlflowClient(tracking_uri=cfg.uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["export.status"] == "succeeded"
    assert "export.error" not in run.data.tags


def test_a_model_that_cannot_load_fails_before_any_run(stage_cfg: dict[str, Any]) -> None:
    preprocess.run(stage_cfg)
    augment.run(stage_cfg)
    bad = copy.deepcopy(stage_cfg)
    bad["model"]["name_or_path"] = "./no/such/model"
    with pytest.raises(ModelNotFoundError, match=r"'./no/such/model' looks like a local path but"):
        train.run(bad)
    mlflow.set_tracking_uri(stage_cfg["tracking"]["uri"])
    assert MlflowClient().get_experiment_by_name("finetune-pipeline") is None, "no run opened"


def test_failed_train_marks_run_failed_and_writes_nothing(stage_cfg: dict[str, Any]) -> None:
    preprocess.run(stage_cfg)
    augment.run(stage_cfg)
    stage_cfg["train"]["freeze_layers"] = 5  # the tiny model has 2: fails once the run is open
    with pytest.raises(ConfigError, match="train.freeze_layers=5 but the model has only 2"):
        train.run(stage_cfg)
    (run,) = _runs(stage_cfg)
    assert run.info.status == "FAILED"
    for key in ("model_dir", "run_info", "train_report"):
        assert not Path(stage_cfg["paths"][key]).exists()


def test_train_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown key train\.learning_rat; did you mean"):
        config({"train.learning_rat": 1})
    with pytest.raises(ConfigError, match=r"train\.precision=\"fp8\": Input should be 'auto'"):
        config({"train.precision": "fp8"})
    with pytest.raises(ConfigError, match=r"train\.batch_size=0: Input should be greater"):
        config({"train.batch_size": 0})
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        select_precision("fp16")
    assert select_precision("auto") in {"bf16", "fp32"}
