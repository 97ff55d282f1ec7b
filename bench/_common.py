"""Shared by the training benchmarks: data, model FLOPs and the machine's measured peak."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "datasets" / "sst2"
DEMO = REPO / "data" / "raw" / "support_tickets.csv"

log = logging.getLogger("bench")


def setup_logging() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()  # no head-initialisation reports


def params() -> Any:
    """The committed params.yaml, validated (a ``finetune.core.schema.PipelineConfig``)."""
    from finetune.core.config import load_config

    return load_config(REPO)


def load_table(split: str) -> tuple[pd.DataFrame, str]:
    """(text, label, label_id) rows of sst2 ``split``, or of the demo data when sst2 is absent."""
    path = SST2 / f"{split}.csv"
    if path.is_file():
        df, source = pd.read_csv(path), f"sst2/{split}.csv"
    else:
        log.warning("%s not found: falling back to the demo data %s", path, DEMO)
        df, source = pd.read_csv(DEMO)[["text", "label"]], f"demo data {DEMO.name} (sst2 absent)"
    df = df.dropna(subset=["text", "label"]).reset_index(drop=True)
    labels = sorted(df["label"].astype(str).unique())
    df["label"] = df["label"].astype(str)
    df["label_id"] = df["label"].map({label: i for i, label in enumerate(labels)})
    return df, source


def cpu_flags() -> dict[str, Any]:
    """The CPU model and the instruction-set flags that decide speed here (bf16 needs
    avx512_bf16 or amx_bf16; AVX2-only CPUs train in fp32)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                  if ln.startswith("model name")), "unknown")  # fmt: skip
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def labels_of(df: pd.DataFrame) -> list[str]:
    return sorted(df["label"].unique())


def non_embedding_params(model: Any) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in f".{n}")


def train_flops(model: Any, real_tokens: int, seq_len: int) -> float:
    """Training FLOPs of one batch: 6 x non-embedding params x tokens + attention.

    Attention (QK^T and AV) is 4 x seq x hidden FLOPs per token per layer forward, x3 for
    forward + backward: 12 x layers x hidden x seq per token (the PaLM appendix formula).
    Counted on real (non-padding) tokens, so padding is never credited as useful work.
    """
    cfg = model.config
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    return float(real_tokens) * (6 * non_embedding_params(model) + attention)


def peak_matmul_flops(dtype_name: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Best measured FLOP/s of an n x n x n matmul in ``dtype_name`` on all torch threads."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype_name]
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        torch.matmul(a, b)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - began))
    return best
