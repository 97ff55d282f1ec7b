"""The train stage's side of a ``finetune tune`` trial: report the validation metric to the
Optuna trial at every evaluation and stop training when the study's pruner says so.

``finetune tune`` runs each trial as a DVC experiment named ``<study>-trial-<n>`` through DVC's
queue, with :data:`STORAGE_VAR` and :data:`STUDY_VAR` in the environment of the queue's workers;
DVC sets ``DVC_EXP_NAME`` for each experiment. Outside a study (plain ``dvc repro``, ``dvc exp
run``) none of this is imported and training is unchanged, so re-running a trial's params without
the tuner (``dvc exp run -S experiment=tuned``) trains exactly the same model.

The study's user attributes (written by :mod:`finetune.tuning.study`) say which metric to
report, how to prune and which MLflow run is the parent, so the train stage needs no ``tune``
params of its own and its DVC cache does not depend on them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from finetune.core.errors import ConfigError, PipelineError
from finetune.core.schema import TunePruner

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STORAGE_VAR = "FINETUNE_TUNE_STORAGE"
STUDY_VAR = "FINETUNE_TUNE_STUDY"
# Study user attributes (finetune.tuning.study writes them) and trial user attributes.
OBJECTIVE_ATTR = "objective"
PRUNER_ATTR = "pruner"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
EXPERIMENT_ATTR = "dvc_experiment"
PRUNED_STEP_ATTR = "pruned_at_step"
PLANNED_STEPS_ATTR = "planned_steps"
RUN_ID_ATTR = "mlflow_run_id"


class TrialPruned(PipelineError):
    """The study's pruner stopped this trial; its MLflow run ends KILLED, tagged pruned."""

    mlflow_status = "KILLED"


def build_pruner(spec: TunePruner) -> optuna.pruners.BasePruner:
    """The Optuna pruner of ``tune.pruner`` (the tuner and the train stage build the same)."""
    import optuna

    if spec.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup_trials,
            n_warmup_steps=spec.warmup_steps,
            interval_steps=spec.interval_steps,
        )
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
        )
    if spec.type == "threshold":
        return optuna.pruners.ThresholdPruner(
            lower=spec.lower,
            upper=spec.upper,
            n_warmup_steps=spec.warmup_steps,
            interval_steps=spec.interval_steps,
        )
    return optuna.pruners.NopPruner()


@dataclass
class TrialLink:
    """This training's Optuna trial, and what the study says about reporting to it."""

    trial: optuna.Trial
    study_name: str
    experiment: str
    metric: str  # the train stage's name: val_f1_macro (the Trainer logs eval_f1_macro)
    parent_run_id: str | None

    @property
    def number(self) -> int:
        return int(self.trial.number)

    def mlflow_tags(self) -> dict[str, str]:
        """The child run's tags: its parent (the MLflow UI nests it there), study and trial."""
        tags = {"tune.study": self.study_name, "tune.trial": str(self.number)}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags


def current_trial() -> TrialLink | None:
    """The Optuna trial this training belongs to, or None outside ``finetune tune``."""
    storage, study_name = os.environ.get(STORAGE_VAR), os.environ.get(STUDY_VAR)
    if not storage or not study_name:
        return None
    import optuna

    from finetune.training.hardware import dist_info

    experiment = os.environ.get("DVC_EXP_NAME")
    if not experiment:
        raise ConfigError(
            f"{STORAGE_VAR} and {STUDY_VAR} are set but this is not a DVC experiment: trials run "
            f"through `finetune tune`; unset both to train normally"
        )
    if dist_info()[1] > 1:
        raise ConfigError(
            "a tuning trial trains in one process: pruning cannot stop every DDP rank at once"
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    attrs = study.user_attrs
    study.pruner = build_pruner(TunePruner.model_validate(attrs[PRUNER_ATTR]))
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    mine = [t for t in running if t.user_attrs.get(EXPERIMENT_ATTR) == experiment]
    if not mine:
        raise ConfigError(
            f"study {study_name!r} has no running trial for DVC experiment {experiment!r} (it "
            "was ended, or the tuner that queued it was restarted): nothing to report to"
        )
    trial = optuna.Trial(study, mine[0]._trial_id)
    log.info("tuning: study %r, trial %d (%s)", study_name, trial.number, experiment)
    return TrialLink(
        trial, study_name, experiment, attrs[OBJECTIVE_ATTR]["metric"], attrs.get(PARENT_RUN_ATTR)
    )


class ReportToTrial(TrainerCallback):
    """At every evaluation: the validation metric to the trial; prune when the pruner says so,
    except at the last step, where pruning would save nothing.

    Raising :class:`TrialPruned` from the evaluation stops the Trainer at once, as Hugging
    Face's own Optuna integration does (no final evaluation, nothing saved)."""

    def __init__(self, link: TrialLink) -> None:
        self.link = link
        self.key = "eval_" + link.metric.removeprefix("val_")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.link.trial.set_user_attr(PLANNED_STEPS_ATTR, int(state.max_steps))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any):
        if not metrics or self.key not in metrics:
            return
        value, step = float(metrics[self.key]), int(state.global_step)
        self.link.trial.report(value, step)
        if step >= int(state.max_steps):
            # The last evaluation: pruning here saves no step and throws the trained model
            # away, so the trial completes with this value whatever the pruner would say.
            return
        if self.link.trial.should_prune():
            self.link.trial.set_user_attr(PRUNED_STEP_ATTR, step)
            raise TrialPruned(
                f"trial {self.link.number} of study {self.link.study_name!r} pruned at step "
                f"{step} of {state.max_steps}: {self.link.metric} {value:.4f} lags the study"
            )
