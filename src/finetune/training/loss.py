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


def positive_weights(rule: str, targets: np.ndarray) -> list[float] | None:
    """Multi-label: the BCE weight of each label's positives from the train rows' 0/1
    ``targets`` (n, L). ``sqrt``: sqrt(negatives / positives), ``balanced``: the ratio itself
    (a label on 1 row in 1,000 weighs its positives 999x), ``none``: 1 each (None). A label no
    train row has weighs 1."""
    if rule == "none":
        return None
    positives = np.asarray(targets, dtype=np.float64).sum(axis=0)
    negatives = len(targets) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1.0), 1.0)
    ratio = np.maximum(ratio, 1e-6)
    return [float(w) for w in (np.sqrt(ratio) if rule == "sqrt" else ratio)]


def multi_label_loss(pos_weight: list[float] | None) -> Any:
    """A Trainer ``compute_loss_func``: binary cross-entropy per label (a sigmoid each), the
    positives of label j weighted ``pos_weight[j]``; the mean over every (example, label) of the
    batch. With gradient accumulation the Trainer passes ``num_items_in_batch``, the label
    entries of the whole accumulated batch (examples x labels: it counts ``labels`` elements),
    so the sum is divided by it and accumulation gives the big batch's gradient."""
    import torch

    weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32)

    def loss_func(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        w = None if weight is None else weight.to(logits.device)
        each = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), labels.float(), pos_weight=w, reduction="none"
        )
        if num_items_in_batch is None:
            return each.mean()
        return each.sum() / num_items_in_batch

    return loss_func
