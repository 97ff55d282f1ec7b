"""Scoring one deployable variant: quality on the test split, agreement with PyTorch, size,
load time, latency at batch 1 and throughput at a larger batch. Also the gate that picks one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetune.evaluation import metrics as M
from finetune.modeling.inference import Predictions

# texts, batch size, max length -> probabilities (input order) and per-batch seconds
PredictFn = Callable[[list[str], int, int], Predictions]


@dataclass(frozen=True)
class Timing:
    latency_ms_p50: float
    latency_ms_p95: float
    throughput_samples_per_s: float


def time_predictor(
    predict: PredictFn, texts: list[str], latency_texts: int, batch_size: int, max_length: int
) -> Timing:
    """Latency of one text at a time over the first ``latency_texts`` texts (tokenisation
    included, after one warm-up call) and throughput over all ``texts`` at ``batch_size``."""
    predict(texts[:1], 1, max_length)  # warm-up: first-call allocations are not latency
    seconds = []
    for text in texts[:latency_texts]:
        began = time.perf_counter()
        predict([text], 1, max_length)
        seconds.append(time.perf_counter() - began)
    began = time.perf_counter()
    predict(texts, batch_size, max_length)
    total = time.perf_counter() - began
    return Timing(
        latency_ms_p50=round(float(np.percentile(seconds, 50)) * 1000, 3),
        latency_ms_p95=round(float(np.percentile(seconds, 95)) * 1000, 3),
        throughput_samples_per_s=round(len(texts) / total, 2) if total > 0 else 0.0,
    )


def quality(
    probs: np.ndarray, y: np.ndarray, labels: list[str], reference: np.ndarray | None, n_bins: int
) -> dict[str, float]:
    """Accuracy, macro-F1, ECE, and the share of predictions equal to ``reference``'s."""
    full = M.classification_metrics(y, probs, labels)
    predicted = probs.argmax(axis=1)
    out = {
        "accuracy": round(float(full["accuracy"]), 6),
        "f1_macro": round(float(full["f1_macro"]), 6),
        "ece": round(M.expected_calibration_error(probs, y, n_bins), 6),
    }
    if reference is not None:
        out["agreement_with_pytorch"] = round(float((predicted == reference).mean()), 6)
    return out


def score(
    name: str,
    predict: PredictFn,
    texts: list[str],
    y: np.ndarray,
    labels: list[str],
    reference: np.ndarray | None,
    *,
    size_bytes: int,
    load_seconds: float,
    latency_texts: int,
    batch_size: int,
    max_length: int,
    n_bins: int,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of one variant (``reference``: the PyTorch model's predicted ids)."""
    probs = predict(texts, batch_size, max_length).probabilities
    timing = time_predictor(predict, texts, latency_texts, batch_size, max_length)
    return {
        "variant": name,
        "status": "scored",
        **quality(probs, y, labels, reference, n_bins),
        "size_mb": round(size_bytes / 1e6, 3),
        "load_seconds": round(load_seconds, 3),
        "latency_ms_p50_batch1": timing.latency_ms_p50,
        "latency_ms_p95_batch1": timing.latency_ms_p95,
        f"throughput_samples_per_s_batch{batch_size}": timing.throughput_samples_per_s,
        **(details or {}),
        "_predicted": probs.argmax(axis=1),
    }


@dataclass(frozen=True)
class ExportDecision:
    chosen: str | None  # the variant name; None: no variant passed, PyTorch stays deployed
    reason: str
    accepted: list[str]
    f1_drops: dict[str, float]


def choose(
    variants: list[dict[str, Any]], reference_f1: float, max_f1_drop: float
) -> ExportDecision:
    """The fastest variant at batch 1 whose macro-F1 is at most ``max_f1_drop`` below the
    PyTorch model's (ties: the smaller file). None accepted: PyTorch stays the artifact."""
    scored = [v for v in variants if v["status"] == "scored"]
    drops = {v["variant"]: round(reference_f1 - v["f1_macro"], 6) for v in scored}
    accepted = [v for v in scored if drops[v["variant"]] <= max_f1_drop + 1e-12]
    if not accepted:
        worst = ", ".join(f"{k} {d:+.4f}" for k, d in drops.items()) or "none scored"
        return ExportDecision(
            None,
            f"no ONNX variant kept macro-F1 within {max_f1_drop} of PyTorch (drops: {worst}): "
            "the PyTorch model stays the deployment artifact",
            [],
            drops,
        )
    best = min(accepted, key=lambda v: (v["latency_ms_p50_batch1"], v["size_mb"]))
    return ExportDecision(
        best["variant"],
        f"{best['variant']}: fastest at batch 1 ({best['latency_ms_p50_batch1']:.2f} ms p50) of "
        f"the variants within {max_f1_drop} macro-F1 of PyTorch "
        f"(drop {drops[best['variant']]:+.4f})",
        [v["variant"] for v in accepted],
        drops,
    )
