"""The loss: per-class weights and the class-weighted cross-entropy the Trainer uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from finetune.core.errors import ConfigError


def class_weights_for(spec_weights: Any, labels: list[str], label_ids: Any) -> list[float] | None:
    """Per-class loss weights in label-id order.

    ``balanced``: n_samples / (n_classes * count) from the train split (sklearn's rule); a list:
    used as given; a mapping: by label name (missing labels weigh 1).
    """
    if spec_weights is None:
        return None
    n = len(labels)
    if spec_weights == "balanced":
        counts = np.bincount(np.asarray(label_ids, dtype=int), minlength=n).astype(float)
        if (counts == 0).any():
            missing = [labels[i] for i in np.flatnonzero(counts == 0)]
            raise ConfigError(
                f"train.class_weights=balanced: labels {missing} have no training rows; "
                "give the weights explicitly"
            )
        return [float(w) for w in counts.sum() / (n * counts)]
    if isinstance(spec_weights, Mapping):
        unknown = sorted(set(spec_weights) - set(labels))
        if unknown:
            raise ConfigError(f"train.class_weights: unknown labels {unknown}; labels: {labels}")
        weights = [float(spec_weights.get(label, 1.0)) for label in labels]
    else:
        weights = [float(w) for w in spec_weights]
        if len(weights) != n:
            raise ConfigError(
                f"train.class_weights has {len(weights)} weights but there are {n} labels {labels}"
            )
    if any(w <= 0 for w in weights):
        raise ConfigError(f"train.class_weights={weights}: every weight must be > 0")
    return weights


def weighted_loss(weights: list[float]) -> Any:
    """A Trainer ``compute_loss_func``: class-weighted cross-entropy.

    With ``num_items_in_batch`` (gradient accumulation) the sum is divided by the number of
    examples in the accumulated batch, so accumulation gives the same gradient as a big batch.
    """
    import torch

    weight = torch.tensor(weights, dtype=torch.float32)

    def loss_func(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        w = weight.to(logits.device)
        if num_items_in_batch is None:
            return torch.nn.functional.cross_entropy(logits.float(), labels, weight=w)
        total = torch.nn.functional.cross_entropy(logits.float(), labels, weight=w, reduction="sum")
        return total / num_items_in_batch

    return loss_func
