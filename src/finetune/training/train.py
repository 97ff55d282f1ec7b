"""train: fine-tune a pretrained transformer for sequence classification with the HF Trainer.

Everything comes from ``train.*`` in params.yaml (conf/train/): full fine-tuning or LoRA,
freezing, optimiser, precision, early stopping, class weights, checkpoints for resumption.
Runs as one process or under ``torchrun`` / ``accelerate launch`` (DDP); only rank 0 talks to
MLflow and writes the stage outputs.

If the tracking store stops answering while the model trains, training goes on (the metric
points wait in the checkpoint directory, :mod:`finetune.tracking.buffer`), the model and every
output are written, and the stage then fails with :class:`TrackingLost`; the checkpoints are
kept, so ``dvc repro train`` after the store is back resumes and completes the same MLflow run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from finetune.core.artifacts import LABEL_MAP, load_labels, load_split, load_task
from finetune.core.io import StagedOutputs, file_md5, read_json, write_json
from finetune.core.schema import PipelineConfig
from finetune.core.secrets import mask_url
from finetune.core.store import TrackingUnavailable, tracking_uri
from finetune.core.validate import parse
from finetune.evaluation.baseline import (
    baseline_gap,
    baseline_standing,
    fit_predict_baseline,
    fit_predict_multilabel_baseline,
)
from finetune.evaluation.metrics import macro_f1, multilabel_f1
from finetune.modeling import decisions, tokens, truncation
from finetune.modeling.backbones import backbone_attention_dropout, resolve_pooling
from finetune.tracking import inputs
from finetune.tracking import runs as tracking
from finetune.tracking.buffer import MetricsLog
from finetune.tracking.models import log_model
from finetune.training import budget, head_init
from finetune.training.callbacks import MlflowMetrics
from finetune.training.checkpoints import (
    MLFLOW_RUN_FILE,
    PENDING_METRICS_FILE,
    checkpoint_key,
    checkpoint_root,
    latest_checkpoint,
    resumable_run_id,
)
from finetune.training.hardware import dist_info, end_distributed, select_precision
from finetune.training.layers import resolve_attention_dropout
from finetune.training.model_card import model_card
from finetune.training.pruning import RUN_ID_ATTR, ReportToTrial, TrialPruned, current_trial
from finetune.training.schedule import EVAL_SHARE, Plan, make_plan
from finetune.training.trainer import TrainResult, build_model, fine_tune

log = logging.getLogger(__name__)

RESOLVED_FILE = "resolved.json"  # in the checkpoint directory: the length a resumed run keeps
RESUMED_SETTINGS = ("model.max_length", "model.max_length_by")
# The train stage's DVC metrics (``paths.metrics_train``): the few figures `dvc metrics show` and
# `dvc exp show` list per experiment, and what `finetune tune` reads back from each trial (its
# objective and steps). Every figure of the run stays in ``paths.train_report``.
DVC_METRICS = ("val_f1_macro", "val_accuracy", "val_loss", "epochs", "steps", "stop_reason")


class TrackingLost(TrackingUnavailable):
    """The store stopped answering after training began; the outputs are written anyway."""


def run(cfg: PipelineConfig | Mapping[str, Any]) -> TrainResult:
    """Stage entry: augmented train set + validation split -> model dir + run info + metrics."""
    import mlflow

    cfg = parse(cfg)
    paths = cfg.paths
    labels = load_labels(paths.processed_dir)
    train_path = Path(paths.augmented_dir) / "train.parquet"
    validation_path = Path(paths.processed_dir) / "validation.parquet"
    train_df = pd.read_parquet(train_path)
    validation_df = load_split(paths.processed_dir, "validation")
    data_files = [train_path, validation_path, Path(paths.processed_dir) / LABEL_MAP]
    key = checkpoint_key(cfg, data_files)
    ckpt_dir = checkpoint_root(paths) / key
    resolved = resolve_settings(cfg, train_df, len(validation_df), labels, ckpt_dir / RESOLVED_FILE)
    model_cfg = cfg.model.model_copy(
        update={key: resolved[f"model.{key}"] for key in ("max_length", "pooling", "long_text")}
    )
    train_args = (train_df, validation_df, labels, model_cfg, cfg.train, cfg.seed)
    multi = cfg.train.multi_label if load_task(paths.processed_dir) == "multi_label" else None
    if dist_info()[0] != 0:  # DDP worker: train in lockstep; rank 0 logs and writes every output
        fine_tune(*train_args, checkpoint_dir=ckpt_dir, multi_label=multi)
        end_distributed()
        return TrainResult(None, None, labels, {})

    experiment_id = tracking.setup(cfg.tracking)
    trial = current_trial()  # inside `finetune tune`: report to the Optuna trial, maybe pruned
    previous = resumable_run_id(ckpt_dir)
    with tracking.active_run(
        previous, experiment_id, run_name=None if previous else tracking.run_name()
    ) as active:
        run_id = active.info.run_id
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json(ckpt_dir / MLFLOW_RUN_FILE, {"run_id": run_id})
        # a resumed run keeps the length its checkpoints were trained at (the budget's fit
        # measures this machine's speed, which may differ the next time)
        write_json(ckpt_dir / RESOLVED_FILE, {k: resolved[k] for k in RESUMED_SETTINGS})
        if previous is None:
            mlflow.set_tags({**tracking.run_tags(), **(trial.mlflow_tags() if trial else {})})
            mlflow.log_params(tracking.flatten(cfg.params()))
            inputs.log_to_mlflow(paths)  # what preprocess/augment did to this model's data
            mlflow.log_params({f"resolved.{k}": v for k, v in resolved.items()})
        mlflow.set_tag("train.checkpoint_key", key)
        metrics_log = MetricsLog(run_id, ckpt_dir / PENDING_METRICS_FILE)
        metrics_log.log({"train_rows": len(train_df), "validation_rows": len(validation_df)}, 0)
        callbacks: list[Any] = [MlflowMetrics(metrics_log)]
        if trial:
            trial.trial.set_user_attr(RUN_ID_ATTR, run_id)
            callbacks.append(ReportToTrial(trial))
        try:
            result = fine_tune(
                *train_args, callbacks=callbacks, checkpoint_dir=ckpt_dir, multi_label=multi
            )
        except TrialPruned:
            metrics_log.flush(force=True)
            mlflow.set_tags({"tune.state": "PRUNED"})
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # a pruned trial is never resumed
            raise
        end_distributed()
        result.metrics.update({"max_length": resolved["model.max_length"]})
        result.metrics["epochs_planned"] = resolved["train.epochs"]
        result.metrics.update(baseline_check(cfg, validation_df, labels, result.metrics))
        write_outputs(cfg, result, run_id, experiment_id, data_files, resolved)
        try:
            _finish_run(cfg, result, metrics_log, train_df["text"][:2].tolist())
        except MlflowException as exc:
            raise _lost(cfg, metrics_log, ckpt_dir, run_id, str(exc)) from exc
        if metrics_log.pending:
            raise _lost(cfg, metrics_log, ckpt_dir, run_id, metrics_log.last_error or "")
    if not cfg.train.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def baseline_check(
    cfg: PipelineConfig, validation_df: pd.DataFrame, labels: list[str], metrics: dict[str, Any]
) -> dict[str, Any]:
    """The in-run TF-IDF baseline on the validation split (the same one evaluate fits) and
    whether the model beats it on macro-F1 by more than one validation example's worth: a model
    below it by more than that is never made champion (``promotion.require_beat_baseline``); one
    that does not clearly beat it is named first by evaluate and the error report."""
    train = load_split(cfg.paths.processed_dir, "train")
    if "label_ids" in validation_df.columns:
        figures = multilabel_baseline_figures(cfg, train, validation_df, labels)
    else:
        figures = _baseline_figures(cfg, train, validation_df, labels)
    gap = baseline_gap({**metrics, **figures})
    figures["beats_baseline"] = baseline_standing({**metrics, **figures}) == "beats"
    if gap is not None:
        log.warning(
            "the model %s%s; evaluate's report says what to try",
            gap.replace(": promotion.require_beat_baseline is true", ""),
            ": it is not made champion"
            if cfg.promotion.require_beat_baseline
            else " (promotion.require_beat_baseline is false: it may become champion)",
        )
    return figures


def _baseline_figures(
    cfg: PipelineConfig, train: pd.DataFrame, validation_df: pd.DataFrame, labels: list[str]
) -> dict[str, Any]:
    y = validation_df["label_id"].to_numpy().astype(int)
    probs = fit_predict_baseline(
        train["text"].tolist(),
        train["label_id"].to_numpy().astype(int),
        {"validation": validation_df["text"].tolist()},
        len(labels),
        cfg.evaluate.baseline,
        cfg.seed,
    )["validation"]
    pred = probs.argmax(axis=1)
    return {
        "baseline_val_accuracy": float((pred == y).mean()),
        "baseline_val_f1_macro": macro_f1(y, pred),
        "baseline_tolerance": 1.0 / max(len(y), 1),  # one validation example's worth
    }


def multilabel_baseline_figures(
    cfg: PipelineConfig, train: pd.DataFrame, validation_df: pd.DataFrame, labels: list[str]
) -> dict[str, Any]:
    """The one-vs-rest TF-IDF baseline on validation, its thresholds tuned there as the
    model's are: subset accuracy, macro- and micro-F1."""
    n = len(labels)
    y = decisions.multi_hot(validation_df["label_ids"].tolist(), n) > 0
    probs = fit_predict_multilabel_baseline(
        train["text"].tolist(),
        decisions.multi_hot(train["label_ids"].tolist(), n),
        {"validation": validation_df["text"].tolist()},
        cfg.evaluate.baseline,
        cfg.seed,
    )["validation"]
    spec = cfg.train.multi_label
    at_least_one = decisions.at_least_one(spec.at_least_one, train["label_ids"].map(len).to_numpy())
    chosen = decisions.choose(spec.thresholds, spec.min_positives, y, probs, at_least_one)
    pred = decisions.decide(probs, chosen)
    return {
        "baseline_val_accuracy": float((pred == y).all(axis=1).mean()),
        "baseline_val_f1_macro": multilabel_f1(y, pred, "macro"),
        "baseline_val_f1_micro": multilabel_f1(y, pred, "micro"),
        "baseline_tolerance": 1.0 / max(len(y), 1),
    }


