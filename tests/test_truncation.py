"""model.long_text: which tokens of a text over max_length the model sees, the same in training,
PyTorch and ONNX Runtime inference and predict's character cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from finetune.modeling import truncation
from finetune.modeling.onnx_runtime import OnnxClassifier
from tests.conftest import make_stage_cfg, make_texts, train_tiny

WORDS = [f"{i}" for i in range(40)]  # one token each in the tiny vocabulary
LONG = " ".join(WORDS)


def test_kept_positions_keep_the_special_tokens_and_the_chosen_ends() -> None:
    mask = [1] + [0] * 10 + [1]  # [CLS] t0..t9 [SEP]
    assert truncation.kept_positions(mask, 12, "head_tail", 0.25) is None, "fits: all kept"
    assert truncation.kept_positions(mask, 6, "head", 0.25) == [0, 1, 2, 3, 4, 11]
    assert truncation.kept_positions(mask, 6, "tail", 0.25) == [0, 7, 8, 9, 10, 11]
    assert truncation.kept_positions(mask, 10, "head_tail", 0.25) == [
        0,
        1,
        2,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
    ]
    with pytest.raises(ValueError, match="model.max_length 2 leaves no room"):
        truncation.kept_positions(mask, 2, "head_tail", 0.25)
    with pytest.raises(ValueError, match="model.long_text is 'middle'"):
        truncation.kept_positions(mask, 6, "middle", 0.25)


def test_encode_cuts_the_tokenizer_s_output(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    full = tokenizer(LONG)["input_ids"]  # [CLS] 0 1 ... 39 [SEP]
    head = truncation.encode(tokenizer, [LONG], 10, "head", 0.25)["input_ids"][0]
    assert head == tokenizer(LONG, truncation=True, max_length=10)["input_ids"]
    both = truncation.encode(tokenizer, [LONG, "0 1"], 10, "head_tail", 0.25)
    assert both["input_ids"][0] == full[:3] + full[-7:], "[CLS] 2 head tokens, 6 tail + [SEP]"
    assert both["input_ids"][1] == tokenizer("0 1")["input_ids"], "a short text is not cut"
    assert [len(m) for m in both["attention_mask"]] == [10, 4]
    tail = truncation.encode(tokenizer, [LONG], 10, "tail", 0.25)["input_ids"][0]
    assert tail == full[:1] + full[-9:]


def test_onnx_runtime_encodes_as_the_transformers_tokenizer(tiny_model_dir: Path) -> None:
    """ONNX Runtime tokenizes with the `tokenizers` library: the same ids, mask and types."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_model_dir)
    fast = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    fast.no_padding()
    texts = [LONG, "0 1 2", " ".join(WORDS[:9])]
    for mode in truncation.MODES:
        onnx = OnnxClassifier(
            session=None,
            tokenizer=fast,
            labels=[],
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            max_positions=64,
            max_length=12,
            pad_id=int(hf.pad_token_id),
            path=Path("model.onnx"),
            load_seconds=0.0,
            long_text=(mode, 0.25),
        )
        got = onnx.encode(texts, 12)
        want = hf.pad(truncation.encode(hf, texts, 12, mode, 0.25), return_tensors="np")
        for key in onnx.input_names:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{mode} {key}")


def test_clip_chars_keeps_the_ends_the_mode_keeps() -> None:
    text = "a" * 50 + "b" * 50
    assert truncation.clip_chars(text, 200, "head_tail", 0.25) == text
    assert truncation.clip_chars(text, 20, "head", 0.25) == "a" * 20
    assert truncation.clip_chars(text, 20, "tail", 0.25) == "b" * 20
    assert truncation.clip_chars(text, 20, "head_tail", 0.25) == "a" * 5 + " " + "b" * 14


def _logits(model: Any, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        tensor = torch.tensor([ids])
        return model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits[0].numpy()


def test_a_model_trained_head_tail_predicts_from_both_ends_everywhere(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting travels with the model: predict (PyTorch) cuts the way training did."""
    from finetune.modeling.classifier import open_classifier

    monkeypatch.chdir(tmp_path)
    cfg = make_stage_cfg(tmp_path, tiny_model_dir, make_texts())
    cfg["model"].update({"long_text": "head_tail", "max_length": 16})
    cfg["train"]["epochs"] = 1
    train_tiny(cfg)
    loaded = open_classifier(cfg["paths"]["model_dir"])
    assert loaded.long_text == ("head_tail", 0.25)
    assert loaded.model.config.finetune_long_text == "head_tail"
    card = (Path(cfg["paths"]["model_dir"]) / "README.md").read_text()
    assert "their first 25% of tokens and the rest from their end" in card
    text = "refund charged " * 30 + "parcel arrived late " * 30
    ids = loaded.tokenizer(text)["input_ids"]
    room = 16 - 2
    both_ends = ids[: 1 + round(0.25 * room)] + ids[-(room - round(0.25 * room) + 1) :]
    probs = loaded.predict([text], 8, 16).probabilities[0]
    expected = torch.softmax(torch.tensor(_logits(loaded.model, both_ends)), -1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    head_only = torch.softmax(torch.tensor(_logits(loaded.model, ids[:15] + ids[-1:])), -1)
    assert not np.allclose(probs, head_only.numpy(), atol=1e-5), "not the head alone"
    # the ONNX export reads the setting from the bundled config.json and cuts the same way
    from finetune.export import export

    cfg["export"].update({"variants": ["fp32"], "max_f1_drop": 1.0, "latency_texts": 4})
    cfg["export"]["registered_model_name"] = None
    export.run(cfg)
    onnx = open_classifier(cfg["paths"]["export_dir"])
    assert onnx.backend == "onnx" and onnx.long_text == ("head_tail", 0.25)
    np.testing.assert_allclose(onnx.predict([text], 8, 16).probabilities[0], probs, atol=1e-4)
