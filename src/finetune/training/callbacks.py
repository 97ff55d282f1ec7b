"""Trainer callbacks: metrics to MLflow, and one progress bar with loss and throughput."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from finetune.tracking.buffer import MetricsLog


class MlflowMetrics(TrainerCallback):
    """Every Trainer log line (loss, learning rate, eval metrics) into the model's run, through
    a :class:`MetricsLog`, so an unreachable store neither stops training nor loses points."""

    def __init__(self, metrics_log: MetricsLog) -> None:
        self.metrics_log = metrics_log

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        numeric = {
            k.replace("/", "_"): float(v)
            for k, v in logs.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        self.metrics_log.log(numeric, step=int(state.global_step))


class Progress(TrainerCallback):
    """A tqdm bar (rank 0) showing loss, learning rate, samples/s and tokens/s."""

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
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
        return seconds, steps * self.samples_per_step / seconds, tokens / seconds

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