def resolve_settings(
    cfg: PipelineConfig,
    train_df: pd.DataFrame,
    n_validation: int,
    labels: list[str],
    saved: Path | None = None,
) -> dict[str, Any]:
    """What this training uses for the settings that may be ``auto``: the max length from the
    train texts' token lengths (finetune.modeling.tokens), cut to fit the time budget where long
    texts would not let it train on the data more than once (finetune.training.budget), the
    training length from the row counts (finetune.training.schedule; the epochs are the most it
    may train). ``saved``: the length a resumed run measured before (its checkpoints have it)."""
    tokenizer = tokens.load_tokenizer(cfg.model.name_or_path)
    texts = train_df["text"].tolist()
    lengths = tokens.token_counts(tokenizer, texts)
    plan = make_plan(cfg.train, len(train_df), n_validation, dist_info()[1])
    start = tokens.max_length(cfg.model.max_length, lengths, tokens.position_limit(tokenizer))
    pooling = resolve_pooling(cfg.model.name_or_path, cfg.model.pooling)
    resuming = saved is not None and latest_checkpoint(saved.parent) is not None
    if resuming and saved.is_file():
        fitted = read_json(saved)
        length, by = int(fitted["model.max_length"]), str(fitted["model.max_length_by"])
        log.info("max length %d, as the run being resumed was trained (%s)", length, saved)
    elif resuming:  # checkpoints from before the budget's fit: trained at the p99 length
        length, by = start, "setting" if cfg.model.max_length != tokens.AUTO else "p99"
    else:
        length, by = _budget_length(cfg, plan, tokenizer, texts, lengths, start, labels, pooling)
    long_text, long_text_by = truncation.choose(
        cfg.model.long_text, lengths, length, 1 - tokens.LENGTH_PERCENTILE / 100
    )
    rows = len(train_df)
    if long_text == truncation.CHUNKS:  # a long text trains as its windows
        specials = int(tokenizer.num_special_tokens_to_add())
        rows = truncation.count_windows(lengths, length, specials, cfg.model.chunk_overlap)
        windows = round(n_validation * rows / max(len(train_df), 1))  # about as many a text
        plan = make_plan(cfg.train, rows, windows, dist_info()[1], n_validation)
    resolved = {
        "model.max_length": length,
        "model.max_length_by": by,
        "model.pooling": pooling,
        "model.long_text": long_text,
        "model.long_text_by": long_text_by,
        **plan.resolved(),
    }
    dropout = resolve_attention_dropout(
        cfg.train.attention_dropout, resolved["model.max_length"], cfg.model.name_or_path
    )
    if dropout is None:  # the backbone's own
        found = backbone_attention_dropout(cfg.model.name_or_path)
        dropout = found[1] if found else "backbone"
    resolved["train.attention_dropout"] = dropout
    truncated = float((lengths > resolved["model.max_length"]).mean()) if len(lengths) else 0.0
    log.info(
        "max length %d (model.max_length=%s, set by %s; %.2f%% of train texts longer, read as "
        "%s: model.long_text=%s, %s); %s pooling "
        "(model.pooling=%s); attention dropout %s (train.attention_dropout=%s); %s epochs "
        "(train.epochs=%s, %d train %s, %d steps an epoch), evaluated every %s steps, "
        "time budget %s",
        resolved["model.max_length"],
        cfg.model.max_length,
        by,
        100 * truncated,
        truncation.from_model_config(
            cfg.model.model_copy(update={"long_text": long_text})
        ).describe(),
        cfg.model.long_text,
        long_text_by,
        resolved["model.pooling"],
        cfg.model.pooling,
        dropout,
        cfg.train.attention_dropout,
        f"at most {plan.epochs:g}" if plan.adaptive else f"{plan.epochs:g}",
        cfg.train.epochs,
        rows,
        "windows" if rows != len(train_df) else "rows",
        plan.steps_per_epoch,
        plan.eval_steps or plan.steps_per_epoch,
        cfg.train.time_budget,
    )
    return resolved


