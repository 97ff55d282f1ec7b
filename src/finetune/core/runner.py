"""What every stage entry point shares: logging, seeding, plain-dict config, exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from finetune.core.errors import PipelineError

log = logging.getLogger("finetune")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")  # stages that train seed torch themselves (set_seed)
    if torch is not None:
        torch.manual_seed(seed)


def run_stage(name: str, run: Callable[[dict[str, Any]], Any], cfg: Any) -> None:
    """Call ``run(plain_cfg)``; a PipelineError becomes one clear log line and exit code 1."""
    from omegaconf import OmegaConf

    logging.basicConfig(
        level=os.environ.get("FINETUNE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    plain = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    seed_everything(int(plain.get("seed", 0)))
    log.info("stage %s starting", name)
    try:
        run(plain)
    except PipelineError as exc:
        log.error("stage %s failed: %s", name, exc)
        sys.exit(1)
    log.info("stage %s done", name)
