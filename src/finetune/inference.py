"""Batched inference: texts sorted by length so each batch pads as little as possible."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


def predict_proba(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> Predictions:
    """Class probabilities for ``texts`` (input order), batching texts of similar length."""
    import torch

    num_labels = int(model.config.num_labels)
    if not texts:
        return Predictions(np.zeros((0, num_labels), dtype=np.float32))
    lengths = [len(t) for t in texts]
    order = np.argsort(lengths, kind="stable")
    probs = np.zeros((len(texts), num_labels), dtype=np.float32)
    timings: list[float] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            began = time.perf_counter()
            enc = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            enc = {k: v.to(model.device) for k, v in enc.items()}
            logits = model(**enc).logits.float()
            probs[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
            timings.append(time.perf_counter() - began)
    return Predictions(probs, timings)


def sentence_embeddings(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    """Frozen sentence embeddings: the encoder's last hidden states, mean-pooled over tokens."""
    import torch

    hidden = int(model.config.hidden_size)
    if not texts:
        return np.zeros((0, hidden), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    encoder = model.base_model
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            enc = {k: v.to(model.device) for k, v in enc.items()}
            states = encoder(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[idx] = pooled.cpu().numpy()
    return out


def token_counts(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Tokens per text including special tokens, without truncation (to find truncated ones)."""
    if not texts:
        return np.zeros(0, dtype=int)
    enc = tokenizer(texts, truncation=False, add_special_tokens=True)
    return np.asarray([len(ids) for ids in enc["input_ids"]], dtype=int)
