"""Texts longer than ``model.max_length``: which of their tokens the model sees
(``model.long_text``).

- ``head``: the first tokens (what a tokenizer's own truncation keeps);
- ``tail``: the last tokens;
- ``head_tail``: the first ``model.head_share`` of the room and the rest from the end (Sun et
  al. 2019, "How to Fine-Tune BERT for Text Classification?": on IMDb the first 128 and last 382
  tokens beat either end alone);
- ``chunks``: every token, in windows of ``max_length`` that overlap by ``model.chunk_overlap``
  of their room; training learns each window with its text's label, and a text's logits are its
  windows' logits pooled (``model.chunk_pool``: mean or max), wherever the model predicts.

The choice is saved in the trained model's ``config.json`` (:meth:`LongText.config`), so training,
evaluation, PyTorch and ONNX prediction cut a text the same way. Special tokens ([CLS] ... [SEP],
<s> ... </s>) are kept where the tokenizer puts them, in every window: the cut is made in the
text's own tokens, found by the tokenizer's special-tokens mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

HEAD, TAIL, HEAD_TAIL, CHUNKS = "head", "tail", "head_tail", "chunks"
MODES = (HEAD, TAIL, HEAD_TAIL, CHUNKS)
AUTO = "auto"  # model.long_text: auto, resolved by choose() from the train texts' lengths
MEAN, MAX = "mean", "max"
POOLS = (MEAN, MAX)
CONFIG_KEY = "finetune_long_text"
SHARE_KEY = "finetune_head_share"
OVERLAP_KEY = "finetune_chunk_overlap"
POOL_KEY = "finetune_chunk_pool"
DEFAULT_SHARE = 0.25
DEFAULT_OVERLAP = 0.25


class LongText(NamedTuple):
    """How a text over max_length is read (``model.long_text``, ``model.head_share``,
    ``model.chunk_overlap``, ``model.chunk_pool``)."""

    mode: str = HEAD
    head_share: float = DEFAULT_SHARE
    overlap: float = DEFAULT_OVERLAP
    pool: str = MEAN

    def config(self) -> dict[str, Any]:
        """The keys saved in the model's config.json."""
        return {
            CONFIG_KEY: self.mode,
            SHARE_KEY: self.head_share,
            OVERLAP_KEY: self.overlap,
            POOL_KEY: self.pool,
        }

    @property
    def reads_all(self) -> bool:
        """Whether every token of a text over max_length is read (chunks: in windows)."""
        return self.mode == CHUNKS

    def describe(self) -> str:
        """For logs and the model card."""
        if self.mode == HEAD_TAIL:
            return f"head and tail ({self.head_share:g} head)"
        if self.mode == CHUNKS:
            return f"chunks ({self.overlap:g} overlap, {self.pool} of their logits)"
        return self.mode


HEAD_ONLY = LongText()  # what a tokenizer's own truncation does


def _frame(special_mask: Sequence[int], max_length: int) -> tuple[int, int, int]:
    """(leading special tokens, trailing special tokens, room for text tokens)."""
    n = len(special_mask)
    lead = next((i for i, s in enumerate(special_mask) if not s), n)
    trail = next((i for i, s in enumerate(reversed(special_mask)) if not s), n)
    room = max_length - lead - trail
    if room <= 0:
        raise ValueError(
            f"model.max_length {max_length} leaves no room for text next to the tokenizer's "
            f"{lead + trail} special tokens: raise model.max_length"
        )
    return lead, trail, room


def _check(long_text: LongText) -> None:
    if long_text.mode not in MODES:
        raise ValueError(f"model.long_text is {long_text.mode!r}: use one of {', '.join(MODES)}")
    if long_text.mode == CHUNKS and long_text.pool not in POOLS:
        raise ValueError(f"model.chunk_pool is {long_text.pool!r}: use one of {', '.join(POOLS)}")


def _step(room: int, overlap: float) -> int:
    """Tokens between the starts of two windows of ``room`` text tokens: ``room - overlap x
    room``, at least 1."""
    return max(1, room - round(overlap * room))


