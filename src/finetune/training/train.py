"""train: fine-tune a pretrained transformer for sequence classification with the HF Trainer.

Everything comes from ``train.*`` in params.yaml (conf/train/): full fine-tuning or LoRA,
freezing, optimiser, precision, early stopping, class weights, checkpoints for resumption.
Runs as one process or under ``torchrun`` / ``accelerate launch`` (DDP); only rank 0 talks to
MLflow and writes the stage outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import accuracy_score, f1_score

from finetune.core.artifacts import load_labels, load_split
from finetune.core.errors import ConfigError, known_options
from finetune.core.io import StagedOutputs, file_md5, write_json
from finetune.data import report as data_report
from finetune.modeling.backbones import (
    add_lora,
    apply_layer_lr_decay,
    freeze,
    load_classifier,
    load_tokenizer,
    merge_adapter,
    pooling_of,
)
from finetune.tracking import runs as tracking

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
MLFLOW_RUN_FILE = "mlflow_run.json"  # in the checkpoint dir: the run a resumed training continues
# train.* options that do not change what is learned: not part of the checkpoint key.
NOT_IN_CHECKPOINT_KEY = ("num_threads", "logging_steps", "keep_checkpoints", "progress_bar")


@dataclass(frozen=True)
class LoraSpec:
    enabled: bool = False
    r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None  # null: peft's default for the architecture


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
    optim: str = "adamw_torch_fused"
    precision: str = "auto"
    num_threads: int | None = None
    logging_steps: int = 10
    progress_bar: bool = True
    metric_for_best_model: str = "f1_macro"
    eval_steps: int | None = None  # null: evaluate (and checkpoint) once per epoch
    early_stopping_patience: int | None = None  # evaluations without improvement; null: off
    class_weights: Any = None  # null | balanced | [w0, w1, ...] | {label: w}
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    layer_lr_decay: float = 1.0  # < 1: each lower layer's learning rate x this; 1: off
    lora: LoraSpec = field(default_factory=LoraSpec)
    group_by_length: bool = True
    torch_compile: bool = False
    keep_checkpoints: bool = False  # keep checkpoints/<key>/ after a successful run

    @classmethod
    def from_config(cls, train: Mapping[str, Any]) -> TrainSpec:
        values = known_options("train", train, cls.__dataclass_fields__)
        lora = known_options("train.lora", values.pop("lora", None), LoraSpec.__dataclass_fields__)
        spec = cls(**values, lora=LoraSpec(**lora))
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision={self.precision!r}: choose one of {PRECISIONS}")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)!r} must be an integer >= 1")
        if not isinstance(self.learning_rate, int | float) or self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={self.learning_rate!r} must be a number > 0")
        for name in ("eval_steps", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"train.{name}={value!r} must be null or an integer >= 1")
        if not isinstance(self.layer_lr_decay, int | float) or not 0 < self.layer_lr_decay <= 1:
            raise ConfigError(
                f"train.layer_lr_decay={self.layer_lr_decay!r} must be in (0, 1] (1: off)"
            )
        if not isinstance(self.freeze_layers, int) or self.freeze_layers < 0:
            raise ConfigError(f"train.freeze_layers={self.freeze_layers!r} must be an integer >= 0")
        if self.lora.enabled and (not isinstance(self.lora.r, int) or self.lora.r < 1):
            raise ConfigError(f"train.lora.r={self.lora.r!r} must be an integer >= 1")
        if self.lora.enabled and not 0 <= float(self.lora.dropout) < 1:
            raise ConfigError(f"train.lora.dropout={self.lora.dropout!r} must be in [0, 1)")
        cw = self.class_weights
        if not (cw is None or cw == "balanced" or isinstance(cw, list | tuple | Mapping)):
            raise ConfigError(
                f"train.class_weights={cw!r}: use null, balanced, a list of weights in label "
                "order, or a mapping {label: weight}"
            )


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


def class_weights_for(spec_weights: Any, labels: list[str], label_ids: Any) -> list[float] | None:
    """Per-class loss weights in label-id order.

    ``balanced``: n_samples / (n_classes * count) from the train split (sklearn's rule); a list:
    used as given; a mapping: by label name (missing labels weigh 1).
    """
    if spec_weights is None:
        return None
    n = len(labels)
    if spec_weights == "balanced":
        counts = np.bincount(np.asarray(label_ids, dtype=int), minlength=n).astype(float)
        if (counts == 0).any():
            missing = [labels[i] for i in np.flatnonzero(counts == 0)]
            raise ConfigError(
                f"train.class_weights=balanced: labels {missing} have no training rows; "
                "give the weights explicitly"
            )
        return [float(w) for w in counts.sum() / (n * counts)]
    if isinstance(spec_weights, Mapping):
        unknown = sorted(set(spec_weights) - set(labels))
        if unknown:
            raise ConfigError(f"train.class_weights: unknown labels {unknown}; labels: {labels}")
        weights = [float(spec_weights.get(label, 1.0)) for label in labels]
    else:
        weights = [float(w) for w in spec_weights]
        if len(weights) != n:
            raise ConfigError(
                f"train.class_weights has {len(weights)} weights but there are {n} labels {labels}"
            )
    if any(w <= 0 for w in weights):
        raise ConfigError(f"train.class_weights={weights}: every weight must be > 0")
    return weights


def weighted_loss(weights: list[float]) -> Any:
    """A Trainer ``compute_loss_func``: class-weighted cross-entropy.

    With ``num_items_in_batch`` (gradient accumulation) the sum is divided by the number of
    examples in the accumulated batch, so accumulation gives the same gradient as a big batch.
    """
    import torch

    weight = torch.tensor(weights, dtype=torch.float32)

    def loss_func(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        w = weight.to(logits.device)
        if num_items_in_batch is None:
            return torch.nn.functional.cross_entropy(logits.float(), labels, weight=w)
        total = torch.nn.functional.cross_entropy(logits.float(), labels, weight=w, reduction="sum")
        return total / num_items_in_batch

    return loss_func


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    preds = np.asarray(logits).argmax(axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)),
    }


def tokenize(df: pd.DataFrame, tokenizer: Any, max_length: int) -> Any:
    """A datasets.Dataset of input_ids/attention_mask/labels/length, unpadded (collator pads)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"text": df["text"].tolist(), "labels": df["label_id"].tolist()})

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return ds.map(encode, batched=True, remove_columns=["text"], desc="tokenize")


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch; (0, 1) in a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _mlflow_callback() -> Any:
    from transformers import TrainerCallback

    class MlflowMetrics(TrainerCallback):
        """Log every Trainer log line (loss, learning rate, eval metrics) to the active run."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            import mlflow

            if not state.is_world_process_zero or not logs or mlflow.active_run() is None:
                return
            numeric = {
                k.replace("/", "_"): float(v)
                for k, v in logs.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            mlflow.log_metrics(numeric, step=int(state.global_step))

    return MlflowMetrics()


def _progress_callback(samples_per_step: int) -> Any:
    """A tqdm bar (rank 0) showing loss, learning rate, samples/s and tokens/s."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Any = None
            self.began = 0.0
            self.first_step = 0
            self.first_tokens = 0
            self.eval_seconds = 0.0
            self._eval_began: float | None = None
            self.postfix: dict[str, str] = {}

        def throughput(self, state: Any) -> tuple[float, float, float]:
            """(seconds training, samples/s, tokens/s) in this process, evaluations excluded."""
            seconds = max(time.perf_counter() - self.began - self.eval_seconds, 1e-9)
            steps = state.global_step - self.first_step
            tokens = int(state.num_input_tokens_seen) - self.first_tokens
            return seconds, steps * samples_per_step / seconds, tokens / seconds

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.began = time.perf_counter()
            self.first_step = state.global_step
            self.first_tokens = int(state.num_input_tokens_seen)
            if state.is_world_process_zero and args.disable_tqdm is False:
                self.bar = tqdm(
                    total=state.max_steps, initial=state.global_step, desc="train", unit="step"
                )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is None:
                return
            _, samples_s, tokens_s = self.throughput(state)
            self.postfix.update(samples_s=f"{samples_s:.1f}", tokens_s=f"{tokens_s:.0f}")
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(state.global_step - self.bar.n)

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._eval_began is not None:
                self.eval_seconds += time.perf_counter() - self._eval_began
                self._eval_began = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._eval_began = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                self.postfix["loss"] = f"{logs['loss']:.4f}"
                self.postfix["lr"] = f"{logs.get('learning_rate', 0):.2e}"
            if "eval_f1_macro" in logs:
                self.postfix["val_f1"] = f"{logs['eval_f1_macro']:.4f}"

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._eval_began is None:
                self._eval_began = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return Progress()


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` (trainer_state.json is written last)."""
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def latest_checkpoint_anywhere(root: str | Path) -> Path | None:
    """The newest complete checkpoint under any ``<root>/<key>/``."""
    found = [c for d in Path(root).glob("*/") if (c := latest_checkpoint(d)) is not None]
    return max(found, key=lambda c: c.stat().st_mtime) if found else None


def _drop_incomplete_checkpoints(directory: Path, latest: Path | None) -> None:
    """Remove checkpoint dirs newer than the newest complete one (a kill mid-save)."""
    if not directory.is_dir():
        return
    newest = int(latest.name.split("-")[1]) if latest else -1
    for child in directory.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and int(match.group(1)) > newest:
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", child)
            shutil.rmtree(child, ignore_errors=True)


def checkpoint_key(cfg: Mapping[str, Any], data_files: list[Path]) -> str:
    """Hash of everything that determines the trained model: seed, model, train, data."""
    train = {k: v for k, v in dict(cfg["train"]).items() if k not in NOT_IN_CHECKPOINT_KEY}
    payload = {
        "seed": cfg.get("seed"),
        "model": cfg.get("model"),
        "train": train,
        "data": {p.name: file_md5(p) for p in data_files},
        "world_size": dist_info()[1],
    }
    return hashlib.md5(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    labels: list[str]
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]] = field(default_factory=list)


def _training_args(
    spec: TrainSpec, precision: str, output_dir: str, seed: int, progress: bool
) -> Any:
    import torch
    from transformers import TrainingArguments

    if spec.eval_steps:
        strategy, every = "steps", spec.eval_steps
    elif spec.max_steps > 0:
        strategy, every = "steps", spec.max_steps
    else:
        strategy, every = "epoch", None
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=output_dir,
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
        optim=spec.optim,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=every,
        save_steps=every,
        save_total_limit=2,  # the best and the latest
        load_best_model_at_end=True,
        metric_for_best_model=spec.metric_for_best_model,
        greater_is_better=spec.metric_for_best_model != "loss",
        restore_callback_states_from_checkpoint=True,  # early-stopping counter survives a kill
        logging_steps=spec.logging_steps,
        logging_first_step=True,
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        include_num_input_tokens_seen="non_padding",
        torch_compile=spec.torch_compile,
        seed=seed,
        data_seed=seed,
        report_to=[],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        use_cpu=not cuda,
        ddp_backend="gloo" if not cuda and dist_info()[1] > 1 else None,
        ddp_find_unused_parameters=False,
    )


def build_model(
    model_name_or_path: str, labels: list[str], spec: TrainSpec, pooling: str = "cls"
) -> tuple[Any, Any]:
    """Tokenizer and classifier, with freezing and the LoRA adapter as configured."""
    tokenizer = load_tokenizer(model_name_or_path)
    model = load_classifier(model_name_or_path, labels, pooling)
    freeze(model, spec.freeze_embeddings, spec.freeze_layers)
    if spec.lora.enabled:
        model = add_lora(
            model, spec.lora.r, spec.lora.alpha, spec.lora.dropout, spec.lora.target_modules
        )
    return model, tokenizer


def build_trainer(
    model: Any,
    tokenizer: Any,
    train_ds: Any,
    val_ds: Any,
    spec: TrainSpec,
    precision: str,
    output_dir: str,
    seed: int,
    class_weights: list[float] | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
) -> Any:
    """Our Trainer: dynamic padding (multiple of 8), length-grouped batches, bf16 autocast."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer
    from transformers.trainer_callback import ProgressCallback

    args = _training_args(spec, precision, output_dir, seed, progress)
    extra = list(callbacks or [])
    if spec.early_stopping_patience:
        extra.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience))
    samples_per_step = spec.batch_size * spec.gradient_accumulation_steps * dist_info()[1]
    bar = _progress_callback(samples_per_step)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=compute_metrics,
        compute_loss_func=weighted_loss(class_weights) if class_weights else None,
        callbacks=[*extra, bar],
    )
    if spec.layer_lr_decay != 1:  # created now, split by depth; train() keeps this optimizer
        apply_layer_lr_decay(trainer.create_optimizer(), model, spec.layer_lr_decay)
    trainer.remove_callback(ProgressCallback)  # ours shows loss and throughput on one bar
    trainer.progress = bar
    return trainer


def _best_epoch(state: Any) -> float | None:
    for entry in state.log_history:
        if "eval_loss" in entry and entry.get("step") == state.best_global_step:
            return float(entry["epoch"])
    return None


def fine_tune(
    train_df: pd.DataFrame,
    validation_df: pd.DataFrame,
    labels: list[str],
    model_name_or_path: str,
    max_length: int,
    spec: TrainSpec,
    seed: int,
    callbacks: list[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    pooling: str = "cls",
) -> TrainResult:
    """Fine-tune and return the best model (by validation ``metric_for_best_model``).

    With ``checkpoint_dir`` checkpoints go there and training resumes from the newest complete
    one found; without, they go to a temporary directory. The returned model is plain
    transformers (a LoRA adapter is merged in).
    """
    import torch
    from transformers import set_seed

    if spec.num_threads:
        torch.set_num_threads(int(spec.num_threads))
    precision = select_precision(spec.precision)
    set_seed(seed)
    model, tokenizer = build_model(model_name_or_path, labels, spec, pooling)
    weights = class_weights_for(spec.class_weights, labels, train_df["label_id"])
    if weights:
        log.info("class weights: %s", dict(zip(labels, np.round(weights, 3), strict=True)))
    train_ds = tokenize(train_df, tokenizer, max_length)
    val_ds = tokenize(validation_df, tokenizer, max_length)
    rank, world = dist_info()
    with tempfile.TemporaryDirectory(prefix="finetune-ckpt-") as tmp:
        output_dir = Path(checkpoint_dir) if checkpoint_dir else Path(tmp)
        resume = latest_checkpoint(output_dir)
        if rank == 0:
            _drop_incomplete_checkpoints(output_dir, resume)
        trainer = build_trainer(
            model,
            tokenizer,
            train_ds,
            val_ds,
            spec,
            precision,
            str(output_dir),
            seed,
            class_weights=weights,
            callbacks=callbacks,
            progress=spec.progress_bar,
        )
        log.info(
            "training %s on %d examples (%d labels), %s, precision %s, "
            "%d threads x %d process(es)%s",
            model_name_or_path,
            len(train_df),
            len(labels),
            f"LoRA r={spec.lora.r}" if spec.lora.enabled else "full fine-tuning",
            precision,
            torch.get_num_threads(),
            world,
            f", resuming from {resume}" if resume else "",
        )
        began = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - began
        train_seconds, samples_s, tokens_s = trainer.progress.throughput(trainer.state)
        final = trainer.evaluate()
        state = trainer.state
    best_step = int(state.best_global_step or state.global_step)
    metrics: dict[str, Any] = {
        "val_accuracy": float(final["eval_accuracy"]),
        "val_f1_macro": float(final["eval_f1_macro"]),
        "val_loss": float(final["eval_loss"]),
        "train_loss": float(output.training_loss),
        "train_seconds": round(seconds, 2),
        "train_samples_per_second": round(samples_s, 2),
        "train_tokens_per_second": round(tokens_s, 1),
        "epochs": float(state.epoch or 0),
        "steps": int(state.global_step),
        "best_step": best_step,
        "best_epoch": _best_epoch(state),
        "early_stopped": bool(spec.early_stopping_patience) and state.global_step < state.max_steps,
        "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0,
        "precision": precision,
        "processes": world,
    }
    if rank == 0:
        log.info(
            "trained in %.1f s (%.1f s stepping: %.1f samples/s, %.0f tokens/s); best epoch %s "
            "(step %d)%s; validation macro-F1 %.4f, accuracy %.4f",
            seconds,
            train_seconds,
            samples_s,
            tokens_s,
            metrics["best_epoch"],
            best_step,
            ", stopped early" if metrics["early_stopped"] else "",
            metrics["val_f1_macro"],
            metrics["val_accuracy"],
        )
    model = merge_adapter(trainer.model)
    return TrainResult(model, tokenizer, labels, metrics, list(state.log_history))


def _loading_note(pooling: str, lora: bool) -> str:
    merged = " (the LoRA adapter is merged in)" if lora else ""
    if pooling == "mean":
        return (
            f"An `AutoModelForSequenceClassification` checkpoint{merged} with a mean-pooling head "
            "(`model.pooling: mean`; the class is in `pooling_model.py` next to the weights): "
            "load it with `from_pretrained(<this dir>, trust_remote_code=True)`, or without "
            "remote code after `finetune.modeling.pooling_model.register()`."
        )
    return (
        f"A plain `AutoModelForSequenceClassification` checkpoint{merged}: load it with "
        "`from_pretrained(<this dir>)`."
    )


def model_card(
    cfg: Mapping[str, Any], metrics: Mapping[str, Any], labels: list[str], data: Mapping[str, str]
) -> str:
    """README.md for the model directory: base model, data version, params, metrics."""
    model = cfg["model"]
    params = {"seed": cfg.get("seed"), "model": model, "train": cfg["train"]}
    lora = (cfg["train"].get("lora") or {}).get("enabled")
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    data_rows = "\n".join(f"| {k} | `{v}` |" for k, v in data.items())
    commit = tracking.git_commit()
    return f"""---
library_name: transformers
pipeline_tag: text-classification
base_model: {model.get("name", model["name_or_path"])}
---

# {model.get("name", model["name_or_path"])} fine-tuned for text classification

Trained by the `train` stage of finetune-pipeline (`dvc repro train`){
        f" at commit `{commit}`" if commit else ""
    }.
{_loading_note(pooling_of(model), bool(lora))}

- Base model: `{model["name_or_path"]}` ({model.get("name", "")})
- Labels ({len(labels)}): {", ".join(labels)}
- Max sequence length: {model.get("max_length")}

## Data version

| file | md5 |
|---|---|
{data_rows}

## Metrics (validation split)

| metric | value |
|---|---|
{rows}

Test-split metrics are written by the `evaluate` stage (`reports/evaluate/metrics.json`).

## Params

```yaml
{yaml.safe_dump(params, sort_keys=False).rstrip()}
```
"""


def log_model(result: TrainResult, model_dir: Path, tracking_cfg: Any, example: list[str]) -> None:
    """Log the saved model with MLflow's transformers flavour (pyfunc predicts on raw texts).

    The input example gives the signature (string in, label + score out); with
    ``tracking.registered_model_name`` each newly trained model becomes a new version.
    """
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


def _resumable_run_id(checkpoint_dir: Path) -> str | None:
    """The MLflow run an interrupted training of the same key opened (if still in the store)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    path = checkpoint_dir / MLFLOW_RUN_FILE
    if not path.is_file() or latest_checkpoint(checkpoint_dir) is None:
        return None
    run_id = str(json.loads(path.read_text())["run_id"])
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        return None
    log.info("continuing MLflow run %s of the interrupted training", run_id)
    return run_id


def checkpoint_root(paths: Mapping[str, Any]) -> Path:
    """Where checkpoints live: ``paths.checkpoints_dir``, relative to the project root.

    Not a DVC output, so `dvc repro` does not delete it before rerunning train; inside
    `dvc exp run --temp` DVC_ROOT points it back at the real repository.
    """
    root = Path(paths.get("checkpoints_dir") or "checkpoints")
    return root if root.is_absolute() else tracking.project_root() / root


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
            *train_args, callbacks=[_mlflow_callback()], checkpoint_dir=ckpt_dir, pooling=pooling
        )
        _end_distributed()
        return TrainResult(None, None, labels, {})

    experiment_id = tracking.setup(tracking_cfg)
    previous = _resumable_run_id(ckpt_dir)
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
            *train_args, callbacks=[_mlflow_callback()], checkpoint_dir=ckpt_dir, pooling=pooling
        )
        _end_distributed()
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
                from finetune.registry.registry import (
                    mark_challenger,  # alias: challenger (+ champion)
                )

                mark_challenger(tracking_cfg, active.info.run_id)
    if not spec.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def _end_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
