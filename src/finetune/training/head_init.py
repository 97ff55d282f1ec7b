"""The classification head's starting weights: random (transformers' default) or a linear probe.

A linear probe fits the head by logistic regression on the backbone's frozen, mean-pooled
embeddings of the train texts before fine-tuning starts ("LP-FT": Kumar et al., 2022, *Fine-Tuning
can Distort Pretrained Features and Underperform Out-of-Distribution*). Fine-tuning then starts
from a head that already separates the classes instead of one that predicts noise, so the first
steps' gradients carry signal into the encoder; that matters most where training is short for
the number of classes or labels (many classes, rare labels, a tight time budget).

The probe is scikit-learn's ``LogisticRegression`` on standardised embeddings, weighted as the
fine-tuning loss is (class weights; per-label positive weights), and folded back into the head's
``nn.Linear``: ``W x + b`` with ``W = coef / scale`` and ``b = intercept - W . mean``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetune.core.errors import ConfigError

log = logging.getLogger(__name__)

RANDOM = "random"
PROBE = "probe"
# The embeddings the probe fits on are the first PROBE_TOKENS tokens of each text (fewer when
# the model reads fewer): a text's start says most of what it is about, and embedding it costs
# a forward pass over the train split, a fraction of one training epoch at this length.
PROBE_TOKENS = 128
# At most this many train texts are embedded for the probe: a linear head on a few hundred
# dimensions is fitted as well from them as from all, and the pass stays a small, bounded part of
# the time budget on large splits. Rare classes (labels) keep all their rows (:func:`probe_rows`).
PROBE_MAX_ROWS = 10_000
# A forward pass (the probe's embedding) costs about a third of a training step's forward and
# backward passes over the same tokens.
FORWARD_SHARE = 1 / 3
# A linear head on d-dimensional embeddings can fit almost any labelling of up to 2d texts
# (Cover, 1965: the capacity of a linear classifier is twice its dimension). A probe on so few
# rows fits the train split perfectly, its loss starts near zero and fine-tuning gets little
# gradient: measured on sms_spam-8shot (16 rows) macro-F1 0.858 with the probe, 0.950 without.
CAPACITY = 2
PROBE_C = 1.0  # LogisticRegression's inverse L2 strength on standardised embeddings
PROBE_MAX_ITER = 500
# a label the probe cannot fit (no train positives, or every row positive): its logit is this
# far from 0, the sign saying which (sigmoid(-8) = 0.0003)
CONSTANT_LOGIT = 8.0


@dataclass(frozen=True)
class Probe:
    """A fitted linear head: ``weight`` (labels, hidden) and ``bias`` (labels,)."""

    weight: np.ndarray
    bias: np.ndarray
    seconds: float
    rows: int
    max_length: int


def resolve(setting: str, pooling: str, lora: bool) -> tuple[str, str]:
    """(random | probe, why). ``auto``: probe where the head sits on the mean of the token
    states (the embedding the probe fits on) and is trained in full; LoRA trains the head
    alongside a low-rank adapter and keeps the default start."""
    mean_head = pooling == "mean"
    if setting == RANDOM:
        return RANDOM, "train.head_init=random"
    if setting == PROBE:
        if not mean_head:
            raise ConfigError(
                "train.head_init=probe fits the head on mean-pooled embeddings, but "
                f"model.pooling resolved to {pooling!r}: set model.pooling: mean, or "
                "train.head_init: random"
            )
        return PROBE, "train.head_init=probe"
    if not mean_head:
        return RANDOM, f"auto: the head sits on {pooling} pooling, not the mean the probe fits"
    if lora:
        return RANDOM, "auto: LoRA (the head trains with the adapter from its default start)"
    return PROBE, "auto: a mean-pooling head trained in full"


def saturates(rows: int, hidden: int) -> bool:
    """Whether ``rows`` train texts are within a linear head's capacity on ``hidden``-dimensional
    embeddings (CAPACITY x hidden): a probe would fit them whatever their labels."""
    return rows <= CAPACITY * hidden


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    return (x - mean) / scale, mean, scale


def _fold(
    coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The head on raw embeddings equal to ``coef`` and ``intercept`` on standardised ones."""
    weight = coef / scale
    return weight, intercept - weight @ mean