def _budget_length(
    cfg: PipelineConfig,
    plan: Plan,
    tokenizer: Any,
    texts: list[str],
    lengths: np.ndarray,
    start: int,
    labels: list[str],
    pooling: str,
) -> tuple[int, str]:
    """``start`` (the setting, or auto's p99 length) and what set it, or, for ``auto`` with a time
    budget and texts over budget.MIN_FITTED_LENGTH, the length fitted to the budget from the
    step cost measured here (finetune.training.budget)."""
    if cfg.model.max_length != tokens.AUTO:
        return start, "setting"
    if start <= budget.MIN_FITTED_LENGTH:
        return start, "p99"
    reason = None
    if cfg.model.long_text == truncation.CHUNKS:
        reason = "model.long_text: chunks reads every token at any length (shorter, more windows)"
    elif plan.time_budget_s is None:
        reason = "no train.time_budget"
    elif plan.by_max_steps:
        reason = "train.max_steps sets the training length"
    elif dist_info()[1] > 1:
        reason = "several processes (each would time its own steps)"
    elif cfg.train.torch_compile:
        reason = "train.torch_compile (the probe would time uncompiled steps)"
    if reason:
        log.info("max length %d (p99) not fitted to a time budget: %s", start, reason)
        return start, "p99"
    import torch

    if cfg.train.num_threads:
        torch.set_num_threads(int(cfg.train.num_threads))
    spec, name = cfg.train, cfg.model.name_or_path

    def make_model(length: int) -> Any:
        dropout = resolve_attention_dropout(spec.attention_dropout, length, name)
        return build_model(name, labels, spec, pooling, dropout)[0]

    probe = sorted({budget.MIN_FITTED_LENGTH, start})
    began = time.perf_counter()
    try:
        points = budget.measure_step_cost(
            make_model,
            tokenizer,
            texts,
            lengths,
            probe,
            spec.batch_size,
            spec.learning_rate,
            select_precision(spec.precision),
        )
    except torch.OutOfMemoryError as exc:
        log.warning(
            "max length %d (p99) not fitted to the time budget: timing a training step ran out "
            "of memory (%s); training itself will need a smaller train.batch_size",
            start,
            str(exc).splitlines()[0][:200],
        )
        return start, "p99"
    probe_s = time.perf_counter() - began
    cost = budget.StepCost.from_points(points)
    # epochs: auto stops at max_epochs at the latest
    epochs = min(budget.MIN_EPOCHS, plan.epochs) if plan.adaptive else plan.epochs
    head_s = 0.0
    if head_init.resolve(spec.head_init, pooling, spec.lora.enabled)[0] == head_init.PROBE:
        head_s = head_init.estimated_seconds(lengths, start, cost.seconds)
    seconds = max(plan.time_budget_s - probe_s - head_s, 0.0) * (1 - EVAL_SHARE)
    length = budget.fit_length(
        lengths, start, epochs, seconds, cost, floor=budget.MIN_FITTED_LENGTH
    )
    afford = {n: seconds / budget.epoch_seconds(lengths, n, cost, 1) for n in (start, length)}
    log.info(
        "time budget: a training sample costs %s (timed in %.0f s%s); %.0f s left for "
        "training steps afford %s",
        ", ".join(f"{v:.4f} s at {k} tokens" for k, v in points.items()),
        probe_s,
        f"; the head's linear probe will take about {head_s:.0f} s" if head_s else "",
        seconds,
        ", ".join(f"{afford[n]:.2f} epochs at max length {n}" for n in dict.fromkeys(afford)),
    )
    if length == start:
        return start, "p99"
    log.warning(
        "max length cut from %d (p99 of the train texts) to %d: train.time_budget=%s affords "
        "about %.2f epochs there (%.2f at %d)%s. Set model.max_length or a longer budget to keep "
        "more of each text",
        start,
        length,
        cfg.train.time_budget,
        afford[length],
        afford[start],
        start,
        f"; {epochs:g} would need more than the budget even at {length}"
        if afford[length] < epochs
        else "",
    )
    return length, "time_budget"


