"""Where training runs: CPU/GPU precision and the distributed (DDP) process layout."""

from __future__ import annotations

import os

from finetune.core.errors import ConfigError
from finetune.core.machine import cpu_flags


def cpu_supports_bf16() -> bool:
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def select_precision(requested: str) -> str:
    """Resolve ``auto`` to the fastest precision this machine supports; validate the rest."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_supports_bf16() else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError(
            "train.precision=fp16 needs a CUDA GPU; use bf16 or fp32 (or auto) on CPU"
        )
    return requested


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch; (0, 1) in a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def end_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
