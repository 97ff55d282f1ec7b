"""train: fine-tune a pretrained transformer for sequence classification with the HF Trainer.

Everything comes from ``train.*`` in params.yaml (conf/train/): full fine-tuning or LoRA,
freezing, optimiser, precision, early stopping, class weights, checkpoints for resumption.
Runs as one process or under ``torchrun`` / ``accelerate launch`` (DDP); only rank 0 talks to
MLflow and writes the stage outputs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from finetune.core.artifacts import load_labels, load_split
from finetune.core.io import StagedOutputs, file_md5, write_json
from finetune.modeling.backbones import (
    pooling_of,
)
from finetune.registry.aliases import mark_challenger
from finetune.tracking import inputs as data_report
from finetune.tracking import runs as tracking
from finetune.tracking.models import log_model
from finetune.training.callbacks import mlflow_callback
from finetune.training.checkpoints import (
    MLFLOW_RUN_FILE,
    checkpoint_key,
    checkpoint_root,
    resumable_run_id,
)
from finetune.training.hardware import dist_info, end_distributed
from finetune.training.model_card import model_card
from finetune.training.trainer import TrainResult, TrainSpec, fine_tune

log = logging.getLogger(__name__)


def run(cfg: Any) -> TrainResult:
    """Stage entry: augmented train set + validation split -> model dir + run info + metrics."""
    import mlflow

    paths, tracking_cfg = cfg["paths"], cfg["tracking"]
    spec = TrainSpec.from_config(cfg["train"])
    pooling = pooling_of(cfg["model"])
    labels = load_labels(paths["processed_dir"])
    train_path = Path(paths["augmented_dir"]) / "train.parquet"
    validation_path = Path(paths["processed_dir"]) / "validation.parquet"
    train_df = pd.read_parquet(train_path)
    validation_df = load_split(paths["processed_dir"], "validation")
    data_files = [train_path, validation_path, Path(paths["processed_dir"]) / "label_map.json"]
    key = checkpoint_key(cfg, data_files)
    ckpt_dir = checkpoint_root(paths) / key
    rank, _ = dist_info()
    train_args = (
        train_df,
        validation_df,
        labels,
        str(cfg["model"]["name_or_path"]),
        int(cfg["model"]["max_length"]),
        spec,
        int(cfg["seed"]),
    )
    if rank != 0:  # DDP worker: train in lockstep; rank 0 logs and writes every output
        fine_tune(
            *train_args, callbacks=[mlflow_callback()], checkpoint_dir=ckpt_dir, pooling=pooling
        )
        end_distributed()
        return TrainResult(None, None, labels, {})

    experiment_id = tracking.setup(tracking_cfg)
    previous = resumable_run_id(ckpt_dir)
    with tracking.active_run(
        previous, experiment_id, run_name=None if previous else tracking.run_name()
    ) as active:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json(ckpt_dir / MLFLOW_RUN_FILE, {"run_id": active.info.run_id})
        if previous is None:
            mlflow.set_tags(tracking.run_tags())
            mlflow.log_params(tracking.flatten({k: v for k, v in cfg.items() if k != "paths"}))
            data_report.log_to_mlflow(paths)  # what preprocess/augment did to this model's data
        mlflow.set_tag("train.checkpoint_key", key)
        mlflow.log_metrics({"train_rows": len(train_df), "validation_rows": len(validation_df)})
        result = fine_tune(
            *train_args, callbacks=[mlflow_callback()], checkpoint_dir=ckpt_dir, pooling=pooling
        )
        end_distributed()
        mlflow.log_metrics(
            {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
        )
        if result.metrics["best_epoch"] is not None:
            mlflow.set_tag("train.best_epoch", result.metrics["best_epoch"])
        data_version = {str(p): file_md5(p) for p in data_files}
        with StagedOutputs() as out:
            model_dir = out.dir(paths["model_dir"])
            result.model.save_pretrained(model_dir)
            result.tokenizer.save_pretrained(model_dir)
            (model_dir / "README.md").write_text(
                model_card(cfg, result.metrics, labels, data_version)
            )
            write_json(out.file(paths["train_report"]), result.metrics)
            write_json(
                out.file(paths["run_info"]),
                {
                    "run_id": active.info.run_id,
                    "experiment_id": experiment_id,
                    "tracking_uri": mlflow.get_tracking_uri(),
                },
            )
            if tracking_cfg.get("log_model", True):
                log_model(
                    result, Path(paths["model_dir"]), tracking_cfg, train_df["text"][:2].tolist()
                )
                mark_challenger(tracking_cfg, active.info.run_id)
    if not spec.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result