def window_starts(tokens: int, room: int, overlap: float) -> list[int]:
    """Where each window of ``room`` text tokens starts in a text of ``tokens`` (more than
    ``room``) text tokens: every :func:`_step` tokens, the last window ending at the text's
    end, so every window is full."""
    step = _step(room, overlap)
    return [*range(0, tokens - room, step), tokens - room]


def count_windows(lengths: np.ndarray, max_length: int, specials: int, overlap: float) -> int:
    """How many rows texts of ``lengths`` tokens (``specials`` of them special) make for chunks
    at ``max_length``: one for a text that fits, else its windows (:func:`window_starts`)."""
    room = max_length - specials
    if room <= 0:
        raise ValueError(
            f"model.max_length {max_length} leaves no room for text next to the tokenizer's "
            f"{specials} special tokens: raise model.max_length"
        )
    step = _step(room, overlap)
    text = np.asarray(lengths, dtype=np.int64) - specials
    over = np.asarray(lengths) > max_length
    return int(len(text) + np.ceil((text[over] - room) / step).sum())


def windows(
    special_mask: Sequence[int], max_length: int, long_text: LongText
) -> list[list[int]] | None:
    """Positions of one encoded text (special tokens included, as ``special_mask`` marks them)
    that the model reads at most ``max_length`` at a time: None when the text fits; else one
    list per window (one for head, tail and head_tail; one per overlapping window for
    chunks), each with the special tokens where the tokenizer put them."""
    _check(long_text)
    n = len(special_mask)
    if n <= max_length:
        return None
    lead, trail, room = _frame(special_mask, max_length)
    end = n - trail
    if long_text.mode == CHUNKS:
        return [
            [*range(lead), *range(lead + s, lead + s + room), *range(end, n)]
            for s in window_starts(end - lead, room, long_text.overlap)
        ]
    head = {HEAD: room, TAIL: 0}.get(long_text.mode, round(long_text.head_share * room))
    return [[*range(lead + head), *range(end - (room - head), end), *range(end, n)]]


def kept_positions(
    special_mask: Sequence[int], max_length: int, long_text: LongText
) -> list[int] | None:
    """The positions the model reads of one encoded text, in order and without repeats (all
    of them for chunks); None when the text fits."""
    found = windows(special_mask, max_length, long_text)
    if found is None or long_text.mode == CHUNKS:
        return None
    return found[0]


def cut(
    encoded: Mapping[str, list[list[int]]], max_length: int, long_text: LongText
) -> tuple[dict[str, list[list[int]]], list[int]]:
    """A batch a tokenizer encoded without truncation, with ``special_tokens_mask``: every
    per-token column cut into rows of at most ``max_length`` (the mask itself dropped), and
    for each row the position of its text in the batch (several rows per text for chunks)."""
    masks = encoded["special_tokens_mask"]
    out: dict[str, list[list[int]]] = {
        k: [] for k in encoded if k not in ("special_tokens_mask", "length")
    }
    owner: list[int] = []
    for row, mask in enumerate(masks):
        found = windows(mask, max_length, long_text)
        for keep in found or [None]:
            owner.append(row)
            for key, column in out.items():
                values = encoded[key][row]
                column.append(list(values) if keep is None else [values[i] for i in keep])
    return out, owner


def encode(
    tokenizer: Any, texts: list[str], max_length: int, long_text: LongText
) -> tuple[dict[str, list[list[int]]], list[int]]:
    """Token ids (attention mask, token types as the tokenizer gives them) of ``texts``, cut to
    ``max_length`` the ``long_text`` way, unpadded; and for each row the position of its text
    in ``texts`` (one row per text, several per long text for chunks)."""
    if long_text.mode == HEAD:
        return dict(tokenizer(texts, truncation=True, max_length=max_length)), list(
            range(len(texts))
        )
    full = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
    return cut(full, max_length, long_text)


