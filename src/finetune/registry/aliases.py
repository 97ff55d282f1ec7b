"""Registered versions and their champion/challenger aliases."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from finetune.core.errors import ConfigError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "promotion."


def client(tracking_cfg: Mapping[str, Any]) -> Any:
    """An MlflowClient on the project's store (same resolution as the pipeline)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from finetune.tracking import runs as tracking

    uri = tracking.tracking_uri(tracking_cfg.get("uri"))
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_name(tracking_cfg: Mapping[str, Any]) -> str:
    name = tracking_cfg.get("registered_model_name")
    if not name:
        raise ConfigError(
            "tracking.registered_model_name is null: the registry lifecycle (aliases, "
            "promotion, models:/ URIs) needs a registered model name in conf/tracking/"
        )
    return str(name)


def version_for_run(mlflow_client: Any, name: str, run_id: str) -> Any | None:
    """The registered version of ``name`` logged by ``run_id`` (newest if several)."""
    versions = mlflow_client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not versions:
        return None
    return max(versions, key=lambda v: int(v.version))


def alias_version(mlflow_client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def mark_challenger(tracking_cfg: Mapping[str, Any], run_id: str) -> str | None:
    """Right after training: the run's new version becomes ``challenger``; the first, also
    ``champion``. Returns the version, or None when models are not registered."""
    from finetune.registry.gate import GateSpec, ModelScore, decide

    if not tracking_cfg.get("registered_model_name") or not tracking_cfg.get("log_model", True):
        return None
    name = model_name(tracking_cfg)
    mlflow_client = client(tracking_cfg)
    version = version_for_run(mlflow_client, name, run_id)
    if version is None:
        log.warning("run %s registered no version of %r; no alias set", run_id, name)
        return None
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info("model %s version %s is the challenger", name, version.version)
    if alias_version(mlflow_client, name, CHAMPION) is None:
        mlflow_client.set_registered_model_alias(name, CHAMPION, version.version)
        empty = ModelScore(str(version.version), math.nan, math.nan, {}, 0)
        decision = decide(empty, None, GateSpec())
        for key, value in {
            "outcome": decision.outcome,
            "reason": decision.reason,
            "challenger_version": str(version.version),
        }.items():
            mlflow_client.set_tag(run_id, f"{TAG_PREFIX}{key}", value)
            mlflow_client.set_model_version_tag(name, version.version, f"{TAG_PREFIX}{key}", value)
        log.info("model %s version %s is the first model: now champion", name, version.version)
    return str(version.version)
