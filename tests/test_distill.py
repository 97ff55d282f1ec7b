"""Distillation: a tiny teacher's soft targets train a tiny (shallower) student."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch

from finetune.core.artifacts import load_labels
from finetune.core.errors import ConfigError
from finetune.modeling.backbones import load_classifier, load_trained
from finetune.training import train, trainer
from finetune.training.distill import (
    TEACHER_COLUMN,
    distillation_loss,
    keep_every_kth_layer,
    teacher_log_probs,
)
from tests.conftest import config, make_stage_cfg, make_texts, train_tiny


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    cfg = make_stage_cfg(tmp_path_factory.mktemp("teacher"), tiny_model_dir, make_texts())
    return train_tiny(cfg)


def student_cfg(base: dict[str, Any], workspace: Path, **distill: Any) -> dict[str, Any]:
    """The teacher's config with the student's outputs in ``workspace`` and distillation on."""
    cfg = copy.deepcopy(base)
    for key in ("model_dir", "run_info", "train_report", "checkpoints_dir"):
        cfg["paths"][key] = str(workspace / Path(base["paths"][key]).name)
    cfg["train"]["distill"].update({"enabled": True, "teacher": base["paths"]["model_dir"]})
    cfg["train"]["distill"].update(distill)
    cfg["tracking"]["registered_model_name"] = "students"
    return cfg


def test_loss_blends_soft_and_hard_targets() -> None:
    student = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert distillation_loss(student, student * 5, labels, 2.0, 0.0) == pytest.approx(float(ce))
    assert float(distillation_loss(student, student, labels, 2.0, 1.0)) == pytest.approx(
        0, abs=1e-6
    )
    teacher = torch.tensor([[0.0, 3.0, 0.0], [0.0, 3.0, 0.0]])
    mixed = distillation_loss(student, teacher, labels, 2.0, 0.5)
    soft_only = distillation_loss(student, teacher, labels, 2.0, 1.0)
    assert float(mixed) == pytest.approx(0.5 * float(soft_only) + 0.5 * float(ce), rel=1e-5)


def test_keep_every_kth_layer_makes_a_shallower_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_classifier(str(tiny_model_dir), ["a", "b"])
    top = model.bert.encoder.layer[1]
    assert keep_every_kth_layer(model, 2) == 1
    assert model.config.num_hidden_layers == 1
    assert model.bert.encoder.layer[0] is top  # the top block is the one kept
    model.save_pretrained(tmp_path)
    reloaded = load_classifier(str(tmp_path), ["a", "b"])
    assert len(reloaded.bert.encoder.layer) == 1


def test_teacher_soft_targets_reach_the_loss(teacher: dict[str, Any], tmp_path: Path) -> None:
    labels = load_labels(teacher["paths"]["processed_dir"])
    texts = ["my card was charged twice", "parcel not arrived"]
    logits = teacher_log_probs((teacher["paths"]["model_dir"],) * 2, texts, labels, 8)
    assert logits.shape == (2, len(labels))
    assert torch.tensor(logits).exp().sum(dim=1).numpy() == pytest.approx([1, 1], abs=1e-4)
    spec = config({"train.distill.enabled": True, "train.distill.teacher": "x"}).train
    model, tokenizer = trainer.build_model(teacher["model"]["name_or_path"], labels, spec, "cls")
    df = pd.DataFrame({"text": texts, "label_id": [1, 2]})
    ds = trainer.tokenize(df, tokenizer, 32, logits)
    built = trainer.build_trainer(model, tokenizer, ds, ds, spec, "fp32", str(tmp_path), 0)
    batch = next(iter(built.get_train_dataloader()))
    assert TEACHER_COLUMN in batch and batch[TEACHER_COLUMN].shape == (2, len(labels))
    loss = built.compute_loss(model, dict(batch))
    assert torch.isfinite(loss)


def test_student_trains_and_records_its_teacher(teacher: dict[str, Any], tmp_path: Path) -> None:
    name = teacher["tracking"]["registered_model_name"]
    cfg = student_cfg(
        teacher,
        tmp_path,
        teacher=[teacher["paths"]["model_dir"], f"models:/{name}/1"],  # an ensemble of two
        keep_every_kth_layer=2,
    )
    result = train.run(cfg)
    assert result.metrics["val_f1_macro"] > 0
    student, _ = load_trained(cfg["paths"]["model_dir"])
    assert student.config.num_hidden_layers == 1
    assert len(student.bert.encoder.layer) == 1
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    run = mlflow.get_run(
        mlflow.search_runs(
            experiment_names=[cfg["tracking"]["experiment_name"]],
            filter_string="tags.`distill.teacher` != ''",
        ).iloc[0]["run_id"]
    )
    assert run.data.tags["distill.teacher"] == (
        f"{teacher['paths']['model_dir']}, models:/{name}/1"
    )
    assert run.data.tags["model.layers"] == "1"
    assert run.data.params["train.distill.keep_every_kth_layer"] == "2"


def test_teacher_with_other_labels_is_refused(teacher: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"teacher .* predicts .* same label set"):
        teacher_log_probs((teacher["paths"]["model_dir"],), ["x"], ["neg", "pos"], 8)


def test_enabled_without_teacher_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"train.distill.*teacher is not set"):
        config({"train.distill.enabled": True, "train.distill.teacher": None})
