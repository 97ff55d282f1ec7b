"""Batched inference: texts sorted by length so each batch pads as little as possible."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finetune.modeling import decisions, truncation

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
    """(the text of each row, encoded rows on the model's device), shortest texts first, no
    grad. A row is a text cut as the model was trained to cut it, or, for chunks, one of its
    windows: a batch holds at most ``batch_size`` rows, so memory stays bounded however long
    a text is."""
    import torch

    order = np.argsort([len(t) for t in texts], kind="stable")
    long_text = truncation.settings(model.config)  # how the model was trained to cut them
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = [texts[i] for i in idx]
            if long_text.mode == truncation.HEAD:
                enc = tokenizer(
                    batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
                )
                yield idx, {k: v.to(model.device) for k, v in enc.items()}
                continue
            cut, owner = truncation.encode(tokenizer, batch, max_length, long_text)
            rows = idx[np.asarray(owner, dtype=np.int64)]
            for first in range(0, len(rows), batch_size):
                part = {k: v[first : first + batch_size] for k, v in cut.items()}
                enc = tokenizer.pad(part, padding=True, return_tensors="pt")
                yield (
                    rows[first : first + batch_size],
                    {k: v.to(model.device) for k, v in enc.items()},
                )


def predict_proba(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> Predictions:
    """Class probabilities for ``texts`` (input order), batching texts of similar length; a
    chunked text's windows' logits pooled (``model.chunk_pool``) before the softmax (or, for a
    multi-label model, the sigmoid per label)."""
    num_labels = int(model.config.num_labels)
    if not texts:
        return Predictions(np.zeros((0, num_labels), dtype=np.float32))
    rows: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    timings: list[float] = []
    began = time.perf_counter()
    for idx, enc in length_sorted_batches(model, tokenizer, texts, batch_size, max_length):
        logits.append(model(**enc).logits.float().cpu().numpy())
        rows.append(idx)
        now = time.perf_counter()
        timings.append(now - began)  # tokenisation + forward pass of this batch
        began = now
    how = truncation.settings(model.config).pool
    pooled = truncation.pool(np.concatenate(logits), np.concatenate(rows), len(texts), how)
    return Predictions(decisions.probabilities(pooled, model.config), timings)


def _mean_pool(states: Any, attention_mask: Any) -> np.ndarray:
    mask = attention_mask.unsqueeze(-1).float()
    pooled = (states.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return pooled.cpu().numpy()


def sentence_embeddings(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    """Frozen sentence embeddings: the encoder's last hidden states, mean-pooled over tokens
    (and over a chunked text's windows)."""

    hidden = int(model.config.hidden_size)
    if not texts:
        return np.zeros((0, hidden), dtype=np.float32)
    rows: list[np.ndarray] = []
    pooled: list[np.ndarray] = []
    encoder = model.base_model
    for idx, enc in length_sorted_batches(model, tokenizer, texts, batch_size, max_length):
        pooled.append(_mean_pool(encoder(**enc).last_hidden_state, enc["attention_mask"]))
        rows.append(idx)
    out = truncation.pool(np.concatenate(pooled), np.concatenate(rows), len(texts))
    return out.astype(np.float32)


def embed_and_predict(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Sentence embeddings (as :func:`sentence_embeddings`) and class probabilities (as
    :func:`predict_proba`) from one forward pass per batch: the classifier's own last hidden
    states, mean-pooled."""
    hidden, num_labels = int(model.config.hidden_size), int(model.config.num_labels)
    if not texts:
        return np.zeros((0, hidden), np.float32), np.zeros((0, num_labels), np.float32)
    rows: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    for idx, enc in length_sorted_batches(model, tokenizer, texts, batch_size, max_length):
        out = model(**enc, output_hidden_states=True)
        embeddings.append(_mean_pool(out.hidden_states[-1], enc["attention_mask"]))
        logits.append(out.logits.float().cpu().numpy())
        rows.append(idx)
    owner, n = np.concatenate(rows), len(texts)
    how = truncation.settings(model.config).pool
    pooled = truncation.pool(np.concatenate(logits), owner, n, how)
    embedded = truncation.pool(np.concatenate(embeddings), owner, n).astype(np.float32)
    return embedded, decisions.probabilities(pooled, model.config)
