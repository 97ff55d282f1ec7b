"""Registration: the one place a trained model becomes a registered version and the
``challenger`` (the first one also ``champion``).

Training only logs the model to its run (``runs:/<run>/model``). The train stage then calls
:func:`register_trained`, which registers it unless the training is an experiment:

- a ``dvc exp run`` (DVC sets ``DVC_EXP_NAME``), which includes every ``finetune tune`` trial: a
  study leaves the challenger unchanged. Its trials are a search over settings, each in an
  experiment's workspace; none is a candidate for production until its settings are applied
  (``dvc exp apply``) and trained in the workspace, and the last trial to finish is not the best;
- a ``dvc repro`` run by ``finetune retrain`` (:data:`NO_REGISTER_VAR` set): the retrain
  registers the model itself, under the registry lock it already holds.

``finetune register`` registers the workspace's trained model (``paths.run_info``), e.g. after
``dvc exp apply`` and ``dvc repro``. Every registration holds the registry lock
(:mod:`finetune.registry.lock`), as do the retrain and the promotion gate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from finetune.core.errors import DataError
from finetune.core.io import read_json
from finetune.core.schema import PipelineConfig
from finetune.registry.aliases import client, mark_challenger, model_name
from finetune.registry.lock import exclusive_lock, lock_path

log = logging.getLogger(__name__)

NO_REGISTER_VAR = "FINETUNE_NO_REGISTER"  # set (to the reason) by whoever registers instead
EXPERIMENT_VAR = "DVC_EXP_NAME"  # set by DVC for each `dvc exp run`, tune trials included


def skip_reason(cfg: PipelineConfig) -> str | None:
    """Why the train stage does not register the model it trained; None: it does."""
    if not cfg.tracking.registered_model_name or not cfg.tracking.log_model:
        return "tracking.registered_model_name is null or tracking.log_model is false"
    experiment = os.environ.get(EXPERIMENT_VAR)
    if experiment:
        return (
            f"DVC experiment {experiment!r} (dvc exp run, a finetune tune trial): experiments "
            "are not registered; to make it the challenger, `dvc exp apply` it and run "
            "`dvc repro` (or `finetune register`)"
        )
    if os.environ.get(NO_REGISTER_VAR):
        return os.environ[NO_REGISTER_VAR]
    return None


def register_run(
    cfg: PipelineConfig,
    run_id: str,
    *,
    locked: bool = False,
    wait_s: float | None = None,
    root: str | Path | None = None,
) -> str | None:
    """Register ``run_id``'s model and move the aliases (``aliases.mark_challenger``) holding
    the registry lock: taken here, waiting up to ``wait_s`` (None: as long as it takes), unless
    the caller holds it (``locked``)."""
    guard = nullcontext() if locked else exclusive_lock(lock_path(cfg, root), wait_s)
    with guard:
        version = mark_challenger(cfg.tracking, run_id, cfg.promotion.require_beat_baseline)
    if version is not None and cfg.export.registered_model_name:
        link_source(
            client(cfg.tracking),
            cfg.export.registered_model_name,
            run_id,
            f"{model_name(cfg.tracking)} v{version}",
        )
    return version


def link_source(mlflow_client: Any, onnx_name: str, run_id: str, source: str) -> list[str]:
    """Point the ONNX versions exported from ``run_id`` before its PyTorch model was registered
    (``finetune retrain`` registers after ``dvc repro``, so export tagged ``runs:/<run>/model``)
    at ``source`` (``<name> v<k>``): their ``source_model`` tag and description. Returns the
    versions changed."""
    changed = []
    for v in mlflow_client.search_model_versions(f"run_id='{run_id}'"):
        old = (v.tags or {}).get("source_model", "")
        if v.name != onnx_name or not old.startswith("runs:/"):
            continue
        mlflow_client.set_model_version_tag(onnx_name, v.version, "source_model", source)
        if v.description and old in v.description:
            mlflow_client.update_model_version(
                onnx_name, v.version, description=v.description.replace(old, source)
            )
        changed.append(str(v.version))
    if changed:
        log.info("ONNX %s version(s) %s: source_model is now %s", onnx_name, changed, source)
    return changed


def trained_run_id(cfg: PipelineConfig, root: str | Path | None = None) -> str:
    """The MLflow run of the workspace's trained model (``paths.run_info``, written by train)."""
    path = Path(root or Path.cwd()) / cfg.paths.run_info
    if not path.is_file():
        raise DataError(f"{path} does not exist: train a model first (`dvc repro train`)")
    return str(read_json(path)["run_id"])


def register_trained(cfg: PipelineConfig | Mapping[str, Any], result: Any) -> str | None:
    """The train stage's registration of the model it just trained (see the module doc)."""
    from finetune.core.validate import parse

    if getattr(result, "model", None) is None:  # a DDP worker: rank 0 registers
        return None
    cfg = parse(cfg)
    reason = skip_reason(cfg)
    if reason is not None:
        log.info("the trained model is logged to its run but not registered: %s", reason)
        return None
    return register_run(cfg, trained_run_id(cfg))
