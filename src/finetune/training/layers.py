"""What training changes in a backbone: attention dropout, frozen layers, layer-wise learning
rates, LoRA adapters."""

from __future__ import annotations

import logging
from typing import Any

from finetune.core.errors import ConfigError
from finetune.modeling.backbones import backbone_attention_dropout

log = logging.getLogger(__name__)

# train.attention_dropout: auto keeps the backbone's dropout on attention weights up to this many
# tokens. It draws one random number per attention weight (max_length^2 per head and layer), so
# its share of a training step grows with the length: all-MiniLM-L6-v2, bf16, 2 cores, 8,192
# tokens a batch: 0.97x / 1.10x / 1.69x / 2.60x the tokens/s without it at 64 / 128 / 256 / 512
# tokens (bench/train_throughput.py --lengths). Above 128 it costs more than a tenth of the step.
ATTENTION_DROPOUT_UP_TO = 128


def resolve_attention_dropout(
    setting: float | str | None, max_length: int, name_or_path: str
) -> float | None:
    """The dropout on attention weights to train with; None: the backbone's own.

    A number: that; None: the backbone's; ``auto``: the backbone's up to
    :data:`ATTENTION_DROPOUT_UP_TO` tokens, 0 above (a backbone without one is left as it is).
    """
    if setting is None:
        return None
    if setting != "auto":
        return float(setting)
    if max_length <= ATTENTION_DROPOUT_UP_TO:
        return None
    found = backbone_attention_dropout(name_or_path)
    if found is None or found[1] == 0:
        return None
    return 0.0


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
