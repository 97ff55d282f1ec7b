"""What a monitored batch is compared with: the model version, and the data it was trained on.

A model is named as the pipeline's model directory (``models/model``: its run is in
``paths.run_info``) or a registry URI (``models:/support_tickets@champion``,
``models:/support_tickets/3``, ``runs:/<id>/model``). Its training run holds the data version
(``data.md5.preprocess.outs.<processed_dir>``, the DVC hash of the splits it was trained on) and
the temperature the evaluate stage fitted (``test_temperature``).

The splits of that data version are read from the workspace when ``dvc.lock`` says the
workspace holds exactly them, else from the DVC cache by their hash, so a champion trained on
last month's data is compared with last month's data even after a retrain changed the files.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from finetune.core.errors import ConfigError, DataError, ModelNotFoundError
from finetune.core.schema import PipelineConfig
from finetune.tracking.runs import tag_path

if TYPE_CHECKING:
    from finetune.modeling.classifier import Classifier

log = logging.getLogger(__name__)

DATA_TAG = "data.md5.preprocess.outs."  # + processed_dir: the splits' DVC hash (tracking.runs)
TEMPERATURE_METRIC = "test_temperature"  # evaluate: the temperature fitted on validation
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ModelVersion:
    """The monitored model: where it came from and what its training run recorded."""

    source: str
    run_id: str
    name: str | None
    version: str | None
    data_version: str | None
    processed_md5: str | None  # the DVC hash of the splits it was trained on
    temperature: float | None  # evaluate's (None for a multi-label model: no estimate)

    @property
    def title(self) -> str:
        if self.name and self.version:
            return f"{self.name} v{self.version}"
        return f"run {self.run_id[:8]}"


def _registered(client: Any, uri: str) -> tuple[str, str, str]:
    """(name, version, run id) of a ``models:/`` URI, by MLflow's own resolver."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    try:
        name, version = get_model_name_and_version(client, uri)
        run_id = client.get_model_version(name, version).run_id
    except MlflowException as exc:
        raise ModelNotFoundError(f"cannot resolve {uri} in the registry: {exc}") from exc
    return name, str(version), str(run_id)


def _dir_run(cfg: PipelineConfig, source: str) -> str:
    """The training run of the pipeline's model directory (``paths.run_info``)."""
    from finetune.core.io import read_json

    if Path(source).resolve() != Path(cfg.paths.model_dir).resolve():
        raise ConfigError(
            f"{source} is not this repository's model directory ({cfg.paths.model_dir}): "
            "monitoring needs the model's training run (its data version and temperature); "
            "pass the model directory or a registry URI such as models:/<name>@champion"
        )
    info = Path(cfg.paths.run_info)
    if not info.is_file():
        raise ModelNotFoundError(f"{info} is missing: run `dvc repro train` first")
    return str(read_json(info)["run_id"])


def resolve(cfg: PipelineConfig, source: str, client: Any) -> tuple[ModelVersion, Classifier]:
    """The model version behind ``source``, and the model (PyTorch: monitoring embeds texts)."""
    from finetune.modeling.classifier import open_classifier
    from finetune.modeling.onnx_runtime import is_onnx_dir
    from finetune.registry.aliases import version_for_run

    if source.startswith("models:/"):
        name, version, run_id = _registered(client, source)
        _require_transformers(source)
    elif source.startswith("runs:/"):
        name, version, run_id = None, None, source.split("/")[1]
        _require_transformers(source)
    elif Path(source).is_dir():
        if is_onnx_dir(source):
            raise ConfigError(
                f"{source} is an ONNX export: monitoring embeds texts with the PyTorch model "
                f"it was exported from; pass {cfg.paths.model_dir} or models:/<name>@champion"
            )
        run_id = _dir_run(cfg, source)
        name = cfg.tracking.registered_model_name
        found = version_for_run(client, name, run_id) if name else None
        version = str(found.version) if found is not None else None
    else:
        raise ModelNotFoundError(
            f"model {source!r} is neither a directory nor a models:/ or runs:/ URI"
        )
    run = _training_run(cfg, client, source, run_id)
    temperature = run.data.metrics.get(TEMPERATURE_METRIC)
    classifier = open_classifier(source, cfg.tracking.uri)
    if temperature is None and classifier.thresholds is None:  # multi-label: no estimate
        raise ModelNotFoundError(
            f"run {run_id} of {source} has no {TEMPERATURE_METRIC} metric: the label-free "
            "estimate needs the temperature the evaluate stage fits; run `dvc repro evaluate`"
        )
    found_version = ModelVersion(
        source=source,
        run_id=run_id,
        name=name,
        version=version,
        data_version=run.data.tags.get("data.version"),
        processed_md5=run.data.tags.get(DATA_TAG + tag_path(cfg.paths.processed_dir)),
        temperature=None if temperature is None else float(temperature),
    )
    return found_version, classifier


