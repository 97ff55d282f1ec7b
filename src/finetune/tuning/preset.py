"""The best trial as a preset: ``conf/experiment/tuned.yaml``, so that ``dvc exp run -S
experiment=tuned`` composes exactly the params the trial ran with.

The preset holds every value in which the trial's params.yaml (what DVC recorded for its
experiment) differs from what conf/ composes to with no experiment preset, so it does not
depend on which preset the workspace selects. It is checked by composing it before it replaces
the old file: a preset that would not reproduce the trial is never written.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from finetune.core.config import compose, params_diff
from finetune.core.errors import ConfigError
from finetune.core.io import atomic_path

log = logging.getLogger(__name__)

PRESET_GROUP = "experiment"


def differences(trial: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The nested part of ``trial`` that is not already so in ``base`` (lists whole)."""
    out: dict[str, Any] = {}
    for key, value in trial.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            nested = differences(value, base[key])
            if nested:
                out[key] = nested
        elif key not in base or base[key] != value:
            out[key] = value
    return out


def write_preset(
    conf_dir: Path, preset_path: Path, trial_params: Mapping[str, Any], header: list[str]
) -> dict[str, Any]:
    """Write the preset for ``trial_params``; returns the values it sets. The preset is
    composed first in a copy of conf/, and written only if it gives ``trial_params`` exactly."""
    name = preset_path.stem
    if preset_path.parent.resolve() != (conf_dir / PRESET_GROUP).resolve():
        raise ConfigError(f"paths.tuned_preset {preset_path} must be in {conf_dir / PRESET_GROUP}")
    base = compose(conf_dir, [f"~{PRESET_GROUP}"])  # whatever preset the workspace selects
    body = differences(trial_params, base)
    lines = ["# @package _global_", *(f"# {line}" for line in header)]
    text = "\n".join(lines) + "\n" + (yaml.safe_dump(body, sort_keys=False) if body else "{}\n")
    with tempfile.TemporaryDirectory() as tmp:
        trial_conf = Path(tmp) / "conf"
        shutil.copytree(conf_dir, trial_conf)
        (trial_conf / PRESET_GROUP / preset_path.name).write_text(text)
        got = compose(trial_conf, [f"{PRESET_GROUP}={name}"])
    wrong = list(params_diff(dict(trial_params), got))
    if wrong:
        raise ConfigError(
            f"{preset_path} would not reproduce the trial ({'; '.join(wrong[:5])}): not written"
        )
    with atomic_path(preset_path) as out:
        out.write_text(text)
    log.info("wrote %s (%d top-level section(s) differ from conf/)", preset_path, len(body))
    return body


def header_lines(
    study_name: str, trial_number: int, experiment: str, metric: str, value: float
) -> list[str]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"Best trial of Optuna study {study_name!r}: trial {trial_number} "
        f"(DVC experiment {experiment}), {metric} = {value:.6g}.",
        f"Written by `finetune tune` on {stamp}: every value in which that trial's params.yaml",
        "differs from conf/ without an experiment preset. Reproduce it with",
        "`dvc exp run -S experiment=tuned`; do not edit by hand (the next tune overwrites it).",
    ]
