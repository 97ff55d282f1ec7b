"""What every stage and ``finetune`` command shares: logging, the config check, the tracking
check, seeding, and how a failure is reported.

A stage entry point (``stages/<stage>.py``) is a thin Hydra app that calls
:func:`run_stage`, which

1. sets up logging (``FINETUNE_LOG_LEVEL``, default INFO);
2. validates params.yaml against the schema (:mod:`finetune.core.validate`) and, outside
   ``dvc exp run``, checks that it is what ``conf/`` composes to, so ``dvc repro <stage>`` is
   guarded too, not only the ``check_config`` stage;
3. checks that the tracking store answers (:mod:`finetune.core.store`, a few seconds at most):
   every stage, so `dvc repro` stops at its first stage, not minutes later at train;
4. seeds Python and NumPy, imports the stage's module and calls its ``run(config)``.

Any error ends the process with exit code 1 and one clear line (the traceback, with every
wrapped cause, only at ``FINETUNE_LOG_LEVEL=DEBUG``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from finetune.core.errors import PipelineError
from finetune.core.schema import PipelineConfig

log = logging.getLogger("finetune")

LOG_LEVEL_VAR = "FINETUNE_LOG_LEVEL"
EXIT_FAILED = 1

_current_stage: str | None = None


def current_stage() -> str | None:
    """The name of the stage :func:`run_stage` is running in this process (None outside one)."""
    return _current_stage


# Library warnings every run printed, each checked and not fixable here: ignored by their exact
# message, so any other warning still shows.
KNOWN_LIBRARY_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # pyspark (the spark extra; MLflow's signature inference imports pyspark.sql.connect when
    # it is installed) says at import that it "does not yet fully support pandas >= 3.0.0":
    # Spark scoring is tested with the pandas this project installs (test_spark_predict.py).
    (r"PySpark does not yet fully support pandas >= 3\.0\.0", FutureWarning),
)


def configure_logging(level: str | None = None) -> None:
    """Log lines to stderr at ``level`` (default ``FINETUNE_LOG_LEVEL``, else INFO), and ignore
    the :data:`KNOWN_LIBRARY_WARNINGS`: what every stage and ``finetune`` command does first."""
    for message, category in KNOWN_LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    logging.basicConfig(
        level=(level or os.environ.get(LOG_LEVEL_VAR, "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")  # stages that train seed torch themselves (set_seed)
    if torch is not None:
        torch.manual_seed(seed)


def report_failure(what: str, exc: BaseException) -> None:
    """One line for ``exc`` (its type too when it is not one of ours); the whole traceback,
    wrapped causes included, at DEBUG."""
    if isinstance(exc, PipelineError):
        log.error("%s failed: %s", what, exc)
    else:
        debug = log.isEnabledFor(logging.DEBUG)
        hint = "" if debug else f" (set {LOG_LEVEL_VAR}=DEBUG for the traceback)"
        log.error("%s failed: %s: %s%s", what, type(exc).__name__, exc, hint)
    log.debug("traceback of the failure in %s", what, exc_info=exc)


def checked_config(plain: Mapping[str, Any]) -> PipelineConfig:
    """params.yaml validated and checked against conf/, and the tracking store answering."""
    from finetune.core.config import check_params, find_repo_root, read_overrides
    from finetune.core.store import check_tracking
    from finetune.core.validate import parse

    root = find_repo_root()
    overrides = read_overrides(root)
    config = parse(plain, root / "conf", overrides)
    check_params(root)
    check_tracking(config.tracking)
    return config


def run_stage(
    name: str,
    load: Callable[[], Callable[[PipelineConfig], Any]],
    cfg: Any,
) -> None:
    """Run one pipeline stage on the Hydra-loaded params.yaml ``cfg`` (see the module doc).

    ``load`` imports the stage's module and returns its ``run``: it is called only after the
    checks pass, so a wrong key or an unreachable store is reported in seconds, before torch
    and transformers are imported."""
    from omegaconf import OmegaConf

    global _current_stage
    _current_stage = name
    configure_logging()
    plain = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    try:
        config = checked_config(plain)
        seed_everything(config.seed)
        log.info("stage %s starting", name)
        load()(config)
    except Exception as exc:  # reported in one line and turned into the exit code, not hidden
        report_failure(f"stage {name}", exc)
        sys.exit(EXIT_FAILED)
    log.info("stage %s done", name)