def pool(logits: np.ndarray, owner: Sequence[int], n_texts: int, how: str = MEAN) -> np.ndarray:
    """Per-row ``logits`` (windows) pooled into one row per text: the mean or the maximum over
    each text's rows (``owner``: the text of each row). One row per text: the rows themselves."""
    logits = np.asarray(logits, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.int64)
    if len(owner) == n_texts and np.array_equal(owner, np.arange(n_texts)):
        return logits
    if how == MAX:
        out = np.full((n_texts, logits.shape[1]), -np.inf)
        np.maximum.at(out, owner, logits)
        return out
    out = np.zeros((n_texts, logits.shape[1]))
    np.add.at(out, owner, logits)
    return out / np.maximum(np.bincount(owner, minlength=n_texts), 1)[:, None]


def settings(config: Any) -> LongText:
    """How a model saved with ``config`` (a transformers config or a config.json dict) reads
    long texts; ``head`` for a model trained before the setting existed."""
    get = config.get if isinstance(config, Mapping) else lambda k, d: getattr(config, k, d)
    return LongText(
        str(get(CONFIG_KEY, HEAD) or HEAD),
        float(get(SHARE_KEY, DEFAULT_SHARE) or 0.0),
        float(get(OVERLAP_KEY, DEFAULT_OVERLAP) or 0.0),
        str(get(POOL_KEY, MEAN) or MEAN),
    )


def choose(
    setting: str, lengths: np.ndarray, max_length: int, expected_cut: float
) -> tuple[str, str]:
    """The mode ``model.long_text`` resolves to for train texts of ``lengths`` tokens (special
    tokens included) at ``max_length``, and why (for the log and the model card). A set mode is
    kept. ``auto``: ``head`` while no more than ``expected_cut`` of the train texts are cut (the
    share the length rule itself leaves over: 1% at its 99th percentile), since those are
    outliers (atis: 0.6% of queries over 32 tokens, where reading their ends cost 2.6 points of
    test accuracy); ``head_tail`` where the length cut more of them (a time budget or the model's
    position limit below the texts' p99): it reads a text that fits as ``head`` does, costs the
    same, and of a cut text keeps its end too, where a review's verdict or a report's conclusion
    sits (Sun et al. 2019; imdb_subset at 128 tokens: +2.8 points). ``chunks`` is never chosen:
    it trains on every window, so its epochs cost the windows' tokens, not ``max_length`` a text
    (set it where all of a text matters and time allows)."""
    if setting != AUTO:
        return setting, "setting"
    lengths = np.asarray(lengths)
    over = int((lengths > max_length).sum())
    share = over / max(len(lengths), 1)
    what = f"{over} of {len(lengths)} train texts ({share:.1%}) are longer than {max_length} tokens"
    if share <= expected_cut:
        return HEAD, f"auto: {what}, at most the {expected_cut:.0%} the length rule leaves over"
    return HEAD_TAIL, f"auto: {what}; their first and last tokens are read"


def from_model_config(model: Any) -> LongText:
    """The ``model`` section's (``finetune.core.schema.ModelConfig``) long-text settings, its
    ``long_text`` resolved (:func:`choose`)."""
    if model.long_text == AUTO:
        raise ValueError(
            "model.long_text is auto: resolve it from the train texts first (truncation.choose)"
        )
    return LongText(model.long_text, model.head_share, model.chunk_overlap, model.chunk_pool)


def clip_chars(text: str, cap: int, long_text: LongText) -> str:
    """``text`` cut to at most ``cap`` characters before tokenizing (one huge input must not
    stall a batch), keeping the ends the mode keeps as tokens; chunks read every token: the
    text as it is (its windows are batched)."""
    if len(text) <= cap or long_text.mode == CHUNKS:
        return text
    if long_text.mode == HEAD:
        return text[:cap]
    head = 0 if long_text.mode == TAIL else round(long_text.head_share * cap)
    if not head:
        return text[-cap:]
    return text[:head] + " " + text[len(text) - (cap - head - 1) :]
