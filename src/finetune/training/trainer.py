"""The fine-tuning loop: tokenisation, the Trainer as we configure it, and the best model out."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score

from finetune.core.errors import ConfigError
from finetune.core.schema import ModelConfig, MultiLabelConfig, Pooling, TrainConfig
from finetune.evaluation.metrics import macro_f1, multilabel_f1
from finetune.modeling import decisions, truncation
from finetune.modeling.backbones import load_classifier
from finetune.modeling.tokens import LENGTH_PERCENTILE, load_tokenizer, token_counts
from finetune.training import head_init
from finetune.training.callbacks import Progress
from finetune.training.checkpoints import drop_incomplete_checkpoints, latest_checkpoint
from finetune.training.distill import (
    TEACHER_COLUMN,
    DistillationTrainer,
    keep_every_kth_layer,
    teacher_log_probs,
)
from finetune.training.hardware import dist_info, select_precision
from finetune.training.layers import (
    add_lora,
    apply_layer_lr_decay,
    freeze,
    merge_adapter,
    resolve_attention_dropout,
)
from finetune.training.loss import (
    class_weights_for,
    multi_label_loss,
    positive_weights,
    weighted_loss,
)
from finetune.training.schedule import Plan, TrainingLength, load_state, make_plan

log = logging.getLogger(__name__)

# model.long_text: chunks: which text (row of the split) a window of the tokenized split is from
DOCUMENT_COLUMN = "document"


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    preds = np.asarray(logits).argmax(axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": macro_f1(labels, preds),
        # 1: every validation row gets the same class, the model has learnt nothing yet
        # (finetune.training.schedule does not count such an evaluation towards a plateau)
        "predicted_classes": float(len(np.unique(preds))),
    }


def multi_label_metrics(min_positives: int, at_least_one: bool) -> Any:
    """``compute_metrics`` for multi-label: a sigmoid per label, thresholds tuned on these rows
    as the saved model's will be (:func:`finetune.modeling.decisions.tune`); ``accuracy`` is
    subset accuracy (every label of a text right), ``f1_macro`` over the labels present."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        y = np.asarray(labels) > 0.5
        probs = decisions.sigmoid(np.asarray(logits))
        pred = decisions.decide(probs, decisions.tune(y, probs, min_positives, at_least_one))
        return {
            "accuracy": float((pred == y).all(axis=1).mean()),
            "f1_macro": multilabel_f1(y, pred, "macro"),
            "f1_micro": multilabel_f1(y, pred, "micro"),
            "predicted_classes": float(pred.any(axis=0).sum()),
        }

    return compute


class InOrderEval:
    """Trainer mixin: evaluation in the dataset's row order, whatever ``group_by_length`` says
    (transformers groups evaluation rows by length too, which would pair a window's logits with
    another text's): :func:`document_metrics` pools each text's windows by row. Several
    processes: None, as transformers has it (accelerate shards in order and gathers back)."""

    args: Any

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        from torch.utils.data import SequentialSampler

        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def document_metrics(documents: list[int], how: str, metrics: Any = compute_metrics) -> Any:
    """``compute_metrics`` for a validation set of chunks: its windows' logits pooled into one
    prediction per text (``how``: mean or max, as every prediction path pools them), so
    validation metrics, and what early stopping and the baseline check judge, are per text."""
    owner = np.asarray(documents)
    n = int(owner.max()) + 1 if len(owner) else 0

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        labels = np.asarray(labels)
        text_labels = np.zeros((n, *labels.shape[1:]), dtype=labels.dtype)
        text_labels[owner] = labels  # a text's windows all carry its label(s)
        return metrics((truncation.pool(np.asarray(logits), owner, n, how), text_labels))

    return compute