def fit_single_label(
    x: np.ndarray, y: np.ndarray, num_labels: int, class_weights: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A softmax head (num_labels, hidden) and bias by multinomial logistic regression on
    ``x`` (n, hidden) and class ids ``y``. A class with no train row gets a zero weight and a
    logit far below the others."""
    from sklearn.linear_model import LogisticRegression

    z, mean, scale = _standardise(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.int64)
    present = np.unique(y)
    weight = np.zeros((num_labels, x.shape[1]))
    bias = np.full(num_labels, -CONSTANT_LOGIT)
    if len(present) < 2:  # one class: nothing to separate
        bias[present] = CONSTANT_LOGIT
        return weight, bias
    cw = None if class_weights is None else {int(c): float(class_weights[c]) for c in present}
    model = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, class_weight=cw)
    model.fit(z, y)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # one row of coefficients: logit(class 1) - logit(class 0)
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    w, b = _fold(coef, intercept, mean, scale)
    weight[present], bias[present] = w, b
    return weight, bias


def fit_multi_label(
    x: np.ndarray, targets: np.ndarray, pos_weight: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A sigmoid head (labels, hidden) and bias: one binary logistic regression per label on
    ``x`` (n, hidden) and 0/1 ``targets`` (n, labels), the positives weighted as the loss weighs
    them. A label no row has (or every row has) gets a zero weight and a constant logit."""
    from sklearn.linear_model import LogisticRegression

    z, mean, scale = _standardise(np.asarray(x, dtype=np.float64))
    targets = np.asarray(targets)
    n_labels = targets.shape[1]
    coef = np.zeros((n_labels, x.shape[1]))
    intercept = np.zeros(n_labels)
    constant = np.zeros(n_labels, dtype=bool)
    for j in range(n_labels):
        column = targets[:, j].astype(np.int64)
        positives = int(column.sum())
        if positives in (0, len(column)):
            constant[j] = True
            intercept[j] = CONSTANT_LOGIT if positives else -CONSTANT_LOGIT
            continue
        cw = None if pos_weight is None else {0: 1.0, 1: float(pos_weight[j])}
        model = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, class_weight=cw)
        model.fit(z, column)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    weight, bias = _fold(coef, intercept, mean, scale)
    bias[constant] = intercept[constant]
    return weight, bias


def estimated_seconds(
    lengths: np.ndarray, max_length: int, training_sample_seconds: Callable[[float], float]
) -> float:
    """The probe's embedding pass, estimated before it runs from the seconds a training sample
    of ``tokens`` costs: the mean over every text (its tokens up to the probe's length) times
    the rows the probe embeds (at most PROBE_MAX_ROWS), at FORWARD_SHARE of that cost (the
    budget's fit of the max length sets this time aside)."""
    length = min(int(max_length), PROBE_TOKENS)
    cut = np.minimum(np.asarray(lengths, dtype=np.int64), length)
    if not len(cut):
        return 0.0
    values, counts = np.unique(cut, return_counts=True)  # one cost per distinct length
    mean = sum(
        training_sample_seconds(float(v)) * c for v, c in zip(values, counts, strict=True)
    ) / len(cut)
    return float(mean * min(len(cut), PROBE_MAX_ROWS) * FORWARD_SHARE)


def strata(targets: np.ndarray, multi_label: bool) -> np.ndarray:
    """A class per row to sample by: the class id, or (multi-label) the row's rarest label
    (rows without a label: one stratum of their own)."""
    targets = np.asarray(targets)
    if not multi_label:
        return targets.astype(np.int64)
    counts = targets.sum(axis=0).astype(np.float64)
    rarity = np.where(targets > 0, counts[None, :], np.inf)
    out = rarity.argmin(axis=1).astype(np.int64)
    out[~(targets > 0).any(axis=1)] = targets.shape[1]
    return out


def probe_rows(groups: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``cap`` rows (all when there are no more): every row of a group up to
    a common quota, the quota as large as the cap allows (water-filling), so rare groups keep
    all their rows and only the common ones are sampled (seeded)."""
    n = len(groups)
    if n <= cap:
        return np.arange(n)
    names, counts = np.unique(groups, return_counts=True)
    quota, left, remaining = 0, cap, len(names)
    for c in np.sort(counts):
        share = left // remaining
        if c > share:
            quota = share
            break
        left -= int(c)
        remaining -= 1
        quota = int(c)
    rng = np.random.default_rng(seed)
    chosen = []
    for name in names:
        rows = np.flatnonzero(groups == name)
        chosen.append(rows if len(rows) <= quota else rng.choice(rows, quota, replace=False))
    return np.sort(np.concatenate(chosen))


def probe(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    targets: np.ndarray,
    max_length: int,
    batch_size: int,
    *,
    multi_label: bool,
    weights: list[float] | None = None,
) -> Probe:
    """Fit the head of ``model`` (a mean-pooling classifier) on the frozen embeddings of
    ``texts`` cut to ``min(max_length, PROBE_TOKENS)`` tokens (at most PROBE_MAX_ROWS of them,
    :func:`probe_rows`). ``targets``: class ids, or the 0/1 label matrix (``multi_label``);
    ``weights``: the loss's class or positive weights."""
    from finetune.modeling.inference import sentence_embeddings

    length = min(int(max_length), PROBE_TOKENS)
    began = time.perf_counter()
    rows = probe_rows(strata(targets, multi_label), PROBE_MAX_ROWS)
    targets = np.asarray(targets)[rows]
    was_training = model.training
    x = sentence_embeddings(model, tokenizer, [texts[i] for i in rows], batch_size, length)
    model.train(was_training)
    if multi_label:
        weight, bias = fit_multi_label(x, targets, weights)
    else:
        weight, bias = fit_single_label(x, targets, int(model.config.num_labels), weights)
    return Probe(weight, bias, time.perf_counter() - began, len(rows), length)


def apply(model: Any, fitted: Probe) -> None:
    """Copy a fitted probe into ``model.classifier`` (an ``nn.Linear``)."""
    import torch

    head = model.classifier
    if tuple(head.weight.shape) != fitted.weight.shape:
        raise ValueError(
            f"the probe's head is {fitted.weight.shape}, the model's {tuple(head.weight.shape)}"
        )
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(fitted.weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(fitted.bias, dtype=head.bias.dtype))
