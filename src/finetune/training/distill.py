"""Knowledge distillation (``train.distill``): a teacher's soft targets for the student.

The teacher (a trained model directory or a ``models:/`` URI; several: an ensemble whose class
probabilities are averaged) predicts every training text once, before training, at the length
it was trained with. Those log-probabilities travel with the tokenized examples as the
``teacher_logits`` column, and :class:`DistillationTrainer` trains the student on

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)

(Hinton et al., 2015: the T^2 keeps the soft term's gradients on the scale of the hard one).
Multi-label data (a sigmoid per label) distils each label as a yes/no distribution:

    alpha * T^2 * mean KL(Bernoulli(sigmoid(teacher / T)) || Bernoulli(sigmoid(student / T)))
      + (1 - alpha) * BCE(labels, positives weighted as train.multi_label.pos_weight)

the mean over every (text, label), as the BCE is; the teachers' probabilities are averaged per
label and travel as their logits. Validation is the task's own loss on the labels, so early
stopping and the best checkpoint judge the student on the task, not on imitation.

The student is ``model.name_or_path``, or a shallower copy of it
(``keep_every_kth_layer``: keep every k-th transformer block, the top one included).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from finetune.core.errors import ConfigError
from finetune.training.layers import encoder_layers

log = logging.getLogger(__name__)

TEACHER_COLUMN = "teacher_logits"


def load_teacher(source: str) -> tuple[Any, Any]:
    """A teacher model and its tokenizer: a directory saved by the train stage or a URI."""
    from finetune.modeling.backbones import load_logged, load_trained

    if source.startswith(("models:/", "runs:/")):
        return load_logged(source)
    return load_trained(source)


def teacher_log_probs(
    teachers: tuple[str, ...],
    texts: list[str],
    labels: list[str],
    batch_size: int,
    multi_label: bool = False,
) -> np.ndarray:
    """log of the teachers' mean class probabilities for ``texts`` (label order of ``labels``);
    ``multi_label``: the logits (log-odds) of their mean probability per label."""
    from finetune.modeling.backbones import inference_max_length
    from finetune.modeling.decisions import is_multi_label
    from finetune.modeling.inference import predict_proba

    total = np.zeros((len(texts), len(labels)), dtype=np.float64)
    for source in teachers:
        model, tokenizer = load_teacher(source)
        own = [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
        if own != labels:
            raise ConfigError(
                f"train.distill.teacher {source!r} predicts {own}, but this data has {labels}: "
                "a teacher must be trained on the same label set (same label map)"
            )
        if is_multi_label(model.config) != multi_label:
            kinds = ("one label per text", "label sets (multi-label)")
            raise ConfigError(
                f"train.distill.teacher {source!r} predicts {kinds[not multi_label]}, but this "
                f"data has {kinds[multi_label]}: train the teacher on the same task (data.task)"
            )
        length = inference_max_length("auto", tokenizer)
        total += predict_proba(model, tokenizer, texts, batch_size, length).probabilities
        log.info(
            "teacher %s predicted %d training texts (max length %d)", source, len(texts), length
        )
        del model
    mean = np.clip(total / len(teachers), 1e-8, 1.0 - 1e-8)
    if multi_label:
        return (np.log(mean) - np.log1p(-mean)).astype(np.float32)
    return np.log(mean).astype(np.float32)


def keep_every_kth_layer(model: Any, k: int) -> int:
    """Drop transformer blocks so that every k-th one stays (the top one included); the
    config follows, so the saved student loads as a shallower model. Returns the layers kept."""
    if k <= 1:
        return len(encoder_layers(model))
    layers = encoder_layers(model)
    keep = [i for i in range(len(layers)) if (len(layers) - 1 - i) % k == 0]
    parent = next(m for m in model.modules() if any(c is layers for c in m.children()))
    name = next(n for n, c in parent.named_children() if c is layers)
    setattr(parent, name, torch.nn.ModuleList([layers[i] for i in keep]))
    configs = [model.config, getattr(model.config, "encoder", None)]
    for config in (c for c in configs if c is not None):
        for attr in ("num_hidden_layers", "n_layers"):
            if attr in config.to_dict():
                setattr(config, attr, len(keep))
    log.info(
        "student: %d of %d transformer layers (every %d-th: %s)", len(keep), len(layers), k, keep
    )
    return len(keep)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy."""
    student = student.float()
    soft = torch.nn.functional.kl_div(
        torch.log_softmax(student / temperature, dim=-1),
        torch.log_softmax(teacher.float() / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    hard = torch.nn.functional.cross_entropy(student, labels, weight=weight)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def multi_label_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """alpha * T^2 * the mean binary KL(teacher_T || student_T) over (text, label) + (1 - alpha)
    * BCE with ``pos_weight`` (logits in, one sigmoid per label)."""
    student, teacher = student.float() / temperature, teacher.float() / temperature
    target = torch.sigmoid(teacher)
    # binary KL = BCE against the teacher's soft target less the target's own entropy
    cross = torch.nn.functional.binary_cross_entropy_with_logits(student, target)
    entropy = torch.nn.functional.binary_cross_entropy_with_logits(teacher, target)
    hard = torch.nn.functional.binary_cross_entropy_with_logits(
        student * temperature, labels.float(), pos_weight=pos_weight
    )
    return alpha * temperature**2 * (cross - entropy) + (1 - alpha) * hard


class DistillationTrainer(Trainer):
    """The Trainer with the distillation loss on batches that carry ``teacher_logits``
    (``multi_label``: a sigmoid per label, positives weighted ``pos_weight``).

    The loss is a mean over each micro-batch, so the Trainer divides it by the gradient
    accumulation steps (``loss_is_scaled_for_ga = False``); left to guess, it would take a
    loss function or a model that accepts ``num_items_in_batch`` to mean the loss was already
    scaled, and accumulating G micro-batches would give G times the gradient."""

    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        temperature: float,
        alpha: float,
        class_weights: list[float] | None = None,
        multi_label: bool = False,
        pos_weight: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.distill_loss = multi_label_distillation_loss if multi_label else distillation_loss
        weights = pos_weight if multi_label else class_weights
        self.loss_weight = torch.tensor(weights) if weights else None

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if TEACHER_COLUMN not in self._signature_columns:
            self._signature_columns.append(TEACHER_COLUMN)  # kept by remove_unused_columns

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        teacher = inputs.pop(TEACHER_COLUMN, None)
        if teacher is None:  # validation: the task's loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weight = None if self.loss_weight is None else self.loss_weight.to(labels.device)
        loss = self.distill_loss(
            outputs.logits, teacher, labels, self.temperature, self.alpha, weight
        )
        return (loss, outputs) if return_outputs else loss
