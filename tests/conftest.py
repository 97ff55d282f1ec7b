"""Shared fixtures: a tiny BERT built locally (no downloads) and a small labelled dataset."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest-xdist workers on two cores: one compute thread each (and in
    # the stages they start), so that two trainings do not fight over both cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from finetune.core.schema import DataConfig, PipelineConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first (each module kept whole, order otherwise unchanged), so
    that under `pytest -n 2 --dist loadfile --no-loadscope-reorder` the long end-to-end
    modules start at once and the many short tests fill in at the end."""
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)


# Words the tiny data uses; each class has its own cue words plus shared filler.
CLASS_WORDS = {
    "billing": ["refund", "charged", "invoice", "payment", "card", "price"],
    "shipping": ["parcel", "delivery", "tracking", "courier", "arrived", "address"],
    "account": ["password", "login", "locked", "email", "reset", "username"],
}
FILLER = ["my", "the", "is", "was", "please", "help", "not", "i", "a", "it", "today", "again"]


def make_texts(n_per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for label, cues in CLASS_WORDS.items():
        for i in range(n_per_class):
            words = rng.sample(cues, 2) + rng.sample(FILLER, 3)
            rng.shuffle(words)
            rows.append(
                {
                    "id": f"{label}-{i}",
                    "text": " ".join(words) + f" {i}",
                    "label": label,
                    "channel": rng.choice(["email", "chat"]),
                }
            )
    return pd.DataFrame(rows)


def build_tiny_model(directory: Path, max_positions: int = 64) -> Path:
    """A 2-layer BERT (hidden 32) and a WordPiece tokenizer, saved with save_pretrained;
    ``max_positions``: the tokens it takes."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for ws in CLASS_WORDS.values() for w in ws} | set(FILLER))
    vocab = {t: i for i, t in enumerate(special + words + [str(i) for i in range(100)])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_data() -> pd.DataFrame:
    return make_texts()


def base_params() -> dict[str, Any]:
    """The committed params.yaml (composed from conf/)."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``params`` with dotted keys set: ``{"train.lora.r": 4}``."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return out


# Old keyword names of the data helpers -> keys of the data section.
_DATA_KEYS = {
    "validation_size": "split.validation",
    "test_size": "split.test",
    "split_method": "split.method",
    "kind": "source",
    "hf_name": "hf.name",
    "hf_config": "hf.config",
    "hf_cache_dir": "hf.cache_dir",
    "hf_splits": "hf.splits",
    "token_sample": "report.token_sample",
}


def data_config(path: str | Path | None = None, **kw: Any) -> DataConfig:
    """A data section for unit tests: a plain source (no ids, no extra columns, stratified
    splits) at ``path``; ``cleaning={...}`` sets cleaning keys; see _DATA_KEYS for the rest."""
    values: dict[str, Any] = {
        "data.path": None if path is None else str(path),
        "data.id_column": None,
        "data.extra_columns": [],
        "data.split.method": "stratified",
    }
    for key, value in kw.items():
        if key == "cleaning":
            values.update({f"data.cleaning.{k}": v for k, v in value.items()})
            continue
        values[f"data.{_DATA_KEYS.get(key, key)}"] = (
            list(value) if isinstance(value, tuple) else value
        )
    return config(values).data


def typed(cfg: dict[str, Any]) -> PipelineConfig:
    """A test's config dict (e.g. from make_stage_cfg) as the validated, typed config."""
    from finetune.core.validate import parse

    return parse(cfg, CONF)


def config(overrides: dict[str, Any] | None = None, **sections: Any) -> PipelineConfig:
    """The committed config, typed and validated, with dotted overrides (``{"train.epochs":
    1}``); keyword arguments name whole keys of one level (``config(seed=1)``)."""
    from finetune.core.validate import parse

    return parse(with_overrides(base_params(), {**(overrides or {}), **sections}), CONF)


def make_stage_cfg(workspace: Path, model_dir: Path, data: pd.DataFrame) -> dict[str, Any]:
    """The committed params with absolute paths into ``workspace``, tiny data and tiny model."""
    raw = workspace / "data" / "raw" / "tickets.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(raw, index=False)
    cfg = copy.deepcopy(base_params())
    cfg["paths"] = {k: str(workspace / v) for k, v in cfg["paths"].items()}
    cfg["data"]["path"] = str(raw)
    cfg["data"]["split"] = {"validation": 0.2, "test": 0.2, "method": "stratified"}
    cfg["model"]["name_or_path"] = str(model_dir)
    cfg["model"]["max_length"] = 32
    cfg["train"].update(
        {
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 5e-3,
            "logging_steps": 2,
            "precision": "fp32",
            "warmup_ratio": 0.0,
        }
    )
    cfg["tracking"]["uri"] = f"sqlite:///{workspace / 'mlflow.db'}"
    cfg["data"]["known_mislabels"] = None
    # the tiny model never beats the TF-IDF baseline; the guard has tests of its own
    cfg["promotion"]["require_beat_baseline"] = False
    cfg["retrain"]["lock_file"] = str(workspace / "registry.lock")  # the registry lock
    return cfg


def train_and_register(cfg: dict[str, Any]) -> Any:
    """What the train stage runs (stages/train.py): training, then the registration step
    (``finetune.training.train.run`` alone only logs the model to its run)."""
    from stages.train import load

    return load()(cfg)


class train_stage:  # lower case: used like the stage modules, `for stage in (...): stage.run`
    """The train stage as the pipeline runs it: trains, then registers (see train_and_register)."""

    run = staticmethod(train_and_register)


@pytest.fixture
def stage_cfg(
    tmp_path: Path, tiny_model_dir: Path, tiny_data: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A fresh workspace (also the cwd) for one test."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)
    return make_stage_cfg(tmp_path, tiny_model_dir, tiny_data)


def train_tiny(cfg: dict[str, Any]) -> dict[str, Any]:
    """preprocess, augment (off) and train on ``cfg`` (from make_stage_cfg); ``cfg`` back."""
    from finetune.augment import augment
    from finetune.data import preprocess

    cfg["augment"]["enabled"] = False
    for stage in (preprocess, augment, train_stage):
        stage.run(cfg)
    return cfg


def run_pipeline(workspace: Path, model_dir: Path, **model: Any) -> dict[str, Any]:
    """All five stages on tiny data in ``workspace`` (``model`` overrides the model section)."""
    from finetune.analysis import error_analysis
    from finetune.augment import augment
    from finetune.data import preprocess
    from finetune.evaluation import evaluate

    cfg = make_stage_cfg(workspace, model_dir, make_texts())
    cfg["model"].update(model)
    for stage in (preprocess, augment, train_stage, evaluate, error_analysis):
        stage.run(cfg)
    return cfg


@pytest.fixture(scope="session")
def pipeline_cfg(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """All five stages run once on tiny data, shared by every test that only reads their
    outputs (copy the dict before changing it)."""
    return run_pipeline(tmp_path_factory.mktemp("pipeline"), tiny_model_dir)


def copy_repo(dest: Path) -> Path:
    """A git copy of the tracked + untracked-but-not-ignored project files, for e2e tests."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest
