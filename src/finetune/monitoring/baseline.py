"""The reference side of every comparison, computed once per model version and cached.

For the model version: a seeded sample of its train split (``monitor.reference_size`` texts)
embedded by the model itself, the vocabulary of the whole train split, and the model's
probabilities on its test split (the baseline of prediction drift and performance). Stored as
one ``.npz`` under ``paths.monitor_cache`` named after the training run and a digest of what
it depends on, written under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.core.errors import ConfigError, DataError
from finetune.core.schema import PipelineConfig
from finetune.monitoring.reference import ModelVersion

if TYPE_CHECKING:
    from finetune.modeling.classifier import Classifier

log = logging.getLogger(__name__)

CACHE_FORMAT = 2


@dataclass
class Baseline:
    texts: list[str]  # the sampled train texts
    test_texts: list[str]  # the test split: the reference of the text statistics
    embeddings: np.ndarray  # their embeddings, (n, hidden)
    vocabulary: set[str]  # lower-cased words of the whole train split
    test_probs: np.ndarray  # raw (uncalibrated) probabilities on the test split
    test_y: np.ndarray  # the test split's labels as class indices; multi-label: (n, k) 0/1
    source: str  # where the splits came from: "workspace", "DVC cache <hash>", "cache"


def cache_path(cache_dir: str | Path, version: ModelVersion, key: dict[str, Any]) -> Path:
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{version.run_id}-{digest}.npz"


def _save(path: Path, base: Baseline) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        texts=np.asarray(base.texts, dtype=str),
        test_texts=np.asarray(base.test_texts, dtype=str),
        embeddings=base.embeddings,
        vocabulary=np.asarray(sorted(base.vocabulary), dtype=str),
        test_probs=base.test_probs,
        test_y=base.test_y,
        source=np.asarray(base.source),
    )
    tmp.replace(path)


def _load(path: Path) -> Baseline:
    with np.load(path, allow_pickle=False) as data:
        return Baseline(
            texts=data["texts"].tolist(),
            test_texts=data["test_texts"].tolist(),
            embeddings=data["embeddings"],
            vocabulary=set(data["vocabulary"].tolist()),
            test_probs=data["test_probs"],
            test_y=data["test_y"],
            source=f"cache ({data['source']})",
        )


def label_ids(values: list[str], labels: list[str], what: str) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise DataError(
            f"{what} has label(s) {unknown[:10]} the model does not know (its labels: {labels})"
        )
    return np.asarray([index[v] for v in values], dtype=np.int64)


def baseline(
    cfg: PipelineConfig,
    version: ModelVersion,
    classifier: Classifier,
    max_length: int,
    root: Path,
) -> Baseline:
    """The cached baseline of ``version``, built from its training splits when missing."""
    from finetune.monitoring.multilabel import label_matrix
    from finetune.monitoring.reference import training_splits
    from finetune.monitoring.textstats import vocabulary

    spec, seed = cfg.monitor, cfg.seed
    key = {
        "format": CACHE_FORMAT,
        "data": version.processed_md5,
        "reference_size": spec.reference_size,
        "max_length": max_length,
        "seed": seed,
    }
    path = cache_path(cfg.paths.monitor_cache, version, key)
    if path.is_file() and version.processed_md5 is not None:
        log.info("reference of %s from the cache %s", version.title, path)
        return _load(path)
    began = time.perf_counter()
    splits, source = training_splits(cfg, version, root)
    train, test = splits["train"], splits["test"]
    if len(train) == 0:
        raise DataError(f"the train split of {version.title} ({source}) is empty")
    rng = np.random.default_rng(seed)
    take = np.sort(rng.permutation(len(train))[: spec.reference_size])
    texts = [str(t) for t in train["text"].iloc[take]]
    embeddings, _ = embed(classifier, texts, spec.batch_size, max_length)
    test_texts = [str(t) for t in test["text"]]
    test_probs = classifier.predict(test_texts, spec.batch_size, max_length)
    given, what = [str(v) for v in test["label"]], f"the test split ({source})"
    if classifier.thresholds is not None:  # "a|b", "" for no label: every test row has its set
        test_y = label_matrix(given, classifier.labels, what)
    else:
        test_y = label_ids(given, classifier.labels, what)
    base = Baseline(
        texts=texts,
        test_texts=test_texts,
        embeddings=embeddings,
        vocabulary=vocabulary(str(t) for t in train["text"]),
        test_probs=test_probs.probabilities,
        test_y=test_y,
        source=source,
    )
    if version.processed_md5 is not None:  # unversioned data: the workspace may change
        _save(path, base)
    log.info(
        "reference of %s: %d train texts embedded, %d test texts predicted in %.1f s (%s)",
        version.title,
        len(texts),
        len(test_texts),
        time.perf_counter() - began,
        source,
    )
    return base


def embed(
    classifier: Classifier, texts: list[str], batch_size: int, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sentence embeddings and probabilities of ``texts`` from one forward pass (PyTorch)."""
    if classifier.embed_and_predict is None:
        raise ConfigError(
            f"{classifier.source} is an ONNX model: monitoring embeds texts with the PyTorch "
            "model it was exported from; monitor that one (models/model, or the version in the "
            "ONNX version's source_model tag)"
        )
    return classifier.embed_and_predict(texts, batch_size, max_length)
