"""``model.max_length: auto`` fitted to ``train.time_budget``: long texts are cut so that the
budget can train on every row at least once.

The length ``auto`` starts from (the 99th percentile of the train split's token lengths) keeps
nearly every text whole. On short texts that is all there is to it. On long ones it can make a
step so slow that the budget ends before the model has seen the data: on 2 CPU cores 20
Newsgroups (10,167 posts, p99 over 512 tokens, 296 tokens a post on average at 512) trained 0.07
of an epoch in 25 minutes and reached validation macro-F1 0.25 beside TF-IDF's 0.90. A model
that has not seen every training row once has not learnt from all of its data; the first tokens
of a long text usually say what it is about. Past one pass, the whole text is worth more than
more passes: on an AVX512-BF16 machine imdb_subset (4,493 reviews, p99 512 tokens) reached a
validation plateau after 1.48 epochs at 512 tokens (test accuracy 0.873, 22.5 minutes), and
cut to 256 to afford two epochs it plateaued after 1.04 at 0.854 (11.4 minutes).

So, when the length is ``auto``, a time budget is set and the train split's texts are longer than
:data:`MIN_FITTED_LENGTH` tokens, the cost of a training step is measured on this machine with
the model as it will train (precision, LoRA, freezing, attention dropout) at two lengths, one
untimed step on :data:`WARMUP_ROWS` rows, then timed steps of a whole batch until they settle,
the fastest one counting (:func:`measure_step_cost`). One timed step was not enough: the first
steps of a shape are slow, and on 20 Newsgroups (2-core EPYC with AVX512-BF16) the single step at
128 tokens said 0.126 s a sample where training then ran at 0.037 (27 samples/s), so the budget
cut the length to 128 expecting 0.77 epochs and trained 3.19. The cost of a
training sample is taken as linear in its tokens (fixed + per-token seconds). The length is then
the p99 length itself or the longest multiple of :data:`LENGTH_STEP` below it, down to
:data:`MIN_FITTED_LENGTH`, at which :data:`MIN_EPOCHS` passes over the train rows (texts cut to
that length: sum of min(length, L); batches of similar lengths pad little) fit the budget less the
probe's own time and the share evaluations take (:func:`fit_length`); with a fixed number of
epochs, that number. No cut goes below :data:`MIN_FITTED_LENGTH` (the common short setting of
BERT fine-tuning); a length at or under it is never changed. Lengths are multiples of
:data:`LENGTH_STEP`, so a little timing noise rarely changes the length between two runs; a
resumed run keeps the length it started with. Which rule set the length is recorded
(``resolved.model.max_length_by``: ``setting``, ``p99`` or ``time_budget``), logged with the
epochs the budget is expected to afford, and written in the model card.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIN_EPOCHS = 1  # passes over the train rows the budget should afford (epochs: auto)
MIN_FITTED_LENGTH = 128  # the budget never cuts texts shorter than this
LENGTH_STEP = 64  # cut lengths are multiples of this: a little timing noise rarely moves them
# Timed training steps of a whole batch per probed length: the first steps of a shape run
# slower (kernels made for it, memory grown; 2.4x at 128 tokens on a 2-core EPYC, the first
# length timed in the process), so steps are timed until one is no longer more than
# PROBE_SETTLED faster than the fastest before it, at most PROBE_MAX_STEPS, and the fastest
# one is the cost.
PROBE_MAX_STEPS = 4
PROBE_SETTLED = 0.1
WARMUP_ROWS = 2  # the untimed step before them (allocations, kernels) takes this many rows


@dataclass(frozen=True)
class StepCost:
    """Seconds a training sample costs: ``fixed + per_token * tokens``."""

    fixed: float
    per_token: float

    def seconds(self, tokens: float) -> float:
        return self.fixed + self.per_token * tokens

    @classmethod
    def from_points(cls, points: dict[int, float]) -> StepCost:
        """From seconds per sample measured at (at least) two lengths: the line through the
        shortest and the longest; never a negative part (timing noise)."""
        lo, hi = min(points), max(points)
        if lo == hi:
            return cls(0.0, points[hi] / hi)
        per_token = max(0.0, (points[hi] - points[lo]) / (hi - lo))
        fixed = max(0.0, points[lo] - per_token * lo)
        if per_token == 0.0 and fixed == 0.0:
            raise ValueError(f"no cost measured at lengths {sorted(points)}: {points}")
        return cls(fixed, per_token)


def epoch_seconds(lengths: np.ndarray, max_length: int, cost: StepCost, processes: int) -> float:
    """Seconds one pass over texts of these token ``lengths`` takes when cut to ``max_length``
    (batches of similar lengths pad little)."""
    tokens = np.minimum(lengths, max_length)
    return float(len(lengths) * cost.seconds(float(tokens.mean()))) / max(processes, 1)


def fit_length(
    lengths: np.ndarray,
    start: int,
    epochs: float,
    seconds: float,
    cost: StepCost,
    processes: int = 1,
    floor: int = MIN_FITTED_LENGTH,
) -> int:
    """``start`` or the longest multiple of :data:`LENGTH_STEP` below it, down to ``floor``, at
    which ``epochs`` passes over texts of these token ``lengths`` take at most ``seconds``;
    ``floor`` when none does, and ``start`` itself when it is not above ``floor`` (short texts
    are never cut)."""
    if start <= floor:
        return start
    below = LENGTH_STEP * ((start - 1) // LENGTH_STEP)
    candidates = [start, *range(below, floor, -LENGTH_STEP), floor]
    for length in candidates:
        if epochs * epoch_seconds(lengths, length, cost, processes) <= seconds:
            return length
    return floor


def _probe_batch(
    tokenizer: Any, texts: list[str], lengths: np.ndarray, length: int, size: int
) -> Any:
    """``size`` of the longest texts (repeated when there are fewer), cut to ``length``."""
    order = np.argsort(-lengths, kind="stable")[:size]
    chosen = [texts[i] for i in order]
    chosen = (chosen * (size // max(len(chosen), 1) + 1))[:size]
    return tokenizer(
        chosen, truncation=True, max_length=length, padding="max_length", return_tensors="pt"
    )


def settled(took: list[float]) -> bool:
    """Whether the timed steps ``took`` (seconds, in order) have settled: the last one is not
    more than :data:`PROBE_SETTLED` faster than the fastest before it."""
    return len(took) >= 2 and took[-1] >= (1 - PROBE_SETTLED) * min(took[:-1])


def measure_step_cost(
    make_model: Any,
    tokenizer: Any,
    texts: list[str],
    lengths: np.ndarray,
    probe_lengths: list[int],
    batch_size: int,
    learning_rate: float,
    precision: str,
) -> dict[int, float]:
    """Seconds per training sample at each of ``probe_lengths``: ``make_model(length)`` builds
    the model as it would train at that length; one untimed step on :data:`WARMUP_ROWS` rows,
    then timed steps (forward, backward, AdamW) on a batch of the longest texts cut to that
    length until they settle (:func:`settled`); the fastest step is the cost. The probe models
    are thrown away."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    out: dict[int, float] = {}
    for length in probe_lengths:
        model = make_model(length).to(device)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=learning_rate)
        batch = _probe_batch(tokenizer, texts, lengths, length, batch_size)
        batch = {k: v.to(device) for k, v in batch.items()}
        batch["labels"] = torch.zeros(batch_size, dtype=torch.long, device=device)
        warmup = {k: v[:WARMUP_ROWS] for k, v in batch.items()}
        took: list[float] = []
        loss = None
        for step in range(PROBE_MAX_STEPS + 1):
            began = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = model(**(batch if step else warmup)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if step:  # the first step warms up (allocations, kernels)
                took.append(time.perf_counter() - began)
                if settled(took):
                    break
        out[length] = min(took) / batch_size
        log.debug("probe at %d tokens: steps of %s s", length, [round(t, 3) for t in took])
        del model, optimizer, params, batch, warmup, loss  # one probe model at a time
        if cuda:
            torch.cuda.empty_cache()
    return out