def _training_run(cfg: PipelineConfig, client: Any, source: str, run_id: str) -> Any:
    """The model's training run; one that is not in this store names the store searched."""
    from mlflow.exceptions import MlflowException

    from finetune.core.secrets import mask_url
    from finetune.core.store import tracking_uri

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        uri = mask_url(tracking_uri(cfg.tracking.uri))
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(
                f"cannot read run {run_id} of {source} from MLflow store {uri}: {exc}"
            ) from exc
        raise ModelNotFoundError(
            f"the training run {run_id} of {source} is not in the MLflow store searched, {uri} "
            "(tracking.uri, else MLFLOW_TRACKING_URI, else .mlflow/mlflow.db): the model was "
            "likely trained against another tracking server. Point this command at that "
            "store: `source .services/env` for the team server (it sets MLFLOW_TRACKING_URI), "
            "or set MLFLOW_TRACKING_URI or tracking.uri to the URI training used"
        ) from exc


def _require_transformers(uri: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        flavors = mlflow.models.get_model_info(uri).flavors
    except (MlflowException, OSError) as exc:
        raise ModelNotFoundError(f"cannot load {uri}: {exc}") from exc
    if "transformers" not in flavors:
        raise ConfigError(
            f"{uri} is not a transformers model (flavours {sorted(flavors)}): monitoring embeds "
            "texts with the PyTorch model; for an ONNX export, monitor the version it was "
            "exported from (its source_model tag)"
        )


# --------------------------------------------------------------------------- the data


def _lock_md5(lock_path: Path, processed_dir: str) -> str | None:
    """What ``dvc.lock`` says the workspace's ``processed_dir`` hashes to."""
    if not lock_path.is_file():
        return None
    stage = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {}).get("preprocess", {})
    for out in stage.get("outs", []):
        if out.get("path") == processed_dir:
            return out.get("md5")
    return None


def _from_cache(root: Path, dir_md5: str, names: list[str]) -> dict[str, bytes]:
    """Files of a DVC directory version, by its hash, from the repository's DVC cache."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        odb = repo.cache.local
        manifest_path = Path(odb.oid_to_path(dir_md5))
        if not manifest_path.is_file():
            raise DataError(
                f"the splits this model was trained on (DVC hash {dir_md5}) are not in the DVC "
                f"cache {odb.path}: fetch them (`dvc fetch --all-commits`) or check out the "
                "commit that trained the model and run `dvc pull`"
            )
        entries = {e["relpath"]: e["md5"] for e in json.loads(manifest_path.read_text())}
        out = {}
        for name in names:
            if name not in entries:
                raise DataError(f"DVC directory {dir_md5} has no {name}: {sorted(entries)}")
            out[name] = Path(odb.oid_to_path(entries[name])).read_bytes()
    return out


def training_splits(
    cfg: PipelineConfig, version: ModelVersion, root: Path
) -> tuple[dict[str, pd.DataFrame], str]:
    """The train and test splits the model was trained and evaluated on, and where they came
    from ("workspace" or "DVC cache <hash>")."""
    from finetune.core.artifacts import load_split

    processed = cfg.paths.processed_dir
    wanted = version.processed_md5
    here = _lock_md5(root / "dvc.lock", processed)
    if wanted is None:
        log.warning(
            "run %s records no data version (trained outside `dvc repro`?): comparing with the "
            "workspace's %s, which may not be the data it was trained on",
            version.run_id,
            processed,
        )
    if wanted is None or wanted == here:
        return {name: load_split(processed, name) for name in SPLITS}, "workspace"
    files = _from_cache(root, wanted, [f"{name}.parquet" for name in SPLITS])
    splits = {name: pd.read_parquet(io.BytesIO(files[f"{name}.parquet"])) for name in SPLITS}
    log.info(
        "training data of %s: DVC cache %s (the workspace holds %s)", version.title, wanted, here
    )
    return splits, f"DVC cache {wanted}"
