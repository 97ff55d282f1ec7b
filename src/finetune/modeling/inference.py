"""Batched inference: texts sorted by length so each batch pads as little as possible."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finetune.modeling import truncation

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    probabilities: np.ndarray  # (n, num_classes), rows in input order
    batch_seconds: list[float] = field(default_factory=list)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)


def length_sorted_batches(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int, max_length: int
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """(row positions, encoded batch on the model's device), shortest texts first, no grad."""
    import torch

    order = np.argsort([len(t) for t in texts], kind="stable")
    mode, share = truncation.settings(model.config)  # how the model was trained to cut them
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = [texts[i] for i in idx]
            if mode == truncation.HEAD:
                enc = tokenizer(
                    batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
                )
            else:
                cut = truncation.encode(tokenizer, batch, max_length, mode, share)
                enc = tokenizer.pad(cut, padding=True, return_tensors="pt")
            yield idx, {k: v.to(model.device) for k, v in enc.items()}


def predict_proba(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> Predictions:
    """Class probabilities for ``texts`` (input order), batching texts of similar length."""
    import torch

    num_labels = int(model.config.num_labels)
    if not texts:
        return Predictions(np.zeros((0, num_labels), dtype=np.float32))
    probs = np.zeros((len(texts), num_labels), dtype=np.float32)
    timings: list[float] = []
    began = time.perf_counter()
    for idx, enc in length_sorted_batches(model, tokenizer, texts, batch_size, max_length):
        logits = model(**enc).logits.float()
        probs[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
        now = time.perf_counter()
        timings.append(now - began)  # tokenisation + forward pass of this batch
        began = now
    return Predictions(probs, timings)


def _mean_pool(states: Any, attention_mask: Any) -> np.ndarray:
    mask = attention_mask.unsqueeze(-1).float()
    pooled = (states.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return pooled.cpu().numpy()


def sentence_embeddings(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    """Frozen sentence embeddings: the encoder's last hidden states, mean-pooled over tokens."""

    hidden = int(model.config.hidden_size)
    if not texts:
        return np.zeros((0, hidden), dtype=np.float32)
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    encoder = model.base_model
    for idx, enc in length_sorted_batches(model, tokenizer, texts, batch_size, max_length):
        out[idx] = _mean_pool(encoder(**enc).last_hidden_state, enc["attention_mask"])
    return out


def embed_and_predict(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Sentence embeddings (as :func:`sentence_embeddings`) and class probabilities from one
    forward pass per batch: the classifier's own last hidden states, mean-pooled."""
    import torch

    hidden, num_labels = int(model.config.hidden_size), int(model.config.num_labels)
    embeddings = np.zeros((len(texts), hidden), dtype=np.float32)
    probs = np.zeros((len(texts), num_labels), dtype=np.float32)
    for idx, enc in length_sorted_batches(model, tokenizer, texts, batch_size, max_length):
        out = model(**enc, output_hidden_states=True)
        embeddings[idx] = _mean_pool(out.hidden_states[-1], enc["attention_mask"])
        probs[idx] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
    return embeddings, probs
