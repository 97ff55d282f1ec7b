"""Out-of-fold class probabilities from the fine-tuned backbone itself.

Each labelled row is predicted by a model fine-tuned on the other folds, so the probability
of its given label is out of sample, as confident learning needs: the model trained on all the
data saw (and partly memorised) every label, mislabelled ones too. Costs ``folds`` trainings.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from finetune.core.schema import ModelConfig, TrainConfig
from finetune.modeling.inference import predict_proba
from finetune.training.trainer import fine_tune

log = logging.getLogger(__name__)


def out_of_fold_probs(
    df: pd.DataFrame,
    labels: list[str],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    folds: int,
    epochs: float,
    seed: int,
    max_length: int,
) -> np.ndarray:
    """(rows, classes) probabilities of ``df`` (``text``, ``label_id``), each row from the
    model of the fold that left it out; folds are stratified and capped by the rarest class."""
    from sklearn.model_selection import StratifiedKFold

    y = df["label_id"].to_numpy().astype(int)
    counts = np.bincount(y)
    folds = max(2, min(folds, int(counts[counts > 0].min())))
    spec = train_cfg.model_copy(
        update={
            "epochs": epochs,
            "max_steps": -1,
            "eval_steps": None,
            "early_stopping_patience": None,
            "progress_bar": False,
            "keep_checkpoints": False,
        }
    )
    model_cfg = model_cfg.model_copy(update={"max_length": max_length})
    probs = np.zeros((len(df), len(labels)), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit, held) in enumerate(splitter.split(np.zeros(len(y)), y)):
        began = time.perf_counter()
        part = df.iloc[held].reset_index(drop=True)
        # The held-out fold is the validation split too: with a fixed number of epochs and one
        # evaluation at the end, it only reports, it selects nothing.
        result = fine_tune(
            df.iloc[fit].reset_index(drop=True), part, labels, model_cfg, spec, seed + k
        )
        probs[held] = predict_proba(
            result.model, result.tokenizer, part["text"].tolist(), spec.eval_batch_size, max_length
        ).probabilities
        log.info(
            "label errors: fold %d/%d (%d rows held out) in %.0f s",
            k + 1,
            folds,
            len(held),
            time.perf_counter() - began,
        )
    return probs
