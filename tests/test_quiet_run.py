"""Quiet runs: the pipeline's stages (preprocess through export) give none of the warnings every
run used to print (MLflow's "add type hints" for the pyfunc models and "no artifacts at artifact
path" at registration, the ONNX exporter's tracer and indexing warnings, pyspark's pandas
notice), and a warning raised in the project's own code is an error."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from finetune.core.runner import configure_logging
from tests.conftest import make_stage_cfg, make_texts, train_stage

ROUTINE = (
    "Add type hints to the `predict` method",
    "Converting a tensor to a Python boolean might cause the trace to be incorrect",
    "Exporting aten::index operator of advanced indexing",
    "You are using the legacy TorchScript-based ONNX export",
    "PySpark does not yet fully support pandas",
    "has no artifacts at artifact path",
)


def test_the_stages_give_no_routine_warning_and_our_code_none_at_all(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.analysis import error_analysis
    from finetune.augment import augment
    from finetune.data import preprocess
    from finetune.evaluation import evaluate
    from finetune.export import export
    from finetune.lifecycle import spark_predict
    from finetune.modeling import onnx_pyfunc

    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)
    cfg = make_stage_cfg(tmp_path, tiny_model_dir, make_texts())
    cfg["export"]["latency_texts"] = 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        configure_logging()  # what every stage does first (known library warnings)
        warnings.filterwarnings("error", module=r"finetune(\.|$)")  # our own code: an error
        # the pyfunc classes warn when they are defined: define them again, as a fresh process
        for module in (onnx_pyfunc, spark_predict):
            source = Path(module.__file__).read_text()
            exec(compile(source, module.__file__, "exec"), {"__name__": module.__name__})
        for stage in (preprocess, augment, train_stage, evaluate, error_analysis, export):
            stage.run(cfg)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not [s for s in shown if any(r in s for r in ROUTINE)], shown
    assert any(Path(cfg["paths"]["export_dir"]).glob("*.onnx")), "export ran to the end"