def tokenize(
    df: pd.DataFrame,
    tokenizer: Any,
    max_length: int,
    teacher_logits: np.ndarray | None = None,
    long_text: truncation.LongText = truncation.HEAD_ONLY,
    num_labels: int | None = None,
) -> Any:
    """A datasets.Dataset of input_ids/attention_mask/labels/length, unpadded (collator pads);
    with ``teacher_logits``, a column of them per example (distillation); texts over
    ``max_length`` cut the ``long_text`` way. With chunks a long text gives several rows (its
    windows, each with the text's label and teacher logits) and a :data:`DOCUMENT_COLUMN`
    says which row of ``df`` each came from. Multi-label (a ``label_ids`` column and
    ``num_labels``): ``labels`` are 0/1 floats, one per label."""
    from datasets import Dataset

    if "label_ids" in df.columns:
        if num_labels is None:
            raise ValueError("multi-label rows need num_labels")
        targets = decisions.multi_hot(df["label_ids"].tolist(), num_labels).tolist()
    else:
        targets = df["label_id"].tolist()
    columns: dict[str, Any] = {"text": df["text"].tolist(), "labels": targets}
    if teacher_logits is not None:
        columns[TEACHER_COLUMN] = teacher_logits.tolist()
    ds = Dataset.from_dict(columns)

    def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, Any]:
        enc, owner = truncation.encode(tokenizer, batch["text"], max_length, long_text)
        for key in batch:
            if key != "text":
                enc[key] = [batch[key][i] for i in owner]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        if long_text.mode == truncation.CHUNKS:
            enc[DOCUMENT_COLUMN] = [indices[i] for i in owner]
        return enc

    return ds.map(
        encode, batched=True, with_indices=True, remove_columns=ds.column_names, desc="tokenize"
    )


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    labels: list[str]
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]] = field(default_factory=list)


