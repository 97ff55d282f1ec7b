"""train: fine-tune a pretrained transformer for sequence classification with the HF Trainer."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from finetune import tracking
from finetune.errors import ConfigError
from finetune.io import StagedOutputs, write_json
from finetune.modeling import load_classifier, load_tokenizer
from finetune.splits import load_labels, load_split

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainSpec:
    epochs: float = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    max_steps: int = -1
    precision: str = "auto"
    num_threads: int | None = None
    logging_steps: int = 10
    metric_for_best_model: str = "f1_macro"

    @classmethod
    def from_config(cls, train: Any) -> TrainSpec:
        names = cls.__dataclass_fields__
        unknown = sorted(set(train) - set(names))
        if unknown:
            raise ConfigError(f"train: unknown option(s) {unknown}; known: {sorted(names)}")
        spec = cls(**dict(train))
        if spec.precision not in PRECISIONS:
            raise ConfigError(f"train.precision={spec.precision!r}: choose one of {PRECISIONS}")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            if not isinstance(getattr(spec, name), int) or getattr(spec, name) < 1:
                raise ConfigError(f"train.{name}={getattr(spec, name)!r} must be an integer >= 1")
        if not isinstance(spec.learning_rate, int | float) or spec.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={spec.learning_rate!r} must be a number > 0")
        return spec


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def select_precision(requested: str) -> str:
    """Resolve ``auto`` to the fastest precision this machine supports; validate the rest."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_supports_bf16() else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError(
            "train.precision=fp16 needs a CUDA GPU; use bf16 or fp32 (or auto) on CPU"
        )
    return requested


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    preds = np.asarray(logits).argmax(axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)),
    }


