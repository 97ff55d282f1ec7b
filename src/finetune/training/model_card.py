"""The model card (README.md) written next to every trained model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from finetune.core.schema import PipelineConfig
from finetune.tracking import runs as tracking
from finetune.training.budget import MIN_EPOCHS, MIN_FITTED_LENGTH

_LENGTH_BY = {
    "p99": ": the 99th percentile of the train texts' token lengths",
    "time_budget": ": cut below the train texts' 99th percentile to the longest length at "
    f"which {MIN_EPOCHS} epoch(s) (`epochs: auto`; else the configured number) fit "
    "`train.time_budget` at the step cost timed before training, not under "
    f"{MIN_FITTED_LENGTH} tokens",
}
_LONG_TEXT = {
    "head": "keep their first tokens",
    "tail": "keep their last tokens",
    "head_tail": "keep their first {share:.0%} of tokens and the rest from their end",
    "chunks": "are read whole, in windows of that length overlapping by {overlap:.0%}, the "
    "text's logits the {pool} of its windows'",
}


def _loading_note(pooling: str, lora: bool, setting: str) -> str:
    merged = " (the LoRA adapter is merged in)" if lora else ""
    if pooling == "mean":
        return (
            f"An `AutoModelForSequenceClassification` checkpoint{merged} with a mean-pooling head "
            f"(`model.pooling: {setting}`; the class is in `pooling_model.py` next to the "
            "weights): "
            "load it with `from_pretrained(<this dir>, trust_remote_code=True)`, or without "
            "remote code after `finetune.modeling.pooling_model.register()`."
        )
    return (
        f"A plain `AutoModelForSequenceClassification` checkpoint{merged}: load it with "
        "`from_pretrained(<this dir>)`."
    )


_STOP = {
    "plateau": "a plateau: validation stopped improving (then the cool-down)",
    "max_epochs": "train.max_epochs (validation was still improving: more epochs may help)",
    "time_budget": "train.time_budget (validation may still have been improving: a longer "
    "budget may help)",
    "epochs": "the configured number of epochs",
    "max_steps": "train.max_steps",
}


def _epochs_line(
    cfg: PipelineConfig, metrics: Mapping[str, Any], resolved: Mapping[str, Any]
) -> str:
    train = cfg.train
    reason = str(metrics.get("stop_reason"))
    branch = metrics.get("cooldown_from_step")
    return (
        f"{metrics.get('epochs')} trained of at most {resolved['train.epochs']} "
        f"(`train.epochs: {train.epochs}`, `train.max_epochs: {train.max_epochs}`, "
        f"`train.time_budget: {train.time_budget}`); stopped by {_STOP.get(reason, reason)}"
        + (f", from the best checkpoint's weights (step {branch})" if branch else "")
    )


def _attention_dropout(cfg: PipelineConfig, resolved: dict[str, Any]) -> str:
    value = resolved.get("train.attention_dropout", "backbone")
    return f"{value} (`train.attention_dropout: {cfg.train.attention_dropout}`)"


def model_card(
    cfg: PipelineConfig,
    metrics: Mapping[str, Any],
    labels: list[str],
    data: Mapping[str, str],
    resolved: Mapping[str, Any],
) -> str:
    """README.md for the model directory: base model, data version, params, metrics."""
    model = cfg.model
    params = {
        "seed": cfg.seed,
        "model": model.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json"),
    }
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    data_rows = "\n".join(f"| {k} | `{v}` |" for k, v in data.items())
    commit = tracking.git_commit()
    return f"""---
library_name: transformers
pipeline_tag: text-classification
base_model: {model.name}{f"{chr(10)}license: {model.license}" if model.license else ""}
---

# {model.name} fine-tuned for text classification

Trained by the `train` stage of finetune-pipeline (`dvc repro train`){
        f" at commit `{commit}`" if commit else ""
    }.
{_loading_note(resolved.get("model.pooling", model.pooling), cfg.train.lora.enabled, model.pooling)}

- Base model: `{model.name_or_path}` ({model.name})
- Labels ({len(labels)}): {", ".join(f"`{label}`" for label in labels)}
- Max sequence length: {resolved["model.max_length"]} (`model.max_length: {model.max_length}`{
        _LENGTH_BY.get(resolved.get("model.max_length_by", ""), "")
    });
  longer texts {
        _LONG_TEXT[resolved["model.long_text"]].format(
            share=model.head_share, overlap=model.chunk_overlap, pool=model.chunk_pool
        )
    } (`model.long_text: {model.long_text}`{
        "" if resolved["model.long_text_by"] == "setting" else f"; {resolved['model.long_text_by']}"
    })
- Epochs: {_epochs_line(cfg, metrics, resolved)}
- Attention dropout while training: {_attention_dropout(cfg, resolved)}

## Data version

| file | md5 |
|---|---|
{data_rows}

## Metrics (validation split)

| metric | value |
|---|---|
{rows}

Test-split metrics are written by the `evaluate` stage (`reports/evaluate/metrics.json`).

## Params

```yaml
{yaml.safe_dump(params, sort_keys=False).rstrip()}
```
"""