def _training_args(
    spec: TrainConfig, plan: Plan, precision: str, output_dir: str, seed: int, progress: bool
) -> Any:
    import torch
    from transformers import TrainingArguments

    strategy, every = ("steps", plan.eval_steps) if plan.eval_steps else ("epoch", None)
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=plan.epochs,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.eval_batch_size,
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        # adaptive: the schedule's callback drives a constant_with_warmup scheduler; otherwise a
        # float in [0, 1) is a ratio of all steps
        warmup_steps=plan.warmup_steps if plan.adaptive else spec.warmup_ratio,
        lr_scheduler_type="constant_with_warmup" if plan.adaptive else spec.lr_scheduler,
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
        restore_callback_states_from_checkpoint=True,  # ExportableState callbacks
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
    model_name_or_path: str,
    labels: list[str],
    spec: TrainConfig,
    pooling: Pooling,
    attention_dropout: float | None = None,
    problem_type: str | None = None,
    head: Callable[[Any, Any], None] | None = None,
) -> tuple[Any, Any]:
    """Tokenizer and classifier, with the attention dropout (None: the backbone's), freezing
    and the LoRA adapter as configured. ``head(model, tokenizer)`` sets the head's starting
    weights (:mod:`finetune.training.head_init`) before the adapter wraps the model."""
    tokenizer = load_tokenizer(model_name_or_path)
    model = load_classifier(model_name_or_path, labels, pooling, attention_dropout, problem_type)
    keep_every_kth_layer(model, spec.distill.keep_every_kth_layer)
    freeze(model, spec.freeze_embeddings, spec.freeze_layers)
    if head is not None:
        head(model, tokenizer)
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
    spec: TrainConfig,
    precision: str,
    output_dir: str,
    seed: int,
    class_weights: list[float] | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    length: TrainingLength | None = None,
    multi_label: tuple[MultiLabelConfig, bool, list[float] | None] | None = None,
) -> Any:
    """Our Trainer: dynamic padding (multiple of 8), length-grouped batches, bf16 autocast;
    ``length`` (made from the data when not given) decides when training ends. ``multi_label``:
    (its settings, at least one label per text, the positives' BCE weights)."""
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.trainer_callback import ProgressCallback

    chunked = DOCUMENT_COLUMN in val_ds.column_names
    judge, loss = compute_metrics, weighted_loss(class_weights) if class_weights else None
    if multi_label:
        settings, at_least_one, pos_weight = multi_label
        judge = multi_label_metrics(settings.min_positives, at_least_one)
        loss = multi_label_loss(pos_weight)
    if length is None:
        judged = len(set(val_ds[DOCUMENT_COLUMN])) if chunked else None
        plan = make_plan(spec, len(train_ds), len(val_ds), dist_info()[1], judged)
        length = TrainingLength(plan, len(val_ds))
    args = _training_args(spec, length.plan, precision, output_dir, seed, progress)
    extra = [*(callbacks or []), length]
    samples_per_step = spec.batch_size * spec.gradient_accumulation_steps * dist_info()[1]
    bar = Progress(samples_per_step)
    distill: dict[str, Any] = {}
    trainer_class: type = Trainer
    if spec.distill.enabled:
        trainer_class = DistillationTrainer
        distill = {
            "temperature": spec.distill.temperature,
            "alpha": spec.distill.alpha,
            "class_weights": class_weights,
            "multi_label": multi_label is not None,
            "pos_weight": multi_label[2] if multi_label else None,
        }
    if chunked:  # per-text validation pools a text's windows by row: evaluate them in order
        trainer_class = type(f"InOrder{trainer_class.__name__}", (InOrderEval, trainer_class), {})
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=(
            document_metrics(val_ds[DOCUMENT_COLUMN], truncation.settings(model.config).pool, judge)
            if chunked
            else judge
        ),
        compute_loss_func=loss,
        callbacks=[*extra, bar],
        **distill,
    )
    if spec.layer_lr_decay != 1:  # created now, split by depth; train() keeps this optimizer
        apply_layer_lr_decay(trainer.create_optimizer(), model, spec.layer_lr_decay)
    trainer.remove_callback(ProgressCallback)  # ours shows loss and throughput on one bar
    trainer.progress = bar
    trainer.length = length
    length.attach(trainer)
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
    model_cfg: ModelConfig,
    spec: TrainConfig,
    seed: int,
    callbacks: list[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    multi_label: MultiLabelConfig | None = None,
) -> TrainResult:
    """Fine-tune and return the best model (by validation ``metric_for_best_model``).

    With ``checkpoint_dir`` checkpoints go there and training resumes from the newest complete
    one found; without, they go to a temporary directory. The returned model is plain
    transformers (a LoRA adapter is merged in). ``multi_label`` (the rows hold ``label_ids``
    sets): a sigmoid and BCE per label, and thresholds tuned on validation saved in the model's
    config (:mod:`finetune.modeling.decisions`).
    """
    import torch
    from transformers import set_seed

    if spec.num_threads:
        torch.set_num_threads(int(spec.num_threads))
    precision = select_precision(spec.precision)
    set_seed(seed)
    dropout = resolve_attention_dropout(
        spec.attention_dropout, int(model_cfg.max_length), model_cfg.name_or_path
    )
    problem_type = decisions.MULTI_LABEL if multi_label else None
    resume = latest_checkpoint(Path(checkpoint_dir)) if checkpoint_dir else None
    start = HeadStart(spec, model_cfg, train_df, labels, multi_label, resume is not None)
    model, tokenizer = build_model(
        model_cfg.name_or_path, labels, spec, model_cfg.pooling, dropout, problem_type, start
    )
    teacher = None
    if spec.distill.enabled:
        teacher = teacher_log_probs(
            spec.distill.teachers,
            train_df["text"].tolist(),
            labels,
            spec.eval_batch_size,
            multi_label is not None,
        )
    if model_cfg.long_text == truncation.AUTO:  # the train stage resolves it before; k-fold here
        lengths = token_counts(tokenizer, train_df["text"].tolist())
        cut = 1 - LENGTH_PERCENTILE / 100  # the share the p99 length rule leaves over
        mode, why = truncation.choose(truncation.AUTO, lengths, int(model_cfg.max_length), cut)
        log.info("model.long_text: %s (%s)", mode, why)
        model_cfg = model_cfg.model_copy(update={"long_text": mode})
    long_text = truncation.from_model_config(model_cfg)
    # saved with the model: evaluate, predict and the ONNX export cut long texts the same way
    model.config.update(long_text.config())
    n = len(labels)
    train_ds = tokenize(train_df, tokenizer, model_cfg.max_length, teacher, long_text, n)
    val_ds = tokenize(
        validation_df, tokenizer, model_cfg.max_length, long_text=long_text, num_labels=n
    )
    weights, multi = None, None
    if multi_label:
        multi = _multi_label_setup(multi_label, spec, labels, np.asarray(train_ds["labels"]))
    else:  # from the rows trained on (with chunks a long text's windows each count)
        weights = class_weights_for(spec.class_weights, labels, pd.Series(train_ds["labels"]))
    if weights:
        log.info("class weights: %s", dict(zip(labels, np.round(weights, 3), strict=True)))
    rank, world = dist_info()
    with tempfile.TemporaryDirectory(prefix="finetune-ckpt-") as tmp:
        output_dir = Path(checkpoint_dir) if checkpoint_dir else Path(tmp)
        if rank == 0:  # `resume`: found above, before the head's start was chosen
            drop_incomplete_checkpoints(output_dir, resume)
        plan = make_plan(spec, len(train_ds), len(val_ds), world, len(validation_df))
        length = TrainingLength(plan, len(val_ds), load_state(resume))
        if resume is None:  # the probe's time is the run's: the time budget counts it
            length.s.elapsed_s = start.seconds
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
            length=length,
            multi_label=multi,
        )
        log.info(
            "training %s on %d examples (%d labels), %s, precision %s, "
            "%d threads x %d process(es)%s",
            model_cfg.name_or_path,
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
        stop_reason = length.stop_reason(state)
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
        "early_stopped": stop_reason == "plateau",
        "stop_reason": stop_reason,
        "steps_per_epoch": plan.steps_per_epoch,
        "eval_steps": plan.eval_steps or plan.steps_per_epoch,
        "warmup_steps": (
            length.s.warmup if plan.adaptive else trainer.args.get_warmup_steps(plan.max_steps)
        ),
        "cooldown_start_step": length.s.cooldown_start,
        "cooldown_from_step": length.s.branch_from,  # a plateau's: the best checkpoint's weights
        "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0,
        "precision": precision,
        "processes": world,
        "head_init": start.how,
        "head_init_seconds": round(start.seconds, 2),
    }
    if rank == 0:
        log.info(
            "trained in %.1f s (%.1f s stepping: %.1f samples/s, %.0f tokens/s), %.2f epochs, "
            "stopped by %s; best epoch %s (step %d); validation macro-F1 %.4f, accuracy %.4f",
            seconds,
            train_seconds,
            samples_s,
            tokens_s,
            metrics["epochs"],
            stop_reason,
            metrics["best_epoch"],
            best_step,
            metrics["val_f1_macro"],
            metrics["val_accuracy"],
        )
    model = merge_adapter(trainer.model)
    if multi_label and multi:
        metrics["val_f1_micro"] = float(final["eval_f1_micro"])
        metrics.update(
            decide_thresholds(
                model, tokenizer, validation_df, labels, model_cfg, multi, spec.eval_batch_size
            )
        )
    return TrainResult(model, tokenizer, labels, metrics, list(state.log_history))


