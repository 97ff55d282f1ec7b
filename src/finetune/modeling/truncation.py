"""Texts longer than ``model.max_length``: which of their tokens the model sees
(``model.long_text``).

- ``head``: the first tokens (what a tokenizer's own truncation keeps);
- ``tail``: the last tokens;
- ``head_tail``: the first ``model.head_share`` of the room and the rest from the end (Sun et
  al. 2019, "How to Fine-Tune BERT for Text Classification?": on IMDb the first 128 and last 382
  tokens beat either end alone).

The choice is saved in the trained model's ``config.json`` (:data:`CONFIG_KEY`,
:data:`SHARE_KEY`), so training, evaluation, PyTorch and ONNX prediction cut a text the same way.
Special tokens ([CLS] ... [SEP], <s> ... </s>) are kept where the tokenizer puts them: the cut is
made in the text's own tokens, found by the tokenizer's special-tokens mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HEAD, TAIL, HEAD_TAIL = "head", "tail", "head_tail"
MODES = (HEAD, TAIL, HEAD_TAIL)
CONFIG_KEY = "finetune_long_text"
SHARE_KEY = "finetune_head_share"
DEFAULT_SHARE = 0.25


def kept_positions(
    special_mask: Sequence[int], max_length: int, mode: str, head_share: float
) -> list[int] | None:
    """Positions of one encoded text (special tokens included, as ``special_mask`` marks them)
    to keep so that at most ``max_length`` remain; None when it fits."""
    n = len(special_mask)
    if n <= max_length:
        return None
    if mode not in MODES:
        raise ValueError(f"model.long_text is {mode!r}: use one of {', '.join(MODES)}")
    lead = next((i for i, s in enumerate(special_mask) if not s), n)
    trail = next((i for i, s in enumerate(reversed(special_mask)) if not s), n)
    room = max_length - lead - trail
    if room <= 0:
        raise ValueError(
            f"model.max_length {max_length} leaves no room for text next to the tokenizer's "
            f"{lead + trail} special tokens: raise model.max_length"
        )
    head = {HEAD: room, TAIL: 0}.get(mode, round(head_share * room))
    end = n - trail
    return [
        *range(lead + head),
        *range(end - (room - head), end),
        *range(end, n),
    ]


def cut(
    encoded: Mapping[str, list[list[int]]], max_length: int, mode: str, head_share: float
) -> dict[str, list[list[int]]]:
    """A batch a tokenizer encoded without truncation, with ``special_tokens_mask``: every
    per-token column cut to at most ``max_length`` (the mask itself dropped)."""
    masks = encoded["special_tokens_mask"]
    out: dict[str, list[list[int]]] = {
        k: [] for k in encoded if k not in ("special_tokens_mask", "length")
    }
    for row, mask in enumerate(masks):
        keep = kept_positions(mask, max_length, mode, head_share)
        for key, column in out.items():
            values = encoded[key][row]
            column.append(list(values) if keep is None else [values[i] for i in keep])
    return out


def encode(
    tokenizer: Any, texts: list[str], max_length: int, mode: str, head_share: float
) -> dict[str, list[list[int]]]:
    """Token ids (attention mask, token types as the tokenizer gives them) of ``texts``, cut to
    ``max_length`` the ``mode`` way; unpadded."""
    if mode == HEAD:
        return dict(tokenizer(texts, truncation=True, max_length=max_length))
    full = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
    return cut(full, max_length, mode, head_share)


def settings(config: Any) -> tuple[str, float]:
    """(mode, head share) saved with a model (a transformers config or a config.json dict);
    ``head`` for a model trained before the setting existed."""
    get = config.get if isinstance(config, Mapping) else lambda k, d: getattr(config, k, d)
    return str(get(CONFIG_KEY, HEAD) or HEAD), float(get(SHARE_KEY, DEFAULT_SHARE) or 0.0)


def clip_chars(text: str, cap: int, mode: str, head_share: float) -> str:
    """``text`` cut to at most ``cap`` characters before tokenizing (one huge input must not
    stall a batch), keeping the ends the ``mode`` keeps as tokens."""
    if len(text) <= cap:
        return text
    if mode == HEAD:
        return text[:cap]
    head = 0 if mode == TAIL else round(head_share * cap)
    if not head:
        return text[-cap:]
    return text[:head] + " " + text[len(text) - (cap - head - 1) :]
