"""Labels are data, never identifiers: one mapping from a label to a safe name.

Users' labels hold anything: ``reverted_card_payment?``, ``Billing & Payments``, ``C++``,
``Überweisung``, ``退款``, ``👍``, ``1st line``, 200 characters, ``Spam`` next to ``spam``.
Wherever a label has to become a name (an MLflow metric, param or tag key, a file name, a
column such as ``prob_<label>``, a DVC plot field, an HTML id), :func:`safe_names` gives it:

- **safe**: ASCII letters, digits, ``_``, ``-`` and ``.`` only (valid for MLflow, file systems,
  DVC, HTML ids and CSS), at most :data:`MAX_LENGTH` characters;
- **readable and stable**: a label that is already safe (and unique ignoring case) is its own
  name; any other keeps its readable ASCII part and gets a short hash of the label itself, so
  the same label always gets the same name;
- **collision-free**: names are unique, also ignoring case (``Spam``/``spam``, case-insensitive
  file systems);
- **reversible** through the label map (``label_map.json`` stays the source of truth): the
  names are always computed from it, never parsed back.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

MAX_LENGTH = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _ascii_part(label: str) -> str:
    """The readable ASCII of a label: accents dropped (Ü -> U), everything else -> ``_``."""
    decomposed = unicodedata.normalize("NFKD", label)
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    return _UNSAFE.sub("_", ascii_text).strip("_.-")


def _digest(label: str, length: int = 6) -> str:
    return hashlib.sha1(label.encode("utf-8")).hexdigest()[:length]


def safe_names(labels: Iterable[str]) -> dict[str, str]:
    """{label: safe name} for a label set (see the module doc)."""
    labels = [str(label) for label in labels]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels are not unique: {labels}")
    folded = Counter(label.lower() for label in labels)
    names: dict[str, str] = {}
    for label in labels:
        plain = (
            _SAFE.match(label) is not None
            and len(label) <= MAX_LENGTH
            and folded[label.lower()] == 1
        )
        if plain:
            names[label] = label
            continue
        base = _ascii_part(label)[: MAX_LENGTH - 7] or "label"
        names[label] = f"{base}-{_digest(label)}"
    # a hash prefix could still meet another label's name: lengthen the hash until unique
    length = 6
    while len({n.lower() for n in names.values()}) != len(names):
        length += 2
        names = {
            label: (name if name == label else f"{name.rsplit('-', 1)[0]}-{_digest(label, length)}")
            for label, name in names.items()
        }
    return names


def safe_name(label: str, labels: Iterable[str]) -> str:
    """The safe name of ``label`` within its label set."""
    return safe_names(labels)[str(label)]


def prob_columns(labels: Iterable[str]) -> list[str]:
    """``prob_<safe name>`` per label, in label order: the probability columns of the
    predictions evaluate and ``finetune predict`` write."""
    names = safe_names(labels)
    return [f"prob_{names[str(label)]}" for label in labels]