class HeadStart:
    """The head's start as ``train.head_init`` resolves (:mod:`finetune.training.head_init`),
    a callable for :func:`build_model`; after it ran, ``how`` and ``seconds`` say what it did.
    A resumed run loads its head from the checkpoint and probes nothing."""

    def __init__(
        self,
        spec: TrainConfig,
        model_cfg: ModelConfig,
        train_df: pd.DataFrame,
        labels: list[str],
        multi_label: MultiLabelConfig | None,
        resuming: bool,
    ) -> None:
        self.how, why = head_init.resolve(spec.head_init, model_cfg.pooling, spec.lora.enabled)
        if resuming:
            self.how, why = head_init.RANDOM, "resuming: the checkpoint holds the head"
        self.why, self.seconds = why, 0.0
        self.spec, self.model_cfg, self.train_df = spec, model_cfg, train_df
        self.labels, self.multi_label = labels, multi_label

    def __call__(self, model: Any, tokenizer: Any) -> None:
        df, n = self.train_df, len(self.labels)
        hidden = int(model.config.hidden_size)
        if self.how == head_init.PROBE and head_init.saturates(len(df), hidden):
            if self.spec.head_init == head_init.PROBE:
                log.warning(
                    "train.head_init=probe on %d train rows: a linear head on %d dimensions can "
                    "fit up to %d rows whatever their labels, so the probe starts fine-tuning "
                    "saturated (train.head_init: auto would start from random)",
                    len(df),
                    hidden,
                    head_init.CAPACITY * hidden,
                )
            else:
                self.how = head_init.RANDOM
                self.why = (
                    f"auto: {len(df)} train rows are within a linear head's capacity on "
                    f"{hidden} dimensions ({head_init.CAPACITY * hidden} rows): a probe would fit "
                    "them whatever their labels and leave fine-tuning little to learn from"
                )
        if self.how != head_init.PROBE:
            log.info("classification head: random start (%s)", self.why)
            return
        if self.multi_label is not None:
            targets = decisions.multi_hot(df["label_ids"].tolist(), n)
            weights = positive_weights(self.multi_label.pos_weight, targets)
        else:
            targets = df["label_id"].to_numpy()
            weights = class_weights_for(self.spec.class_weights, self.labels, targets)
        fitted = head_init.probe(
            model,
            tokenizer,
            df["text"].tolist(),
            targets,
            int(self.model_cfg.max_length),
            self.spec.eval_batch_size,
            multi_label=self.multi_label is not None,
            weights=weights,
        )
        head_init.apply(model, fitted)
        self.seconds = fitted.seconds
        log.info(
            "classification head: a linear probe (%s) on %d train texts' embeddings of their "
            "first %d tokens, in %.1f s (counted in the time budget)",
            self.why,
            fitted.rows,
            fitted.max_length,
            fitted.seconds,
        )


