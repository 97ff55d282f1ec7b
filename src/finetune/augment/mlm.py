"""Contextual substitution with a local masked language model."""

from __future__ import annotations

import random

from finetune.augment.methods import _touch
from finetune.augment.text import is_negation, match_case, split_punct
from finetune.core.errors import ConfigError


class MaskedLM:
    """Contextual substitution: mask words one at a time, take one of the MLM's top-k words."""

    def __init__(self, path: str, top_k: int = 5) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from finetune.modeling.tokens import resolve_model_path

        resolved = resolve_model_path(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolved)
            self.model = AutoModelForMaskedLM.from_pretrained(resolved).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"augment.mlm_path={path!r}: cannot load a masked language model there ({exc}); "
                f"give a local directory with an MLM head, or drop `contextual` from methods"
            ) from exc
        if self.tokenizer.mask_token is None:
            raise ConfigError(f"augment.mlm_path={path!r}: the tokenizer has no mask token")
        self.top_k = top_k

    def __call__(self, words: list[str], alpha: float, rng: random.Random) -> list[str]:
        import torch

        words = list(words)
        targets = [i for i, w in enumerate(words) if not is_negation(w) and split_punct(w)[1]]
        for i in rng.sample(targets, min(len(targets), _touch(words, alpha))):
            pre, core, post = split_punct(words[i])
            masked = [*words[:i], pre + self.tokenizer.mask_token + post, *words[i + 1 :]]
            enc = self.tokenizer(" ".join(masked), return_tensors="pt", truncation=True)
            where = (enc["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()
            if len(where) == 0:
                continue
            with torch.no_grad():
                logits = self.model(**enc).logits[0, int(where[0, 0])]
            ranked = self.tokenizer.convert_ids_to_tokens(logits.topk(self.top_k * 4).indices)
            options = [
                t
                for t in ranked
                if t.isalpha() and t.lower() != core.lower() and not is_negation(t)
            ][: self.top_k]
            if options:
                words[i] = pre + match_case(rng.choice(options), core) + post
        return words
