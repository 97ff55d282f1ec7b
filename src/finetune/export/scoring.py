"""Scoring one deployable variant: quality on the test split, agreement with PyTorch, size,
load time, latency at batch 1 and throughput at a larger batch. Also the gate that picks one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetune.evaluation import metrics as M
from finetune.modeling import decisions
from finetune.modeling.inference import Predictions

# texts, batch size, max length -> probabilities (input order) and per-batch seconds
PredictFn = Callable[[list[str], int, int], Predictions]


def timed_batch1(
    predict: PredictFn, texts: list[str], max_length: int
) -> tuple[np.ndarray, list[float]]:
    """Every text on its own (tokenisation included, after one warm-up call), as a service
    answers one request at a time: (probabilities, seconds per text)."""
    predict(texts[:1], 1, max_length)  # warm-up: first-call allocations are not latency
    rows, seconds = [], []
    for text in texts:
        began = time.perf_counter()
        rows.append(predict([text], 1, max_length).probabilities[0])
        seconds.append(time.perf_counter() - began)
    return np.asarray(rows), seconds


def batch1_rows(n: int, latency_texts: int | None) -> np.ndarray:
    """The rows run one text per call: all, or a seeded sample of ``latency_texts`` in split
    order (a split is often ordered by class: its first rows would be a few classes only)."""
    if not latency_texts or latency_texts >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=latency_texts, replace=False))


def predicted(probs: np.ndarray, thresholds: decisions.Thresholds | None) -> np.ndarray:
    """Class ids, or (multi-label, ``thresholds``) the 0/1 label sets."""
    return probs.argmax(axis=1) if thresholds is None else decisions.decide(probs, thresholds)


def quality(
    probs: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    reference: np.ndarray | None,
    n_bins: int,
    thresholds: decisions.Thresholds | None = None,
) -> dict[str, float]:
    """Accuracy, macro-F1, ECE, and the share of predictions equal to ``reference``'s.
    Multi-label (``y`` 0/1 per label, ``thresholds``): subset accuracy, macro-F1 over labels,
    the label probabilities' ECE, and the share of texts given the same label set."""
    guess = predicted(probs, thresholds)
    if thresholds is not None:
        out = {
            "accuracy": round(float((guess == y).all(axis=1).mean()), 6) if len(y) else 0.0,
            "f1_macro": round(M.multilabel_f1(y, guess, "macro"), 6),
            "ece": round(M.label_calibration_error(probs, y, n_bins), 6),
        }
        same = (guess == reference).all(axis=1) if reference is not None else None
    else:
        full = M.classification_metrics(y, probs, labels)
        out = {
            "accuracy": round(float(full["accuracy"]), 6),
            "f1_macro": round(float(full["f1_macro"]), 6),
            "ece": round(M.expected_calibration_error(probs, y, n_bins), 6),
        }
        same = guess == reference if reference is not None else None
    if same is not None:
        out["agreement_with_pytorch"] = round(float(same.mean()), 6)
    return out


def score(
    name: str,
    predict: PredictFn,
    texts: list[str],
    y: np.ndarray,
    labels: list[str],
    reference: dict[str, np.ndarray] | None,
    *,
    size_bytes: int,
    load_seconds: float,
    latency_texts: int | None,
    batch_size: int,
    max_length: int,
    n_bins: int,
    details: dict[str, Any] | None = None,
    thresholds: decisions.Thresholds | None = None,
) -> dict[str, Any]:
    """Every figure of one variant. Quality is measured twice, because dynamic int8 scales
    activations per batch, so a text's prediction can depend on its batch: at ``batch_size``
    over the whole split (``accuracy``, ``f1_macro``, ...) and one text per call over a seeded
    sample of ``latency_texts`` (None: all) texts, the same for every variant
    (``*_batch1``; the latency comes from the same pass).
    ``reference``: the PyTorch model's predicted ids of both passes (``batched``, ``batch1``).
    ``thresholds``: a multi-label model's (``y`` then holds 0/1 per label)."""
    began = time.perf_counter()
    batched = predict(texts, batch_size, max_length).probabilities
    total = time.perf_counter() - began
    rows = batch1_rows(len(texts), latency_texts)
    single_texts = [texts[i] for i in rows]
    single, seconds = timed_batch1(predict, single_texts, max_length)
    ref = reference or {}
    one = quality(single, y[rows], labels, ref.get("batch1"), n_bins, thresholds)
    return {
        "variant": name,
        "status": "scored",
        **quality(batched, y, labels, ref.get("batched"), n_bins, thresholds),
        **{f"{k}_batch1": v for k, v in one.items() if k != "ece"},
        "batch1_texts": len(single_texts),
        "size_mb": round(size_bytes / 1e6, 3),
        "load_seconds": round(load_seconds, 3),
        "latency_ms_p50_batch1": round(float(np.percentile(seconds, 50)) * 1000, 3),
        "latency_ms_p95_batch1": round(float(np.percentile(seconds, 95)) * 1000, 3),
        f"throughput_samples_per_s_batch{batch_size}": round(len(texts) / total, 2),
        **(details or {}),
        "_predicted": {
            "batched": predicted(batched, thresholds),
            "batch1": predicted(single, thresholds),
        },
    }


@dataclass(frozen=True)
class ExportDecision:
    chosen: str | None  # the variant name; None: no variant passed, PyTorch stays deployed
    reason: str
    accepted: list[str]
    f1_drops: dict[str, float]


def f1_drop(variant: dict[str, Any], reference: dict[str, Any]) -> float:
    """How far the variant's macro-F1 falls below PyTorch's: the worse of the batched and the
    one-text-per-call pass (each against PyTorch on the same texts)."""
    drops = [reference["f1_macro"] - variant["f1_macro"]]
    if "f1_macro_batch1" in variant and "f1_macro_batch1" in reference:
        drops.append(reference["f1_macro_batch1"] - variant["f1_macro_batch1"])
    return round(max(drops), 6)


def choose(
    variants: list[dict[str, Any]], reference: dict[str, Any], max_f1_drop: float
) -> ExportDecision:
    """The fastest variant at batch 1 whose macro-F1 is at most ``max_f1_drop`` below the
    PyTorch model's at both batch sizes (ties: the smaller file). None accepted: PyTorch stays
    the artifact. ``reference``: the PyTorch model's row."""
    scored = [v for v in variants if v["status"] == "scored"]
    drops = {v["variant"]: f1_drop(v, reference) for v in scored}
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