def _multi_label_setup(
    settings: MultiLabelConfig, spec: TrainConfig, labels: list[str], targets: np.ndarray
) -> tuple[MultiLabelConfig, bool, list[float] | None]:
    """(settings, at least one label per text, the positives' BCE weights) from the train rows."""
    if spec.class_weights is not None:
        raise ConfigError(
            "train.class_weights is for one class per text; multi-label data weighs each "
            "label's positives by train.multi_label.pos_weight: set train.class_weights: null"
        )
    at_least_one = decisions.at_least_one(settings.at_least_one, targets.sum(axis=1))
    every_row = bool(len(targets)) and bool((targets.sum(axis=1) > 0).all())
    pos_weight = positive_weights(settings.pos_weight, targets)
    if pos_weight:
        top = np.argsort(pos_weight)[::-1][:5]
        log.info(
            "multi-label: BCE positive weights (%s) from %.2f to %.2f; largest: %s",
            settings.pos_weight,
            min(pos_weight),
            max(pos_weight),
            {labels[i]: round(pos_weight[i], 2) for i in top},
        )
    log.info(
        "multi-label: at least one label per text: %s (train.multi_label.at_least_one=%s%s)",
        at_least_one,
        settings.at_least_one,
        f"; {'every' if every_row else 'not every'} train row has a label"
        if settings.at_least_one == "auto"
        else "",
    )
    return settings, at_least_one, pos_weight


def decide_thresholds(
    model: Any,
    tokenizer: Any,
    validation_df: pd.DataFrame,
    labels: list[str],
    model_cfg: ModelConfig,
    multi: tuple[MultiLabelConfig, bool, list[float] | None],
    batch_size: int,
) -> dict[str, Any]:
    """Tune the thresholds on validation (or fix them) and save them in ``model.config``."""
    from finetune.modeling.inference import predict_proba

    settings, at_least_one, _ = multi
    if settings.thresholds == "tuned":
        probs = predict_proba(
            model,
            tokenizer,
            validation_df["text"].tolist(),
            batch_size,
            int(model_cfg.max_length),
        ).probabilities
        y = decisions.multi_hot(validation_df["label_ids"].tolist(), len(labels))
        chosen = decisions.tune(y, probs, settings.min_positives, at_least_one)
    else:
        chosen = decisions.fixed(len(labels), float(settings.thresholds), at_least_one)
    model.config.update(chosen.config())
    log.info("multi-label: %s", chosen.describe(labels))
    return {
        "thresholds_own": len(labels) - len(chosen.fallback),
        "thresholds_fallback": len(chosen.fallback),
        "threshold_global": round(chosen.global_value, 6),
    }
