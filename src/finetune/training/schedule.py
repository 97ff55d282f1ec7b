"""How long a training runs, decided from the data and the validation curve.

``train.epochs: auto`` trains until validation stops improving, not for a number of epochs fixed
in advance (a row-count rule trained a 77-class set for one epoch while it was still learning):

- **Warmup, then a constant learning rate**, evaluated on the validation split every
  :func:`eval_every` steps: as often as evaluations can afford (they may take about
  :data:`EVAL_SHARE` of the training time; an evaluated example costs about :data:`EVAL_COST` of
  a trained one, forward only against forward and backward), at least once per epoch. Small
  data is evaluated several times per epoch, large data not every few steps.
- **Then a cool-down**: the learning rate falls linearly to zero over :data:`COOLDOWN_SHARE` of
  the steps trained so far, and training ends. The cool-down starts at the first of: a plateau
  (``train.early_stopping_patience`` evaluations without a gain above
  ``train.early_stopping_min_delta``; the patience's ``auto``: the evaluations of
  :data:`PATIENCE_EPOCHS` epochs, at least :data:`MIN_PATIENCE`, see :func:`patience_evals`;
  the min delta's ``auto``: one validation example's worth, 1 / rows;
  an evaluation where the model gives every validation row the same class does not count: it
  has not started to learn, which on hard data can take more than an epoch),
  ``train.max_epochs`` (the cool-down ends there), or the wall-clock ``train.time_budget``
  (the cool-down and the final evaluation end within it). A warmup-stable-decay schedule needs
  no training length in advance and, with a cool-down of about a fifth of the run, matches a
  cosine schedule tuned to the length (Hägele et al. 2024, "Scaling Laws and Compute-Optimal
  Training Beyond Fixed Training Durations"); a linear decay over a guessed maximum would be
  stopped at a high learning rate.
- **A plateau's cool-down branches from the best checkpoint.** A cool-down can start from any
  checkpoint of the constant phase (the same paper branches them); at a plateau the validation
  curve says the weights after the best evaluation are no better, and on imdb_subset they were
  worse (validation macro-F1 0.869 at step 104, then 0.756-0.835 and validation loss up from
  0.32 to 0.47-0.66; the cool-down from step 260 ended at 0.775). So the best checkpoint's
  weights are loaded and the cool-down (a fifth of that checkpoint's steps) starts from them.
  The optimizer's running moments are kept. A cool-down at ``max_epochs`` or the time budget
  continues from the weights it has: there the run was cut, not done.
- The warmup is ``train.warmup_ratio`` of the steps the run can have (the maximum, or what
  the time budget allows once the first steps are timed, rounded down to a power of two of
  epochs), at most one epoch.

The best checkpoint by ``train.metric_for_best_model`` is the one kept, as with a fixed number of
epochs. Why training stopped (``plateau``, ``max_epochs``, ``time_budget``; with a fixed number:
``epochs``, ``max_steps``) is returned in the train metrics, logged, and written to the model
card. With a fixed number of epochs the schedule is the configured one, early stopping ends a
plateau at once, and the time budget stops training when it is spent.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from finetune.core.durations import parse_duration
from finetune.core.schema import TrainConfig

log = logging.getLogger(__name__)

EVAL_COST = 1 / 3  # an evaluated example against a trained one (forward vs forward + backward)
EVAL_SHARE = 0.1  # evaluations may take about this share of the training time
MIN_EVAL_STEPS = 20  # and come at most every 20 steps (each also saves a checkpoint)
COOLDOWN_SHARE = 0.2  # the cool-down: this share of the steps trained before it
PATIENCE_EPOCHS = 2  # early_stopping_patience: auto waits this many epochs for a gain...
MIN_PATIENCE = 3  # ... and at least this many evaluations
PROBE_STEPS = 10  # steps timed before the budget's projections are trusted
STATE_FILE = "schedule_state.json"  # in each checkpoint: the schedule's state, for resumption

PLATEAU, MAX_EPOCHS, TIME_BUDGET, EPOCHS, MAX_STEPS = (
    "plateau",
    "max_epochs",
    "time_budget",
    "epochs",
    "max_steps",
)


@dataclass(frozen=True)
class Plan:
    """The resolved training length settings of one run."""

    adaptive: bool  # epochs: auto (warmup, constant, cool-down)
    epochs: float  # the maximum (adaptive) or the configured number
    steps_per_epoch: int
    samples_per_step: int  # batch x accumulation x processes
    max_steps: int  # planned optimizer steps (epochs x steps per epoch, or train.max_steps)
    by_max_steps: bool  # train.max_steps > 0 set the length
    eval_steps: int | None  # None: once per epoch
    patience: int | None
    min_delta: float
    time_budget_s: float | None
    warmup_ratio: float
    warmup_steps: int

    def resolved(self) -> dict[str, Any]:
        """The ``resolved.train.*`` params: what ``auto`` and the budget became."""
        return {
            "train.epochs": self.epochs,
            "train.eval_steps": self.eval_steps if self.eval_steps else "epoch",
            "train.early_stopping_patience": self.patience,
            "train.early_stopping_min_delta": round(self.min_delta, 6),
            "train.time_budget_s": self.time_budget_s,
            "train.schedule": "warmup-constant-cooldown" if self.adaptive else "configured",
        }


def eval_every(n_validation: int, samples_per_step: int, steps_per_epoch: int) -> int:
    """Steps between evaluations: evaluating ``n_validation`` rows costs about
    ``EVAL_COST * n_validation`` trained examples, which may be ``EVAL_SHARE`` of the training in
    between; at least every epoch, at most every ``MIN_EVAL_STEPS`` steps."""
    examples = EVAL_COST * n_validation / EVAL_SHARE
    steps = max(MIN_EVAL_STEPS, math.ceil(examples / samples_per_step))
    return max(1, min(steps_per_epoch, steps))


def patience_evals(steps_per_epoch: int, eval_steps: int | None) -> int:
    """``early_stopping_patience: auto``: the evaluations that come in :data:`PATIENCE_EPOCHS`
    epochs, at least :data:`MIN_PATIENCE`. Counted in evaluations alone, the patience would
    depend on how often the data's size lets evaluations come: on germeval2018 (6,629 train
    rows with augmentation; every 53 of 208 steps, 3.9 evaluations an epoch) three of them span
    0.76 epoch, and validation macro-F1 stayed below its first peak (0.730 at 0.51 epoch) for
    four evaluations and rose past it at the fifth, 1.27 epochs later (0.770; 0.776 after the
    cool-down). A plateau is declared only once every example has been seen twice more without
    a gain."""
    per_epoch = steps_per_epoch / eval_steps if eval_steps else 1.0
    return max(MIN_PATIENCE, math.ceil(PATIENCE_EPOCHS * per_epoch - 1e-9))


def make_plan(
    spec: TrainConfig,
    n_train: int,
    n_validation: int,
    world: int = 1,
    n_judged: int | None = None,
) -> Plan:
    """The training length settings for ``n_train`` rows (``world`` processes); evaluations
    cost ``n_validation`` rows and the metric judges ``n_judged`` texts (``model.long_text:
    chunks``: fewer than the rows, a long text's windows pooled; default: the rows)."""
    samples_per_step = spec.batch_size * spec.gradient_accumulation_steps * world
    steps_per_epoch = max(1, math.ceil(n_train / samples_per_step))
    adaptive = spec.epochs == "auto"
    epochs = float(spec.max_epochs if adaptive else spec.epochs)
    max_steps = spec.max_steps if spec.max_steps > 0 else math.ceil(epochs * steps_per_epoch)
    if spec.eval_steps == "auto":
        eval_steps: int | None = eval_every(n_validation, samples_per_step, steps_per_epoch)
    else:
        eval_steps = spec.eval_steps
    if eval_steps is None and spec.max_steps > 0:
        eval_steps = spec.max_steps  # one evaluation, at the end
    if spec.early_stopping_min_delta != "auto":
        min_delta = float(spec.early_stopping_min_delta)
    elif spec.metric_for_best_model == "loss":
        min_delta = 0.0  # one example's worth has no meaning for a loss
    else:
        min_delta = 1.0 / max(n_judged or n_validation, 1)
    budget = (
        parse_duration(spec.time_budget, "train.time_budget").total_seconds()
        if spec.time_budget
        else None
    )
    return Plan(
        adaptive=adaptive,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        samples_per_step=samples_per_step,
        max_steps=max_steps,
        by_max_steps=spec.max_steps > 0,
        eval_steps=eval_steps,
        patience=(
            patience_evals(steps_per_epoch, eval_steps)
            if spec.early_stopping_patience == "auto"
            else spec.early_stopping_patience
        ),
        min_delta=min_delta,
        time_budget_s=budget,
        warmup_ratio=float(spec.warmup_ratio),
        warmup_steps=warmup_steps(spec.warmup_ratio, max_steps, steps_per_epoch),
    )


def warmup_steps(ratio: float, horizon: int, steps_per_epoch: int) -> int:
    """``ratio`` of the steps the run can have, at most one epoch."""
    return min(math.ceil(ratio * horizon), steps_per_epoch)


@dataclass
class ScheduleState:
    """What the callback has decided so far; saved with each checkpoint."""

    elapsed_s: float = 0.0  # wall time of the run before this process resumed it
    warmup: int = 0
    cooldown_start: int | None = None
    cooldown_end: int | None = None
    reason: str | None = None
    best: float | None = None
    bad_evals: int = 0
    branch_from: int | None = None  # a plateau's cool-down starts from this checkpoint's weights
    branched: bool = False  # ... and they have been loaded


def lr_factor(step: int, s: ScheduleState) -> float:
    """Warmup (linear from 0), constant, then a linear cool-down to 0 (a cool-down that starts
    during the warmup takes the rate down from where the warmup had got)."""
    warm = step / max(1, s.warmup) if step < s.warmup else 1.0
    if s.cooldown_start is None or s.cooldown_end is None or step < s.cooldown_start:
        return warm
    span = max(1, s.cooldown_end - s.cooldown_start)
    start = s.cooldown_start / max(1, s.warmup) if s.cooldown_start < s.warmup else 1.0
    return max(0.0, start * (s.cooldown_end - step) / span)


def _synced(value: float) -> float:
    """Rank 0's ``value`` on every process (DDP): decisions that depend on a clock must agree,
    or the processes would stop at different steps and wait for each other forever. The
    tensor lives where the process group's backend works (NCCL: the GPU; gloo: the CPU)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


class TrainingLength(TrainerCallback):
    """Follows :class:`Plan`: the adaptive schedule (``epochs: auto``), early stopping and the
    time budget for a fixed number of epochs, and the stop reason.

    The trainer it belongs to is given with :meth:`attach` (its learning-rate scheduler is
    driven from here in adaptive mode). ``previous`` is the state saved with the checkpoint a
    run resumes from.
    """

    def __init__(self, plan: Plan, n_validation: int, previous: ScheduleState | None = None):
        self.plan = plan
        self.n_validation = n_validation
        self.s = previous or ScheduleState(warmup=plan.warmup_steps)
        self.trainer: Any = None
        self.began = 0.0
        self.first_step = 0
        self.probed = False
        self.eval_seconds: list[float] = []
        self._eval_began: float | None = None
        self.ended = False
        self._stopped_at: int | None = None

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer

    # ---------------------------------------------------------------- time

    def elapsed(self) -> float:
        return _synced(self.s.elapsed_s + time.perf_counter() - self.began)

    def _seconds_per_step(self, state: Any) -> float | None:
        """Average wall seconds per step in this process so far, evaluations included (before
        the first one, their expected share is added)."""
        steps = state.global_step - self.first_step
        if steps < PROBE_STEPS:
            return None
        seconds = time.perf_counter() - self.began
        per_step = seconds / steps
        return _synced(per_step if self.eval_seconds else per_step * (1 + EVAL_SHARE))

    def _final_eval_s(self, per_step: float) -> float:
        """Seconds the last evaluation and checkpoint will take (measured once there was one;
        before, a trained example's share of a step times EVAL_COST per validation row, x2)."""
        if self.eval_seconds:
            return max(self.eval_seconds)
        return per_step / self.plan.samples_per_step * EVAL_COST * self.n_validation * 2

    # ---------------------------------------------------------------- schedule

    def _install(self) -> None:
        """Our factor in place of the scheduler's (constant_with_warmup) lambdas."""
        scheduler = getattr(self.trainer.lr_scheduler, "scheduler", self.trainer.lr_scheduler)
        scheduler.lr_lambdas = [self._factor for _ in scheduler.lr_lambdas]
        step = scheduler.last_epoch
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * self._factor(step)

    def _factor(self, step: int) -> float:
        return lr_factor(step, self.s)

    def _cool_down(self, state: Any, reason: str, steps: int) -> None:
        if self.s.cooldown_start is not None:
            return
        steps = max(1, steps)
        self.s.cooldown_start = state.global_step
        self.s.cooldown_end = min(self.plan.max_steps, state.global_step + steps)
        self.s.reason = reason
        state.max_steps = self.s.cooldown_end  # the progress bar and `early_stopped` follow
        log.info(
            "cool-down (%s): learning rate to 0 over steps %d-%d (%.2f epochs trained)",
            reason,
            self.s.cooldown_start,
            self.s.cooldown_end,
            state.global_step / self.plan.steps_per_epoch,
        )

    def _cooldown_steps(self, state: Any) -> int:
        return math.ceil(COOLDOWN_SHARE * state.global_step)

    # ---------------------------------------------------------------- events

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.began = time.perf_counter()
        self.first_step = state.global_step
        if self.plan.adaptive:
            self._install()
            if self.s.cooldown_end is not None:
                state.max_steps = self.s.cooldown_end

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._eval_began is None:
            self._eval_began = time.perf_counter()

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
    ) -> None:
        if self._eval_began is not None:
            self.eval_seconds.append(time.perf_counter() - self._eval_began)
            self._eval_began = None
        if self.ended:  # the evaluation of the reloaded best model after training
            return
        key = args.metric_for_best_model
        key = key if key.startswith("eval_") else f"eval_{key}"
        if not metrics or key not in metrics:
            return
        value = float(metrics[key]) * (1 if args.greater_is_better else -1)
        constant = metrics.get("eval_predicted_classes") == 1
        if self.s.best is None or value > self.s.best + self.plan.min_delta:
            self.s.best, self.s.bad_evals = value, 0
        elif constant:  # one class for every row: not learning yet, no plateau
            log.info(
                "step %d: the model predicts one class for every validation row; not counted "
                "towards a plateau (it has not started to learn; max_epochs and the time budget "
                "still bound the run)",
                state.global_step,
            )
        elif state.global_step >= self.s.warmup:  # a flat start during warmup is no plateau
            self.s.bad_evals += 1
        if not self.plan.patience or self.s.bad_evals < self.plan.patience:
            return
        if self.plan.adaptive and self.s.cooldown_start is None:
            # the trainer's best so far; it is loaded before the next step (after this save)
            self.s.branch_from = getattr(state, "best_global_step", None) or None
            self._cool_down(state, PLATEAU, self._plateau_cooldown_steps(state))
        elif not self.plan.adaptive and self.s.reason is None:
            self.s.reason = PLATEAU
            control.should_training_stop = True

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """The plateau's branch: once the evaluation that found it is saved (and the trainer has
        decided which checkpoint is best), the best checkpoint's weights are loaded."""
        if self.s.branch_from is None or self.s.branched:
            return
        self.s.branched = True
        best = getattr(state, "best_global_step", None) or None
        if best != self.s.branch_from:  # the plateau's own evaluation was the trainer's best
            self.s.branch_from = best
            self.s.cooldown_end = min(
                self.plan.max_steps, self.s.cooldown_start + self._plateau_cooldown_steps(state)
            )
            state.max_steps = self.s.cooldown_end
        if self.s.branch_from is None or self.s.branch_from >= state.global_step:
            self.s.branch_from = None
            return
        log.info(
            "cool-down from the best checkpoint (step %d, %s): its weights are loaded",
            self.s.branch_from,
            state.best_model_checkpoint,
        )
        self.trainer._load_best_model()  # what load_best_model_at_end uses (LoRA, FSDP...)

    def _plateau_cooldown_steps(self, state: Any) -> int:
        """A fifth of the steps that made the weights the cool-down starts from."""
        return math.ceil(COOLDOWN_SHARE * (self.s.branch_from or state.global_step))

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._eval_began = None
        step = state.global_step
        per_step = self._seconds_per_step(state)
        budget = self.plan.time_budget_s
        if self.plan.adaptive:
            if per_step is not None and not self.probed:
                self.probed = True
                self._fit_warmup(state, per_step)
            if self.s.cooldown_start is None and step * (1 + COOLDOWN_SHARE) >= self.plan.max_steps:
                reason = MAX_STEPS if self.plan.by_max_steps else MAX_EPOCHS
                self._cool_down(state, reason, self.plan.max_steps - step)
            if self.s.cooldown_start is None and budget is not None and per_step is not None:
                # synced as a whole: each process measured its own evaluations
                left = _synced(budget - self.elapsed() - self._final_eval_s(per_step))
                if left / per_step <= self._cooldown_steps(state):
                    self._cool_down(state, TIME_BUDGET, int(left / per_step))
            if self.s.cooldown_end is not None and step >= self.s.cooldown_end:
                self._stop(state, control)
                return
        if budget is not None and self.elapsed() >= budget:
            if self.s.reason is None or self.plan.adaptive:
                self.s.reason = TIME_BUDGET
            log.info("time budget of %.0f s spent at step %d: stopping", budget, step)
            self._stop(state, control)

    def _fit_warmup(self, state: Any, per_step: float) -> None:
        """Once the first steps are timed: the warmup as a share of the steps that fit in the
        budget. That count is rounded down to a power of two of epochs, so the small timing
        differences between two runs of the same config do not change the schedule."""
        if self.plan.time_budget_s is None:
            return
        left = max(0.0, self.plan.time_budget_s - self.elapsed())
        fit = state.global_step + left / per_step
        epochs = 2 ** math.floor(math.log2(max(fit, 1) / self.plan.steps_per_epoch))
        horizon = min(self.plan.max_steps, math.ceil(epochs * self.plan.steps_per_epoch))
        warmup = warmup_steps(self.plan.warmup_ratio, horizon, self.plan.steps_per_epoch)
        if warmup < self.s.warmup:
            log.info(
                "about %d steps fit in the time budget (%.2f s a step): warmup %d steps "
                "(%s of %g epochs)",
                fit,
                per_step,
                warmup,
                self.plan.warmup_ratio,
                epochs,
            )
            self.s.warmup = max(warmup, min(self.s.warmup, state.global_step))

    def _stop(self, state: Any, control: Any) -> None:
        control.should_training_stop = True
        control.should_evaluate = True  # the last weights are considered for the best model
        control.should_save = True
        self._stopped_at = state.global_step

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """A stop mid-epoch was evaluated and saved already: not again at the epoch's end
        (``eval_steps: null`` evaluates at every epoch end)."""
        if self._stopped_at == state.global_step:
            control.should_evaluate = False
            control.should_save = False

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ended = True

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            elapsed = self.s.elapsed_s + time.perf_counter() - self.began
            saved = asdict(self.s) | {"elapsed_s": elapsed}
            (folder / STATE_FILE).write_text(json.dumps(saved))

    def stop_reason(self, state: Any) -> str:
        """Why the run ended: the reason recorded, or the planned end (all epochs or steps)."""
        if self.s.reason is not None:
            return self.s.reason
        return MAX_STEPS if self.plan.by_max_steps else EPOCHS


def load_state(checkpoint: Path | None) -> ScheduleState | None:
    """The schedule's state saved with ``checkpoint`` (None: a fresh run or none saved)."""
    if checkpoint is None:
        return None
    if not (checkpoint / STATE_FILE).is_file():
        log.warning(
            "%s has no %s (killed between the trainer's files and ours, or written by an "
            "older version): the schedule starts afresh from this checkpoint (time budget, "
            "plateau count, cool-down)",
            checkpoint,
            STATE_FILE,
        )
        return None
    return ScheduleState(**json.loads((checkpoint / STATE_FILE).read_text()))
