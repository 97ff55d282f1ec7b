"""Load pretrained backbones and trained models: a packaged model, a local directory or a Hub id
(resolved by :func:`finetune.modeling.tokens.resolve_model_path`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finetune.core.errors import ConfigError, ModelNotFoundError
from finetune.core.schema import Pooling, choices
from finetune.modeling.tokens import model_not_found, position_limit, resolve_model_path

log = logging.getLogger(__name__)


def inference_max_length(setting: int | str, tokenizer: Any) -> int:
    """The max length a trained model is used with: ``model.max_length``, or for ``auto`` the
    length the train stage chose (saved as the tokenizer's ``model_max_length``)."""
    limit = position_limit(tokenizer)
    return limit if setting == "auto" else min(int(setting), limit)


def check_pooling(pooling: str) -> str:
    """``pooling`` if it is a known head (``model.pooling`` in the schema), else ConfigError."""
    allowed = choices(Pooling)
    if pooling not in allowed:
        raise ConfigError(f"model.pooling={pooling!r}: choose one of {allowed}")
    return pooling


def resolve_pooling(name_or_path: str, pooling: str) -> str:
    """``cls`` or ``mean``: ``pooling`` itself, or for ``auto`` the pooling the backbone was
    trained with where it says (a sentence-transformers model's ``modules.json`` names its
    Pooling module, whose ``config.json`` gives the mode: all-MiniLM-L6-v2 was trained to embed
    by the mean of its tokens, and its [CLS] token was never trained to sum up a text), else
    ``cls``, the architecture's own head (what a plain pretrained encoder such as BERT offers)."""
    import json

    check_pooling(pooling)
    if pooling != "auto":
        return pooling
    root = resolve_model_path(name_or_path)  # once: a split-wheel model is joined and verified
    modules = _backbone_file(root, "modules.json", name_or_path)
    if modules is None:
        return "cls"
    for module in json.loads(modules.read_text()):
        if str(module.get("type", "")).endswith(".Pooling"):
            folder = str(module.get("path", "")).strip("/")
            config = _backbone_file(
                root, f"{folder}/config.json" if folder else "config.json", name_or_path
            )
            modes = json.loads(config.read_text()) if config is not None else {}
            if modes.get("pooling_mode_cls_token"):
                return "cls"
            if modes.get("pooling_mode_mean_tokens") or modes.get(
                "pooling_mode_mean_sqrt_len_tokens"
            ):
                return "mean"
    return "cls"


def _backbone_file(root: str, filename: str, name_or_path: str) -> Path | None:
    """A file of a backbone (``root``: its resolved directory or Hub id; ``name_or_path`` as
    configured, for the message): from its directory, or for a Hub id through the Hugging Face
    cache (downloaded when online); None when the backbone has no such file."""
    if Path(root).is_dir():
        path = Path(root) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(root, filename))
    except LocalEntryNotFoundError as exc:
        raise ConfigError(
            f"model.pooling=auto: {filename} of {name_or_path} is not in the Hugging Face cache "
            "and the Hub cannot be reached (offline) to say how the backbone pools; set "
            "model.pooling to mean or cls, or fetch the model once online"
        ) from exc
    except EntryNotFoundError:  # on the Hub, without such a file: not a sentence-transformer
        return None
    except (HFValidationError, RepositoryNotFoundError):  # no such model: loading it says so
        return None


# where architectures keep the dropout on their attention weights (BERT, RoBERTa, XLM-R, MPNet,
# DeBERTa, ELECTRA: the first; DistilBERT: the second)
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def backbone_attention_dropout(name_or_path: str) -> tuple[str, float] | None:
    """(config key, value) of the backbone's dropout on attention weights; None when its
    config has none of :data:`ATTENTION_DROPOUT_KEYS`."""
    from transformers import AutoConfig

    from finetune.modeling.pooling_model import register

    register()  # name_or_path may be a model trained with pooling: mean
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name_or_path))
    except (OSError, ValueError) as exc:
        raise model_not_found(name_or_path, exc) from exc
    config = getattr(config, "encoder", None) or config  # a mean-pooling model: its encoder's
    for key in ATTENTION_DROPOUT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int | float):
            return key, float(value)
    return None


