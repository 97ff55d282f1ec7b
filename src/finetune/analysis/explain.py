"""Token attributions: integrated gradients (captum) on the input embeddings."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from finetune.modeling import truncation

log = logging.getLogger(__name__)


def merge_wordpieces(tokens: list[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """Join WordPiece (``##x``) and SentencePiece (``▁x``) pieces into words, summing scores."""
    words: list[tuple[str, float]] = []
    for token, score in zip(tokens, scores, strict=True):
        if token.startswith("##") and words:
            text, total = words[-1]
            words[-1] = (text + token[2:], total + float(score))
        elif token.startswith("▁") or token.startswith("Ġ") or not words:
            words.append((token.lstrip("▁Ġ"), float(score)))
        else:
            words.append((token, float(score)))
    return words


def integrated_gradients(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    targets: list[int],
    max_length: int = 128,
    n_steps: int = 32,
) -> list[list[tuple[str, float]]]:
    """Per text: (word, attribution) towards ``targets[i]``, normalised to max |score| = 1.

    The baseline replaces every token but [CLS]/[SEP] with padding; attributions are summed over
    the embedding dimension, then word pieces are merged.
    """
    import torch
    from captum.attr import LayerIntegratedGradients

    model.eval()
    embeddings = model.get_input_embeddings()

    def forward(input_ids: Any, attention_mask: Any) -> Any:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    lig = LayerIntegratedGradients(forward, embeddings)
    special = set(tokenizer.all_special_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for text, target in zip(texts, targets, strict=True):
        cut = truncation.encode(tokenizer, [text], max_length, *truncation.settings(model.config))
        enc = tokenizer.pad(cut, return_tensors="pt")  # the tokens the model sees
        ids, mask = enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device)
        baseline = torch.where(
            torch.tensor([[i in special for i in ids[0].tolist()]], device=ids.device),
            ids,
            torch.full_like(ids, pad),
        )
        attr = lig.attribute(
            ids,
            baselines=baseline,
            additional_forward_args=(mask,),
            target=int(target),
            n_steps=n_steps,
            internal_batch_size=n_steps,
        )
        scores = attr.sum(dim=-1)[0].detach().float().cpu().numpy()
        tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
        keep = [i for i, t in enumerate(ids[0].tolist()) if t not in special]
        words = merge_wordpieces([tokens[i] for i in keep], scores[keep])
        top = max((abs(s) for _, s in words), default=0.0) or 1.0
        out.append([(w, s / top) for w, s in words])
    return out


def explain_errors(
    model: Any,
    tokenizer: Any,
    errors: pd.DataFrame,
    labels: list[str],
    top: int,
    max_length: int,
    n_steps: int,
) -> list[dict[str, Any]]:
    chosen = errors.head(top)
    if chosen.empty:
        return []
    targets = [labels.index(p) for p in chosen["predicted_label"]]
    words = integrated_gradients(
        model, tokenizer, chosen["text"].tolist(), targets, max_length, n_steps
    )
    out = []
    for row, attribution in zip(chosen.itertuples(), words, strict=True):
        best = max(attribution, key=lambda ws: ws[1], default=("", 0.0))
        out.append(
            {
                "id": row.id,
                "true_label": row.true_label,
                "predicted_label": row.predicted_label,
                "confidence": float(row.confidence),
                "words": [(w, round(float(s), 4)) for w, s in attribution],
                "top_word": best[0] if best[1] > 0 else "",
            }
        )
    return out
