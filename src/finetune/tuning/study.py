"""The Optuna study: where it is stored, what it holds about itself, and one tuner at a time.

The study's user attributes are its identity (search space, objective, overrides: a study
resumed with a different one would mix incomparable trials, so that is an error), the pruner
the train stage builds (:mod:`finetune.training.pruning`) and the MLflow parent run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from finetune.core.errors import ConfigError, PipelineError
from finetune.core.schema import PathsConfig, TuneConfig
from finetune.training.pruning import OBJECTIVE_ATTR, PARENT_RUN_ATTR, PRUNER_ATTR, build_pruner
from finetune.tuning.space import grid

if TYPE_CHECKING:
    from filelock import FileLock

log = logging.getLogger(__name__)

IDENTITY_ATTR = "identity"


class StudyLocked(PipelineError):
    """Another ``finetune tune`` is running this study."""


def _in_repo(root: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def storage_url(spec: TuneConfig, paths: PathsConfig, root: Path) -> str:
    """``tune.storage``, else SQLite at ``paths.tune_db`` under the repository."""
    if spec.storage:
        return spec.storage
    db = _in_repo(root, paths.tune_db)
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def study_lock(paths: PathsConfig, root: Path, study_name: str) -> FileLock:
    from filelock import FileLock

    directory = _in_repo(root, paths.tune_lock_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(directory / f"{study_name}.lock", timeout=0)


def identity(spec: TuneConfig, overrides: list[str]) -> dict[str, Any]:
    """What makes two runs of the tuner one study: the space, the objective, and the overrides
    of what the trials train (``tune.*`` ones, such as another pruner, may change)."""
    return {
        "space": [p.model_dump(mode="json") for p in spec.space],
        "objective": spec.objective.model_dump(mode="json"),
        "overrides": [o for o in overrides if not o.lstrip("+~").startswith("tune.")],
    }


def sampler(spec: TuneConfig) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    if s.type == "grid":
        return AskTellGrid(grid(spec.space), seed=s.seed)
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.startup_trials)


class AskTellGrid(optuna.samplers.GridSampler):
    """The grid sampler for ask-and-tell: Optuna's calls ``study.stop()`` after the last point,
    which works only inside ``study.optimize``; the tuner stops by itself there."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def open_study(
    spec: TuneConfig, storage: str, study_name: str, overrides: list[str]
) -> optuna.Study:
    """Create the study, or load it after checking that it is the same search."""
    wanted = identity(spec, overrides)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, False)}
    if study_name in existing:
        found = existing[study_name].user_attrs.get(IDENTITY_ATTR)
        if found != wanted:
            raise ConfigError(
                f"study {study_name!r} in {storage} was started with another search: "
                f"{_difference(found or {}, wanted)}. Use another study name (--study or "
                "tune.study_name), or put the search back as it was"
            )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler(spec),
        pruner=build_pruner(spec.pruner),
        direction=spec.objective.direction,
        load_if_exists=True,
    )
    study.set_user_attr(IDENTITY_ATTR, wanted)
    study.set_user_attr(OBJECTIVE_ATTR, spec.objective.model_dump(mode="json"))
    study.set_user_attr(PRUNER_ATTR, spec.pruner.model_dump(mode="json"))
    return study


def _difference(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    for key in ("space", "objective", "overrides"):
        if found.get(key) != wanted.get(key):
            return f"its {key} was {json.dumps(found.get(key))}, now {json.dumps(wanted[key])}"
    return "its identity is missing"


def parent_run_id(study: optuna.Study) -> str | None:
    return study.user_attrs.get(PARENT_RUN_ATTR)


def fail_stale(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials still RUNNING when no tuner holds the study (one was killed): FAIL, not counted."""
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        log.warning(
            "trial %d was running when the last tuner stopped: marked failed, not counted",
            trial.number,
        )
    return stale