def load_classifier(
    name_or_path: str,
    labels: list[str],
    pooling: str = "cls",
    attention_dropout: float | None = None,
    problem_type: str | None = None,
) -> Any:
    """A sequence-classification model with a fresh head for ``labels`` (in id order).
    ``problem_type``: transformers' (``multi_label_classification``: a sigmoid per label).

    ``pooling="cls"``: the architecture's own ``AutoModelForSequenceClassification`` head
    ([CLS] token + pooler for BERT). ``pooling="mean"``: the head on the masked mean of the last
    hidden states (:mod:`finetune.modeling.pooling_model`), what sentence-embedding backbones
    such as all-MiniLM-L6-v2 were trained to produce. ``auto``: :func:`resolve_pooling`.
    ``attention_dropout``: the dropout on attention weights while training (None: the
    backbone's own; for a backbone without one, see :func:`backbone_attention_dropout`, a
    number is a ConfigError).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from finetune.modeling.pooling_model import register

    pooling = resolve_pooling(name_or_path, pooling)
    register()  # name_or_path may be a model trained with pooling: mean
    path = resolve_model_path(name_or_path)
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    overrides: dict[str, float] = {}
    if attention_dropout is not None:
        found = backbone_attention_dropout(name_or_path)
        if found is None:
            raise ConfigError(
                f"train.attention_dropout={attention_dropout}: the config of {name_or_path} has "
                f"none of {list(ATTENTION_DROPOUT_KEYS)}; set train.attention_dropout: null"
            )
        overrides[found[0]] = float(attention_dropout)
    try:
        if pooling == "cls":
            with own_loading_report():
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    path,
                    num_labels=len(labels),
                    id2label=id2label,
                    label2id=label2id,
                    ignore_mismatched_sizes=True,
                    output_loading_info=True,
                    **({"problem_type": problem_type} if problem_type else {}),
                    **overrides,
                )
            report_loading(name_or_path, info)
            return model
        config = AutoConfig.from_pretrained(path)
        for key, value in overrides.items():  # a mean-pooling model: on its encoder's config
            setattr(getattr(config, "encoder", None) or config, key, value)
        encoder = AutoModel.from_pretrained(path, config=config)
    except (OSError, ValueError) as exc:
        raise model_not_found(name_or_path, exc) from exc
    return _mean_pooling_classifier(encoder, id2label, label2id, problem_type)


def load_encoder(name_or_path: str) -> Any:
    """The pretrained backbone's encoder alone (no head), as it was before any fine-tuning: its
    frozen sentence embeddings rank likely label errors without having seen the labels."""
    from transformers import AutoModel

    path = resolve_model_path(name_or_path)
    try:
        with own_loading_report():
            return AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise model_not_found(name_or_path, exc) from exc


def embedding_length(name_or_path: str, max_length: int) -> int:
    """The length to embed texts at with the pretrained backbone: ``max_length``, but no more
    than a sentence-transformers model was trained to embed (``max_seq_length`` in its
    ``sentence_bert_config.json``: 256 for all-MiniLM-L6-v2, whose positions go to 512). Longer
    inputs cost more and give embeddings the model never learned to make."""
    import json

    config = Path(resolve_model_path(name_or_path)) / "sentence_bert_config.json"
    if not config.is_file():
        return max_length
    trained = json.loads(config.read_text()).get("max_seq_length")
    return min(max_length, int(trained)) if trained else max_length


# Weights a fresh classification head starts without (BERT/RoBERTa/DistilBERT/... heads).
HEAD_PREFIXES = ("classifier.", "pre_classifier.", "score.")


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextmanager
def own_loading_report() -> Iterator[None]:
    """Hold back transformers' load-report table (a warning for every new head, which is
    expected here); :func:`report_loading` says what matters in one line instead. (A filter,
    not a level: transformers changes what it checks when its logger's level is raised.)"""
    logger = logging.getLogger("transformers.modeling_utils")
    dropper = _DropLoadReport()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


def report_loading(name_or_path: str, info: dict[str, Any]) -> None:
    """One line for the new head (INFO), unused checkpoint weights such as a pretraining head
    (INFO), and a WARNING for anything else missing or resized: that would be a real problem."""
    missing = list(info.get("missing_keys") or [])
    head = [k for k in missing if k.startswith(HEAD_PREFIXES)]
    pooler = [k for k in missing if ".pooler." in f".{k}"]
    other = [k for k in missing if k not in head and k not in pooler]
    resized = [str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or []]
    unused = list(info.get("unexpected_keys") or [])
    if head:
        log.info("new classification head (%s), trained from scratch", ", ".join(sorted(head)))
    if pooler:
        log.info(
            "the checkpoint has no [CLS] pooler (%s): initialised and trained with the head "
            "(model.pooling: mean does without it)",
            ", ".join(sorted(pooler)),
        )
    if unused:
        log.info(
            "%d checkpoint weights not used by the classifier (e.g. %s)", len(unused), unused[0]
        )
    if other or [k for k in resized if not k.startswith(HEAD_PREFIXES)]:
        log.warning(
            "%s: weights missing from the checkpoint and initialised at random: %s; resized: %s",
            name_or_path,
            other[:10],
            resized[:10],
        )


def _mean_pooling_classifier(
    encoder: Any,
    id2label: dict[int, str],
    label2id: dict[str, int],
    problem_type: str | None = None,
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
        **({"problem_type": problem_type} if problem_type else {}),
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


def load_logged(model_uri: str) -> tuple[Any, Any]:
    """Model and tokenizer logged with MLflow's transformers flavour (``models:/...``,
    ``runs:/...``): registry versions, distillation teachers."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        parts = mlflow.transformers.load_model(model_uri, return_type="components")
    except (MlflowException, OSError) as exc:
        raise ModelNotFoundError(f"cannot load {model_uri}: {exc}") from exc
    model = parts["model"]
    model.eval()
    return model, parts["tokenizer"]
