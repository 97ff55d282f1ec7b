"""Sequence classifier on the masked mean of an encoder's last hidden states.

Sentence-embedding backbones (all-MiniLM-L6-v2 and the other sentence-transformers models) were
trained to put the meaning of a text in the *mean* of their token states, not in the [CLS]
token, and their BERT pooler was never trained for that. ``MeanPoolingForSequenceClassification``
puts the classification head (dropout + linear) on that mean instead of on [CLS] + pooler.

The encoder is any ``AutoModel`` architecture (BERT, DistilBERT, RoBERTa, ...), kept as a nested
config, so one class serves every backbone. This module imports only torch and transformers: it
is copied next to every saved model (``register_for_auto_class``), so the model loads anywhere
with ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``, which is
what MLflow's transformers flavour does. Inside finetune, :func:`register` makes the classes
known to the Auto API, and no remote code is needed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "finetune_mean_pooling"
# Attributes of the encoder's config that code reading ``model.config`` expects at the top level.
_DELEGATED = (
    "hidden_size",
    "num_hidden_layers",
    "n_layers",
    "max_position_embeddings",
    "vocab_size",
)


class MeanPoolingConfig(PretrainedConfig):
    model_type = MODEL_TYPE
    sub_configs: ClassVar[dict[str, Any]] = {"encoder": AutoConfig}
    _auto_class = "AutoConfig"  # save_pretrained copies this module and writes config.auto_map

    def __init__(
        self,
        encoder: PretrainedConfig | dict[str, Any] | None = None,
        classifier_dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        if isinstance(encoder, dict):
            encoder = AutoConfig.for_model(**encoder)
        self.encoder = encoder
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: hidden_size etc. come from the encoder.
        if name in _DELEGATED and "encoder" in self.__dict__ and self.__dict__["encoder"]:
            return getattr(self.__dict__["encoder"], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class MeanPoolingForSequenceClassification(PreTrainedModel):
    config_class = MeanPoolingConfig
    base_model_prefix = "encoder"
    _auto_class = "AutoModelForSequenceClassification"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: MeanPoolingConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = AutoModel.from_config(config.encoder)
        drop_pooler(self.encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.encoder.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            std = getattr(self.config.encoder, "initializer_range", 0.02)
            module.weight.data.normal_(mean=0.0, std=std)
            module.bias.data.zero_()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        kwargs.pop("return_dict", None)
        inputs: dict[str, Any] = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if inputs_embeds is not None:
            inputs["inputs_embeds"] = inputs_embeds
        else:
            inputs["input_ids"] = input_ids
        encoded = self.encoder(**inputs, **kwargs)
        hidden = encoded.last_hidden_state
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None and self.config.problem_type == "multi_label_classification":
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        elif labels is not None:
            loss = nn.functional.cross_entropy(
                logits.view(-1, self.num_labels).float(), labels.view(-1)
            )
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states
        )


def drop_pooler(encoder: nn.Module) -> None:
    """Remove a [CLS] pooler the head does not use (its weights would get no gradient under DDP)."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


def register() -> None:
    """Make the Auto API know the mean-pooling classes (idempotent)."""
    from transformers import AutoModelForSequenceClassification

    AutoConfig.register(MODEL_TYPE, MeanPoolingConfig, exist_ok=True)
    for auto in (AutoModel, AutoModelForSequenceClassification):
        auto.register(MeanPoolingConfig, MeanPoolingForSequenceClassification, exist_ok=True)