def tokenize(df: pd.DataFrame, tokenizer: Any, max_length: int) -> Any:
    """A datasets.Dataset of input_ids/attention_mask/labels, unpadded (the collator pads)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"text": df["text"].tolist(), "labels": df["label_id"].tolist()})
    return ds.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
        desc="tokenize",
    )


def _mlflow_callback() -> Any:
    from transformers import TrainerCallback

    class MlflowMetrics(TrainerCallback):
        """Log every Trainer log line (loss, learning rate, eval metrics) to the active run."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            import mlflow

            if not state.is_world_process_zero or not logs:
                return
            numeric = {
                k.replace("/", "_"): float(v)
                for k, v in logs.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            mlflow.log_metrics(numeric, step=int(state.global_step))

    return MlflowMetrics()


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    labels: list[str]
    metrics: dict[str, float]


def fine_tune(
    train_df: pd.DataFrame,
    validation_df: pd.DataFrame,
    labels: list[str],
    model_name_or_path: str,
    max_length: int,
    spec: TrainSpec,
    seed: int,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fine-tune and return the best model (by validation ``metric_for_best_model``)."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    if spec.num_threads:
        torch.set_num_threads(int(spec.num_threads))
    precision = select_precision(spec.precision)
    set_seed(seed)
    tokenizer = load_tokenizer(model_name_or_path)
    model = load_classifier(model_name_or_path, labels)
    train_ds = tokenize(train_df, tokenizer, max_length)
    val_ds = tokenize(validation_df, tokenizer, max_length)
    strategy = "steps" if spec.max_steps > 0 else "epoch"
    with tempfile.TemporaryDirectory(prefix="finetune-ckpt-") as ckpt_dir:
        args = TrainingArguments(
            output_dir=ckpt_dir,
            num_train_epochs=spec.epochs,
            max_steps=spec.max_steps,
            per_device_train_batch_size=spec.batch_size,
            per_device_eval_batch_size=spec.eval_batch_size,
            learning_rate=spec.learning_rate,
            weight_decay=spec.weight_decay,
            warmup_steps=spec.warmup_ratio,  # a float in [0, 1) is a ratio of all steps
            lr_scheduler_type=spec.lr_scheduler,
            max_grad_norm=spec.max_grad_norm,
            gradient_accumulation_steps=spec.gradient_accumulation_steps,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            eval_strategy=strategy,
            save_strategy=strategy,
            eval_steps=spec.max_steps if spec.max_steps > 0 else None,
            save_steps=spec.max_steps if spec.max_steps > 0 else None,
            save_total_limit=1,
            save_only_model=True,
            load_best_model_at_end=True,
            metric_for_best_model=spec.metric_for_best_model,
            greater_is_better=spec.metric_for_best_model != "loss",
            logging_steps=spec.logging_steps,
            train_sampling_strategy="group_by_length",
            seed=seed,
            data_seed=seed,
            report_to=[],
            disable_tqdm=False,
            dataloader_num_workers=0,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
            compute_metrics=compute_metrics,
            callbacks=callbacks or [],
        )
        log.info(
            "training %s on %d examples (%d labels), precision %s, %d threads",
            model_name_or_path,
            len(train_df),
            len(labels),
            precision,
            torch.get_num_threads(),
        )
        began = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - began
        final = trainer.evaluate()
        best_step = trainer.state.best_global_step
    epochs_done = float(trainer.state.epoch or 0)
    metrics = {
        "val_accuracy": float(final["eval_accuracy"]),
        "val_f1_macro": float(final["eval_f1_macro"]),
        "val_loss": float(final["eval_loss"]),
        "train_loss": float(output.training_loss),
        "train_seconds": round(seconds, 2),
        "train_samples_per_second": round(len(train_df) * epochs_done / seconds, 2),
        "epochs": epochs_done,
        "best_step": int(best_step or trainer.state.global_step),
        "precision": precision,
    }
    log.info(
        "trained in %.1f s (%.1f samples/s); best step %s; validation macro-F1 %.4f",
        seconds,
        metrics["train_samples_per_second"],
        metrics["best_step"],
        metrics["val_f1_macro"],
    )
    return TrainResult(trainer.model, tokenizer, labels, metrics)


def log_model(result: TrainResult, model_dir: Path, tracking_cfg: Any, example: list[str]) -> None:
    """Log the saved model with MLflow's transformers flavour (pyfunc predicts on raw texts)."""
    import mlflow
    import transformers

    from finetune import __version__

    mlflow.transformers.log_model(
        transformers_model={"model": result.model, "tokenizer": result.tokenizer},
        name="model",
        task="text-classification",
        input_example=example,
        registered_model_name=tracking_cfg.get("registered_model_name") or None,
        pip_requirements=[
            "torch==2.13.0",
            f"transformers=={transformers.__version__}",
            f"finetune-pipeline=={__version__}",
        ],
    )
    log.info("logged model %s to MLflow run %s", model_dir, mlflow.active_run().info.run_id)


def run(cfg: Any) -> TrainResult:
    """Stage entry: augmented train set + validation split -> model dir + run info + metrics."""
    import mlflow

    paths, tracking_cfg = cfg["paths"], cfg["tracking"]
    spec = TrainSpec.from_config(cfg["train"])
    labels = load_labels(paths["processed_dir"])
    train_df = pd.read_parquet(Path(paths["augmented_dir"]) / "train.parquet")
    validation_df = load_split(paths["processed_dir"], "validation")
    experiment_id = tracking.setup(tracking_cfg)
    with tracking.active_run(None, experiment_id, run_name=tracking.run_name()) as active:
        mlflow.set_tags(tracking.run_tags())
        mlflow.log_params(tracking.flatten({k: v for k, v in cfg.items() if k != "paths"}))
        mlflow.log_metrics({"train_rows": len(train_df), "validation_rows": len(validation_df)})
        result = fine_tune(
            train_df,
            validation_df,
            labels,
            str(cfg["model"]["name_or_path"]),
            int(cfg["model"]["max_length"]),
            spec,
            int(cfg["seed"]),
            callbacks=[_mlflow_callback()],
        )
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if not isinstance(v, str)})
        with StagedOutputs() as out:
            model_dir = out.dir(paths["model_dir"])
            result.model.save_pretrained(model_dir)
            result.tokenizer.save_pretrained(model_dir)
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
    return result
