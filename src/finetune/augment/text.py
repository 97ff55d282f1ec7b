"""Word-level text edits augmentation makes and the error report's robustness tests and slices
share: negation words, a word's punctuation and case, and typo generation, seeded by the
caller's ``random.Random``."""

from __future__ import annotations

import random
import re

# Words that flip a sentence's meaning: augmentation never deletes, moves or replaces them, and
# the error report slices texts by whether they hold one.
NEGATIONS = frozenset(
    """no not nor never none nobody nothing neither nowhere cannot without hardly barely
    don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't couldn't shouldn't
    haven't hasn't hadn't mustn't dont doesnt didnt isnt arent wasnt werent wont wouldnt cant
    couldnt shouldnt havent hasnt hadnt n't""".split()
)
NEGATION_RE = re.compile(
    r"(?<![\w'])(?:"
    + "|".join(re.escape(w) for w in sorted(NEGATIONS - {"n't"}, key=len, reverse=True))
    + r")(?![\w'])|n't\b",
    re.IGNORECASE,
)
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def is_negation(word: str) -> bool:
    core = word.lower().strip(".,;:!?\"'()[]")
    return core in NEGATIONS or core.endswith("n't")


def split_punct(word: str) -> tuple[str, str, str]:
    """'(Refund!' -> ('(', 'Refund', '!')."""
    start, end = 0, len(word)
    while start < end and not word[start].isalnum():
        start += 1
    while end > start and not word[end - 1].isalnum():
        end -= 1
    return word[:start], word[start:end], word[end:]


def match_case(new: str, like: str) -> str:
    """``new`` in the case of ``like``: upper case, capitalised, or as it is."""
    if like.isupper() and len(like) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if like[:1].isupper() else new


def _neighbours() -> dict[str, str]:
    near: dict[str, str] = {}
    for r, row in enumerate(KEYBOARD_ROWS):
        for c, ch in enumerate(row):
            keys = [row[c - 1] if c else "", row[c + 1] if c + 1 < len(row) else ""]
            for rr in (r - 1, r + 1):
                if 0 <= rr < len(KEYBOARD_ROWS) and c < len(KEYBOARD_ROWS[rr]):
                    keys.append(KEYBOARD_ROWS[rr][c])
            near[ch] = "".join(k for k in keys if k)
    return near


KEYBOARD_NEIGHBOURS = _neighbours()


def swap_adjacent(word: str, at: int) -> str:
    """Letters ``at`` and ``at + 1`` swapped."""
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


def typo(word: str, rng: random.Random) -> str:
    """One typo in ``word``: a keyboard neighbour, a dropped, doubled or transposed letter."""
    letters = [k for k, ch in enumerate(word) if ch.isalpha()]
    k = rng.choice(letters)
    kind = rng.choice(("keyboard", "drop", "double", "transpose"))
    if kind == "keyboard" and word[k].lower() in KEYBOARD_NEIGHBOURS:
        new = rng.choice(KEYBOARD_NEIGHBOURS[word[k].lower()])
        return word[:k] + (new.upper() if word[k].isupper() else new) + word[k + 1 :]
    if kind == "drop":
        return word[:k] + word[k + 1 :]
    if kind == "transpose" and k + 1 < len(word) and word[k + 1].isalpha():
        return swap_adjacent(word, k)
    return word[:k] + word[k] + word[k:]
