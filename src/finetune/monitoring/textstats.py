"""Simple statistics of texts that a person can read: length, unknown tokens, words the
training data never had, non-ASCII characters, and the writing system (script)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

WORD = re.compile(r"[^\W\d_]+", re.UNICODE)  # runs of letters, any script
NUMERIC = ("tokens", "chars", "unknown_token_share", "new_word_share", "non_ascii_share")


def vocabulary(texts: Iterable[str]) -> set[str]:
    """The lower-cased words of ``texts``."""
    return {w.lower() for text in texts for w in WORD.findall(text)}


def script(text: str) -> str:
    """The writing system most of a text's letters belong to (LATIN, CYRILLIC, CJK, ...), from
    the first word of each letter's Unicode name; NONE without letters."""
    counts = Counter(unicodedata.name(ch, "UNKNOWN").split(" ")[0] for ch in text if ch.isalpha())
    return counts.most_common(1)[0][0] if counts else "NONE"


def per_text(texts: list[str], tokenizer: Any, known_words: set[str]) -> pd.DataFrame:
    """One row per text: tokens, chars, unknown_token_share, new_word_share (words not in
    ``known_words``), non_ascii_share and script."""
    ids = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    unk = tokenizer.unk_token_id
    rows = []
    for text, tokens in zip(texts, ids, strict=True):
        words = [w.lower() for w in WORD.findall(text)]
        rows.append(
            {
                "tokens": len(tokens),
                "chars": len(text),
                "unknown_token_share": (
                    sum(t == unk for t in tokens) / len(tokens)
                    if tokens and unk is not None
                    else 0.0
                ),
                "new_word_share": (
                    sum(w not in known_words for w in words) / len(words) if words else 0.0
                ),
                "non_ascii_share": sum(ord(c) > 127 for c in text) / len(text) if text else 0.0,
                "script": script(text),
            }
        )
    return pd.DataFrame(rows, columns=[*NUMERIC, "script"])


def compare(reference: pd.DataFrame, batch: pd.DataFrame) -> dict[str, Any]:
    """Each numeric statistic's means and the two-sample Kolmogorov-Smirnov p-value, and the
    share of each script on both sides with their total variation distance."""
    from scipy.stats import ks_2samp

    numeric = {}
    for name in NUMERIC:
        ref, cur = reference[name].to_numpy(float), batch[name].to_numpy(float)
        same = np.all(ref == ref[0]) and np.all(cur == ref[0]) if len(ref) else True
        numeric[name] = {
            "reference_mean": float(ref.mean()),
            "batch_mean": float(cur.mean()),
            "ks_p_value": 1.0 if same else float(ks_2samp(ref, cur).pvalue),
        }
    ref_share = reference["script"].value_counts(normalize=True)
    cur_share = batch["script"].value_counts(normalize=True)
    scripts = sorted(set(ref_share.index) | set(cur_share.index))
    shares = {
        s: {"reference": float(ref_share.get(s, 0.0)), "batch": float(cur_share.get(s, 0.0))}
        for s in scripts
    }
    shift = 0.5 * sum(abs(v["reference"] - v["batch"]) for v in shares.values())
    return {"numeric": numeric, "scripts": shares, "script_shift": float(shift)}