def dvc_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of the train metrics (:data:`DVC_METRICS`), epochs to two decimals."""
    return {key: round(metrics[key], 2) if key == "epochs" else metrics[key] for key in DVC_METRICS}


def write_outputs(
    cfg: PipelineConfig,
    result: TrainResult,
    run_id: str,
    experiment_id: str,
    data_files: list[Path],
    resolved: dict[str, Any],
) -> None:
    """The model (+ tokenizer and model card), the train metrics and the run info, atomically.
    The tokenizer keeps the max length trained with, so every later use truncates the same."""
    import mlflow

    paths = cfg.paths
    data_version = {str(p): file_md5(p) for p in data_files}
    with StagedOutputs() as out:
        model_dir = out.dir(paths.model_dir)
        result.model.save_pretrained(model_dir)
        result.tokenizer.model_max_length = resolved["model.max_length"]
        result.tokenizer.save_pretrained(model_dir)
        card = model_card(cfg, result.metrics, result.labels, data_version, resolved)
        (model_dir / "README.md").write_text(card)
        write_json(out.file(paths.train_report), result.metrics)
        write_json(out.file(paths.metrics_train), dvc_metrics(result.metrics))
        run_info = {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "tracking_uri": mask_url(mlflow.get_tracking_uri()),  # informational
        }
        write_json(out.file(paths.run_info), run_info)


def _finish_run(
    cfg: PipelineConfig,
    result: TrainResult,
    metrics_log: MetricsLog,
    example: list[str],
) -> None:
    """Everything the model's run still needs once training is over (needs the store)."""
    import mlflow

    numbers = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
    metrics_log.log(numbers, 0)
    if not metrics_log.drain(cfg.tracking.outage_wait_s):
        return
    if result.metrics["best_epoch"] is not None:
        mlflow.set_tag("train.best_epoch", result.metrics["best_epoch"])
    mlflow.set_tag("train.stop_reason", result.metrics["stop_reason"])
    mlflow.set_tag("train.head_init", result.metrics["head_init"])
    mlflow.set_tag("model.layers", str(getattr(result.model.config, "num_hidden_layers", "")))
    if cfg.train.distill.enabled:  # the student's run names its teacher(s)
        mlflow.set_tags(
            {
                "distill.teacher": ", ".join(cfg.train.distill.teachers),
                "distill.temperature": str(cfg.train.distill.temperature),
                "distill.alpha": str(cfg.train.distill.alpha),
            }
        )
    if cfg.tracking.log_model:
        card = (Path(cfg.paths.model_dir) / "README.md").read_text()
        # to this run only: the train stage's registration step (finetune.registry.register)
        # makes it a version and moves the aliases, tune trials and `dvc exp run` skip it
        log_model(result.model, result.tokenizer, example, card)


def _lost(
    cfg: PipelineConfig, metrics_log: MetricsLog, ckpt_dir: Path, run_id: str, error: str
) -> TrackingLost:
    uri = mask_url(tracking_uri(cfg.tracking.uri))
    waiting = (
        f"; {len(metrics_log.pending)} metric point(s) wait in {metrics_log.pending_path}"
        if metrics_log.pending
        else ""
    )
    return TrackingLost(
        f"MLflow store {uri} stopped answering during training ({error.splitlines()[0][:200]}). "
        f"The model and every output are written and the checkpoints kept in {ckpt_dir}"
        f"{waiting}. When it answers again, run `dvc repro train`: it resumes from the last "
        f"checkpoint and completes MLflow run {run_id}"
    )
