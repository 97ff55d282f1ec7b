"""``finetune tune``: an Optuna study whose trials are DVC experiments and MLflow child runs.

Each round asks the sampler for up to ``jobs`` trials, queues each as ``dvc exp run --queue -n
<study>-trial-<n> -S <param>=<value> ... <targets>``, runs the queue (``dvc exp run --run-all
-j <jobs>``: one temporary copy per trial) and tells Optuna what DVC recorded: the train stage's
validation metric for a finished experiment, PRUNED when the train stage was stopped by the
pruner (:mod:`finetune.training.pruning`), FAIL otherwise. It stops when the study holds
``trials`` finished (complete or pruned) trials, or starts no new round once ``timeout`` is spent.

Killing the tuner and starting it again continues the same study: trials left running are
marked failed (and their queued experiments stopped), and the count goes on from the finished
ones. At the end: ``reports/tune/<study>/`` (summary.json, trials.csv, figures), the best
trial's params as ``conf/experiment/tuned.yaml``, and the parent MLflow run's figures/metrics.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from finetune.core.config import CONF_DIR, compose, read_overrides
from finetune.core.durations import parse_duration
from finetune.core.errors import ConfigError, PipelineError
from finetune.core.io import StagedOutputs, write_json
from finetune.core.schema import PipelineConfig, TuneConfig
from finetune.core.secrets import mask_url
from finetune.core.store import check_tracking
from finetune.core.validate import parse
from finetune.tracking import runs as tracking
from finetune.training.pruning import (
    EXPERIMENT_ATTR,
    PARENT_RUN_ATTR,
    PLANNED_STEPS_ATTR,
    PRUNED_STEP_ATTR,
    RUN_ID_ATTR,
    STORAGE_VAR,
    STUDY_VAR,
)
from finetune.tuning import experiments, figures, preset
from finetune.tuning.space import check_space, distributions, grid, override_args
from finetune.tuning.study import StudyLocked, fail_stale, open_study, storage_url, study_lock

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

COLLECT_TIMEOUT_S = 120  # how long DVC's queue may take to record a finished experiment
PARAMS_ATTR = "params_yaml"  # a complete trial's params.yaml, as DVC recorded it
STEPS_ATTR = "steps"  # the training steps it ran


class TrialsFailing(PipelineError):
    """Trial after trial fails: the pipeline, not the hyperparameters, is broken."""


@dataclass
class TrialRow:
    """One trial as the summary reports it."""

    number: int
    state: str
    value: float | None
    experiment: str
    mlflow_run_id: str | None
    planned_steps: int | None
    steps: int | None  # steps trained: the pruning step for a pruned trial
    params: dict[str, Any]


@dataclass
class TuneResult:
    study_name: str
    objective_metric: str
    storage: str
    out_dir: Path
    rows: list[TrialRow]
    best: TrialRow | None
    preset: Path | None
    parent_run_id: str
    seconds: float

    def counts(self) -> dict[str, int]:
        states = [r.state for r in self.rows]
        return {s.lower(): states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}

    def pruning_savings(self) -> dict[str, float | int]:
        """Steps the pruned trials did not train, of all steps the finished trials planned."""
        finished = [r for r in self.rows if r.state in ("COMPLETE", "PRUNED") and r.planned_steps]
        planned = sum(r.planned_steps or 0 for r in finished)
        skipped = sum(
            (r.planned_steps or 0) - (r.steps or 0) for r in finished if r.state == "PRUNED"
        )
        return {
            "planned_steps": planned,
            "steps_skipped_by_pruning": skipped,
            "share_of_steps_skipped": round(skipped / planned, 4) if planned else 0.0,
        }


def prepare(
    root: Path, extra: list[str], flags: dict[str, Any]
) -> tuple[PipelineConfig, TuneConfig, list[str]]:
    """The config the trials start from (params.yaml's overrides, ``tune.overrides`` and the
    command line's ``-S``, so ``-S tune.pruner.type=none`` works too), the search with the
    command line's --trials/--timeout/--jobs/--study (``flags``) applied, and the overrides
    every trial gets. Every error here comes before any trial runs."""
    from pydantic import ValidationError

    conf = root / CONF_DIR
    base = [*read_overrides(root), *extra]
    params = compose(conf, base)
    cfg = parse(params, conf, base)
    overrides = [*cfg.tune.overrides, *extra]
    if cfg.tune.overrides:  # the trials' params: tune.overrides applied too
        base = [*read_overrides(root), *overrides]
        params = compose(conf, base)
        cfg = parse(params, conf, base)
    if flags.get("timeout") is not None:
        parse_duration(flags["timeout"], "--timeout")  # the readable message, before the schema's
    try:
        spec = TuneConfig.model_validate(
            {**cfg.tune.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        raise ConfigError(f"tune.{where}: {error['msg']}") from exc
    check_space(spec, params)
    return cfg, spec, overrides


def run_tune(root: Path, extra: list[str], flags: dict[str, Any]) -> TuneResult:
    """The whole command (see the module doc): ``extra`` are the command line's ``-S``
    overrides, ``flags`` its --trials/--timeout/--jobs/--study (None: from ``tune``)."""
    from filelock import Timeout

    began = time.monotonic()
    cfg, spec, overrides = prepare(root, extra, flags)
    check_tracking(cfg.tracking)
    budget = parse_duration(spec.timeout, "--timeout").total_seconds() if spec.timeout else None
    storage = storage_url(spec, cfg.paths, root)
    lock = study_lock(cfg.paths, root, spec.study_name)
    try:
        lock.acquire()
    except Timeout as exc:
        raise StudyLocked(
            f"another `finetune tune` is running study {spec.study_name!r} (lock {lock.lock_file})"
        ) from exc
    try:
        prefix = experiments.trial_name(spec.study_name, 0)[:-1]
        others = experiments.others_queued(root, prefix)
        if others:
            raise ConfigError(
                f"DVC's queue holds {len(others)} other experiment(s) ({', '.join(others[:5])}) "
                "that `dvc exp run --run-all` would run with the trials: run them first "
                "(`dvc exp run --run-all`) or drop them (`dvc queue remove --queued`)"
            )
        study = open_study(spec, storage, spec.study_name, overrides)
        stale = fail_stale(study)
        if stale:
            experiments.stop(root, [t.user_attrs.get(EXPERIMENT_ATTR, "") for t in stale])
        parent = _parent_run(cfg, study, spec, overrides, storage)
        with parent as parent_id, _sigterm_as_interrupt():
            _optimise(root, cfg, spec, study, overrides, storage, began, budget)
            result = _finish(root, cfg, spec, study, storage, parent_id, began)
    finally:
        lock.release()
    return result


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, `kill`) stops the tuner like Ctrl-C: the running trials
    are stopped and marked failed, so a restart continues cleanly."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _parent_run(
    cfg: PipelineConfig, study: optuna.Study, spec: TuneConfig, overrides: list[str], storage: str
) -> Iterator[str]:
    """The study's MLflow run (created once, reopened on resume); trials are its children."""
    import mlflow

    experiment_id = tracking.setup(cfg.tracking)
    known = study.user_attrs.get(PARENT_RUN_ATTR)
    with tracking.active_run(known, experiment_id, run_name=spec.study_name) as run:
        if known is None:
            study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
            mlflow.set_tags({**tracking.run_tags(), "tune.study": spec.study_name})
            mlflow.log_params(
                {
                    "tune.study": spec.study_name,
                    "tune.objective": f"{spec.objective.direction} {spec.objective.metric}",
                    "tune.overrides": " ".join(overrides) or "-",
                    **{f"tune.space.{p.param}": _describe(p) for p in spec.space},
                }
            )
        mlflow.set_tags(
            {
                "tune.role": "parent",
                "tune.storage": mask_url(storage),
                "tune.sampler": f"{spec.sampler.type} seed {spec.sampler.seed}",
                "tune.pruner": spec.pruner.type,
            }
        )
        yield run.info.run_id


def _describe(param: Any) -> str:
    if param.type == "categorical":
        return f"choice {param.choices}"
    return f"{param.type} [{param.low}, {param.high}]{' log' if param.log else ''}"


def _finished(study: optuna.Study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def _optimise(
    root: Path,
    cfg: PipelineConfig,
    spec: TuneConfig,
    study: optuna.Study,
    overrides: list[str],
    storage: str,
    began: float,
    budget: float | None,
) -> None:
    grid_size = math.prod(map(len, grid(spec.space).values())) if spec.sampler.type == "grid" else 0
    env = {STORAGE_VAR: storage, STUDY_VAR: spec.study_name}
    failed_in_a_row, last = 0, ""
    while (finished := _finished(study)) < spec.trials:
        if failed_in_a_row >= spec.max_failures_in_a_row:
            raise TrialsFailing(
                f"{failed_in_a_row} trials in a row failed: stopping the study (see their logs: "
                f"`dvc queue logs {last}`)"
            )
        if budget is not None and time.monotonic() - began >= budget:
            log.info("time budget %s spent: no new trials (%d finished)", spec.timeout, finished)
            return
        wanted = min(spec.jobs, spec.trials - finished)
        if grid_size:  # failed points count as tried, as Optuna's grid sampler has it
            wanted = min(wanted, grid_size - len(study.get_trials(deepcopy=False)))
            if wanted <= 0:
                log.info("every point of the grid was tried")
                return
        batch = [study.ask(distributions(spec.space)) for _ in range(wanted)]
        names = []
        for trial in batch:
            name = experiments.trial_name(spec.study_name, trial.number)
            trial.set_user_attr(EXPERIMENT_ATTR, name)
            experiments.queue(root, name, [*overrides, *override_args(trial.params)], spec.targets)
            log.info("trial %d queued as %s: %s", trial.number, name, trial.params)
            names.append(name)
        try:
            experiments.run_all(root, len(batch), env)
        except BaseException:
            _abandon(root, study, batch, names)
            raise
        experiments.wait_settled(root, names, COLLECT_TIMEOUT_S)
        shown = experiments.show(root)
        for trial, name in zip(batch, names, strict=True):
            state = _settle(root, cfg, spec, study, trial, shown.get(name))
            failed_in_a_row, last = (failed_in_a_row + 1 if state == "FAIL" else 0), name


def _abandon(root: Path, study: optuna.Study, batch: list[Any], names: list[str]) -> None:
    """The tuner is stopping mid-round: stop the round's experiments, mark its trials failed."""
    import optuna

    log.warning("stopping trial(s) %s", ", ".join(names))
    experiments.stop(root, names)
    for trial in batch:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _settle(
    root: Path,
    cfg: PipelineConfig,
    spec: TuneConfig,
    study: optuna.Study,
    trial: optuna.Trial,
    experiment: experiments.Experiment | None,
) -> str:
    """Tell Optuna what DVC recorded for the trial (a complete one keeps the experiment's
    params.yaml and steps, so the preset does not depend on the experiment still being
    listed), and mark its MLflow run; the state."""
    import optuna

    frozen = study.get_trials(deepcopy=False)[trial.number]  # what the train stage wrote
    name = frozen.user_attrs[EXPERIMENT_ATTR]
    metrics = experiment.metrics.get(cfg.paths.metrics_train, {}) if experiment else {}
    if experiment is not None and not experiment.failed and spec.objective.metric in metrics:
        value = float(metrics[spec.objective.metric])
        trial.set_user_attr(PARAMS_ATTR, experiment.params)
        trial.set_user_attr(STEPS_ATTR, int(metrics["steps"]))
        study.tell(trial, value)
        state = "COMPLETE"
        log.info("trial %d (%s): %s %.4f", trial.number, name, spec.objective.metric, value)
    elif PRUNED_STEP_ATTR in frozen.user_attrs:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        state = "PRUNED"
        step = frozen.user_attrs[PRUNED_STEP_ATTR]
        log.info("trial %d (%s): pruned at step %d", trial.number, name, step)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        state = "FAIL"
        tail = experiments.log_tail(root, name)
        log.warning("trial %d (%s) failed; its log ends:\n%s", trial.number, name, tail)
    run_id = frozen.user_attrs.get(RUN_ID_ATTR)
    if run_id:
        from mlflow.tracking import MlflowClient

        MlflowClient().set_tag(run_id, "tune.state", state)
    return state


def rows_of(study: optuna.Study) -> list[TrialRow]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "RUNNING":
            continue
        rows.append(
            TrialRow(
                number=t.number,
                state=t.state.name,
                value=t.value if t.state.name == "COMPLETE" else None,
                experiment=t.user_attrs.get(EXPERIMENT_ATTR, ""),
                mlflow_run_id=t.user_attrs.get(RUN_ID_ATTR),
                planned_steps=t.user_attrs.get(PLANNED_STEPS_ATTR),
                steps=t.user_attrs.get(PRUNED_STEP_ATTR, t.user_attrs.get(STEPS_ATTR)),
                params=dict(t.params),
            )
        )
    return rows


def _finish(
    root: Path,
    cfg: PipelineConfig,
    spec: TuneConfig,
    study: optuna.Study,
    storage: str,
    parent_id: str,
    began: float,
) -> TuneResult:
    """Summary, figures, the preset and the parent run's record of the study."""
    import mlflow

    rows = rows_of(study)
    complete = [r for r in rows if r.state == "COMPLETE"]
    best = None
    if complete:
        best_trial = study.best_trial
        best = next(r for r in complete if r.number == best_trial.number)
    out_dir = root / cfg.paths.tune_dir / spec.study_name
    result = TuneResult(
        spec.study_name,
        spec.objective.metric,
        storage,
        out_dir,
        rows,
        best,
        None,
        parent_id,
        time.monotonic() - began,
    )
    if best is not None:
        trial_params = study.best_trial.user_attrs[PARAMS_ATTR]
        header = preset.header_lines(
            spec.study_name, best.number, best.experiment, spec.objective.metric, best.value or 0
        )
        target = root / cfg.paths.tuned_preset
        preset.write_preset(root / CONF_DIR, target, trial_params, header)
        result.preset = target
    else:
        log.warning("no trial completed: no preset written")
    with StagedOutputs() as out:
        folder = out.dir(out_dir)
        table = pd.DataFrame(
            [{**{k: v for k, v in asdict(r).items() if k != "params"}, **r.params} for r in rows]
        )
        table.to_csv(folder / "trials.csv", index=False)
        write_json(folder / "summary.json", summary(result, spec))
        drawn = figures.draw(study, folder, spec.objective.metric)
    counts, savings = result.counts(), result.pruning_savings()
    mlflow.log_metrics(
        {
            **{f"trials_{k}": v for k, v in counts.items()},
            **{k: float(v) for k, v in savings.items()},
            **({"best_value": float(best.value or 0)} if best else {}),
        }
    )
    if best is not None:
        mlflow.set_tags(
            {
                "tune.best_trial": str(best.number),
                "tune.best_experiment": best.experiment,
                **{f"tune.best.{k}": str(v) for k, v in best.params.items()},
            }
        )
        mlflow.log_artifact(str(result.preset), "tune")
    mlflow.log_artifacts(str(out_dir), "tune")
    log.info(
        "study %s: %d complete, %d pruned, %d failed; %d figure(s) in %s",
        spec.study_name,
        counts["complete"],
        counts["pruned"],
        counts["fail"],
        len(drawn),
        out_dir,
    )
    return result


def summary(result: TuneResult, spec: TuneConfig) -> dict[str, Any]:
    best = result.best
    return {
        "study": result.study_name,
        "storage": mask_url(result.storage),
        "objective": spec.objective.model_dump(mode="json"),
        "best": asdict(best) if best else None,
        "trials": result.counts(),
        "pruning": result.pruning_savings(),
        "preset": str(result.preset) if result.preset else None,
        "mlflow_parent_run_id": result.parent_run_id,
        "seconds": round(result.seconds, 1),
        "rows": [asdict(r) for r in result.rows],
    }
