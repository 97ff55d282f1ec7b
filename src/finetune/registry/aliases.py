"""Registered versions and their champion/challenger aliases."""

from __future__ import annotations

import logging
from typing import Any

from finetune.core.errors import ConfigError, PipelineError
from finetune.core.schema import TrackingConfig
from finetune.evaluation.baseline import baseline_gap

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "promotion."
FIRST_MODEL_REASON = "first model: there is no champion yet"


class RegistryError(PipelineError):
    """The registry could not be read or written; nothing was changed."""


def client(tracking_cfg: TrackingConfig) -> Any:
    """An MlflowClient on the project's store (same resolution as the pipeline)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from finetune.core.store import tracking_uri

    uri = tracking_uri(tracking_cfg.uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_name(tracking_cfg: TrackingConfig) -> str:
    name = tracking_cfg.registered_model_name
    if not name:
        raise ConfigError(
            "tracking.registered_model_name is null: the registry lifecycle (aliases, "
            "promotion, models:/ URIs) needs a registered model name in conf/tracking/"
        )
    return name


def version_for_run(mlflow_client: Any, name: str, run_id: str) -> Any | None:
    """The registered version of ``name`` logged by ``run_id`` (newest if several)."""
    versions = mlflow_client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not versions:
        return None
    return max(versions, key=lambda v: int(v.version))


def alias_version(mlflow_client: Any, name: str, alias: str) -> Any | None:
    """The version ``name@alias`` points at; None only when the registry says the model or
    the alias does not exist. Any other failure (the store not answering, say) raises
    RegistryError: it must never pass for "no champion yet", or a failed lookup would make
    the challenger champion without a comparison."""
    from mlflow.exceptions import MlflowException

    from finetune.tracking.runs import is_missing

    try:
        registered = mlflow_client.get_registered_model(name)
        version = registered.aliases.get(alias)
        return None if version is None else mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise RegistryError(
            f"cannot read alias {name}@{alias} from the registry at "
            f"{mlflow_client.tracking_uri} ({str(exc).splitlines()[0][:300]}); nothing was "
            "changed: check the tracking server and run the command again"
        ) from exc


def logged_model_uri(mlflow_client: Any, run_id: str, artifact: str) -> str:
    """The URI to register the model ``run_id`` logged as ``artifact``: ``models:/<model id>``
    of that logged model (MLflow 3 logs a model as a LoggedModel, not in the run's artifacts;
    registering ``runs:/<run>/model`` finds it too, with a warning each time), the one logged
    at the latest step if several; ``runs:/<run>/<artifact>`` for a run that holds the model
    in its artifacts (logged before MLflow 3)."""
    run = mlflow_client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    logged = [
        (output.step, output.model_id)
        for output in outputs
        if mlflow_client.get_logged_model(output.model_id).name == artifact
    ]
    return f"models:/{max(logged)[1]}" if logged else f"runs:/{run_id}/{artifact}"


def register_version(mlflow_client: Any, name: str, run_id: str) -> Any:
    """The version of ``name`` holding the model logged to ``run_id`` (``runs:/<run>/model``):
    the one already registered for that run (a retrain after DVC restored ``train`` from its run
    cache, a registration run twice), else a new one."""
    import mlflow

    from finetune.tracking.models import MODEL_ARTIFACT

    version = version_for_run(mlflow_client, name, run_id)
    if version is not None:
        log.info("run %s is already %s version %s", run_id, name, version.version)
        return version
    from mlflow.exceptions import MlflowException

    source = logged_model_uri(mlflow_client, run_id, MODEL_ARTIFACT)
    try:
        registered = mlflow.register_model(source, name)
    except MlflowException as exc:
        raise RegistryError(
            f"cannot register {source} as a version of {name!r} in the registry at "
            f"{mlflow_client.tracking_uri} ({str(exc).splitlines()[0][:300]}); no alias was "
            "moved: check that the store answers and that the run logged its model "
            "(tracking.log_model), then run `finetune register`"
        ) from exc
    log.info("registered the model of run %s as %s version %s", run_id, name, registered.version)
    return mlflow_client.get_model_version(name, str(registered.version))


def mark_challenger(
    tracking_cfg: TrackingConfig, run_id: str, require_beat_baseline: bool
) -> str | None:
    """Register the model logged to ``run_id`` and make it ``challenger``; the first, also
    ``champion``, unless ``require_beat_baseline`` and the run's train metrics say it is worse
    than the TF-IDF baseline (then it is tagged with that reason and there stays no champion).
    Returns the version, or None when models are not registered.

    The caller holds the registry lock (:func:`finetune.registry.register.register_run` takes
    it): the champion is read under it, so two registrations on an empty registry cannot both
    find no champion and both make theirs the first one."""
    if not tracking_cfg.registered_model_name or not tracking_cfg.log_model:
        return None
    name = model_name(tracking_cfg)
    mlflow_client = client(tracking_cfg)
    version = register_version(mlflow_client, name, run_id)
    champion = alias_version(mlflow_client, name, CHAMPION)  # before anything moves
    refuse_champion = (
        baseline_gap(mlflow_client.get_run(run_id).data.metrics) if require_beat_baseline else None
    )
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info("model %s version %s is the challenger", name, version.version)
    if champion is None:
        if refuse_champion is None:
            mlflow_client.set_registered_model_alias(name, CHAMPION, version.version)
        outcome = "promoted" if refuse_champion is None else "kept"
        for key, value in {
            "outcome": outcome,
            "reason": refuse_champion or FIRST_MODEL_REASON,
            "challenger_version": str(version.version),
        }.items():
            mlflow_client.set_tag(run_id, f"{TAG_PREFIX}{key}", value)
            mlflow_client.set_model_version_tag(name, version.version, f"{TAG_PREFIX}{key}", value)
        if refuse_champion is None:
            log.info("model %s version %s is the first model: now champion", name, version.version)
        else:
            log.warning(
                "model %s version %s is not made champion: it %s",
                name,
                version.version,
                refuse_champion,
            )
    return str(version.version)
