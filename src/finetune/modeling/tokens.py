"""Settings that fit the dataset: what ``auto`` resolves to, as pure functions of the data.

Each is deterministic (same data, same choice), logged, written to the stage's report and the
MLflow run, and shown in the model card:

- ``augment.enabled: auto``: augment when the train split has fewer than
  :data:`AUGMENT_BELOW_ROWS` rows. Measured here (``bench/augment_ablation.py``): augmentation
  adds about 1 to 4 macro-F1 points at 500 and 1,000 rows; the EDA paper finds its gains fade
  at a few thousand; above that it only lengthens training.
- ``train.epochs: auto`` follows the validation curve instead: ``finetune.training.schedule``.
- ``model.max_length: auto``: the 99th percentile of the train split's token lengths, rounded
  up to a multiple of 8, at least 16 and at most the model's limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

AUTO = "auto"
AUGMENT_BELOW_ROWS = 5000
LENGTH_PERCENTILE = 99
MIN_LENGTH = 16


def augment_enabled(setting: bool | str, n_train: int) -> bool:
    """``augment.enabled``, with ``auto`` resolved from the train split's size."""
    return n_train < AUGMENT_BELOW_ROWS if setting == AUTO else bool(setting)


def max_length(setting: int | str, lengths: Sequence[int] | np.ndarray, limit: int) -> int:
    """``model.max_length``, with ``auto`` resolved from token lengths (special tokens
    included) of the train split; never above ``limit`` (the model's position embeddings)."""
    if setting != AUTO:
        return min(int(setting), limit)
    values = np.asarray(lengths)
    if len(values) == 0:
        return min(limit, 128)
    p = float(np.percentile(values, LENGTH_PERCENTILE))
    return int(min(limit, max(MIN_LENGTH, 8 * math.ceil(p / 8))))
