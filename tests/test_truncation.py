"""model.long_text: which tokens of a text over max_length the model sees (or, for chunks, in
which windows it reads all of them), the same in training, PyTorch and ONNX Runtime inference,
the served model and predict's character cap."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from finetune.modeling import truncation
from finetune.modeling.onnx_runtime import OnnxClassifier
from finetune.modeling.truncation import LongText
from tests.conftest import make_stage_cfg, make_texts, train_tiny

WORDS = [f"{i}" for i in range(40)]  # one token each in the tiny vocabulary
LONG = " ".join(WORDS)


def test_kept_positions_keep_the_special_tokens_and_the_chosen_ends() -> None:
    mask = [1] + [0] * 10 + [1]  # [CLS] t0..t9 [SEP]
    assert truncation.kept_positions(mask, 12, LongText("head_tail")) is None, "fits: all kept"
    assert truncation.kept_positions(mask, 6, LongText("head")) == [0, 1, 2, 3, 4, 11]
    assert truncation.kept_positions(mask, 6, LongText("tail")) == [0, 7, 8, 9, 10, 11]
    assert truncation.kept_positions(mask, 10, LongText("head_tail")) == [
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
        truncation.kept_positions(mask, 2, LongText("head_tail"))
    with pytest.raises(ValueError, match="model.long_text is 'middle'"):
        truncation.kept_positions(mask, 6, LongText("middle"))
    assert truncation.kept_positions(mask, 6, LongText("chunks")) is None, "chunks read all"


def test_auto_reads_both_ends_where_the_length_cuts_more_than_outliers() -> None:
    lengths = np.array([10, 30, 64, 65])
    assert truncation.choose("auto", lengths, 64, 0.01) == (
        "head_tail",
        "auto: 1 of 4 train texts (25.0%) are longer than 64 tokens; their first and last "
        "tokens are read",
    )
    assert truncation.choose("auto", lengths, 65, 0.01) == (
        "head",
        "auto: 0 of 4 train texts (0.0%) are longer than 65 tokens, at most the 1% the length "
        "rule leaves over",
    )
    outliers = np.array([10] * 199 + [90])  # 0.5% cut: outliers, read from their start
    assert truncation.choose("auto", outliers, 64, 0.01)[0] == "head"
    assert truncation.choose("auto", np.array([10] * 98 + [90] * 2), 64, 0.01)[0] == "head_tail"
    assert truncation.choose("chunks", lengths, 8, 0.01) == ("chunks", "setting"), "a setting"
    assert truncation.choose("head", lengths, 8, 0.01) == ("head", "setting")
    unresolved = SimpleNamespace(long_text="auto", head_share=0.25, chunk_overlap=0.25)
    with pytest.raises(ValueError, match="model.long_text is auto: resolve it from the train"):
        truncation.from_model_config(unresolved)


def test_auto_is_resolved_from_the_train_texts_and_saved_with_the_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The train stage resolves ``auto`` (its log, the run's ``resolved.*`` params, the card,
    the model's config); k-fold training (error analysis's ``finetuned`` source) resolves it in
    ``fine_tune`` from the rows it trains on."""
    import mlflow

    from finetune.core.validate import parse
    from finetune.modeling.classifier import open_classifier
    from finetune.training.trainer import fine_tune

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    df = make_texts()
    df.loc[::7, "text"] = df["text"][::7] + " " + LONG  # some texts over 16 tokens
    cfg = make_stage_cfg(tmp_path, tiny_model_dir, df)
    cfg["model"].update({"long_text": "auto", "max_length": 16})
    cfg["train"]["epochs"] = 1
    train_tiny(cfg)
    loaded = open_classifier(cfg["paths"]["model_dir"])
    assert loaded.long_text.mode == "head_tail"
    card = (Path(cfg["paths"]["model_dir"]) / "README.md").read_text()
    assert "the rest from their end (`model.long_text: auto`; auto: " in card
    assert "train texts (" in card and "are longer than 16 tokens" in card
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    run_id = json.loads(Path(cfg["paths"]["run_info"]).read_text())["run_id"]
    params = mlflow.get_run(run_id).data.params
    assert params["resolved.model.long_text"] == "head_tail"
    assert params["model.long_text"] == "auto"

    spec = parse(cfg)
    short = make_texts(4).assign(label_id=lambda d: d["label"].astype("category").cat.codes)
    labels = sorted(short["label"].unique())
    model_cfg = spec.model.model_copy(update={"pooling": "cls"})
    fitted = fine_tune(short, short, labels, model_cfg, spec.train, 0)
    assert fitted.model.config.finetune_long_text == "head", "every text fits in 16 tokens"


def test_chunks_cover_every_token_in_full_overlapping_windows() -> None:
    mask = [1] + [0] * 10 + [1]  # [CLS] t0..t9 [SEP]: room for 4 text tokens at 6
    found = truncation.windows(mask, 6, LongText("chunks", overlap=0.25))
    # a step of 3 (4 less one overlapping token); the last window ends at the text's end
    assert found == [
        [0, 1, 2, 3, 4, 11],
        [0, 4, 5, 6, 7, 11],
        [0, 7, 8, 9, 10, 11],
    ]
    assert truncation.windows(mask, 12, LongText("chunks")) is None, "fits: one row"
    assert truncation.windows(mask, 6, LongText("chunks", overlap=0.0))[1] == [0, 5, 6, 7, 8, 11]
    assert len(truncation.windows(mask, 6, LongText("chunks", overlap=0.9))) == 7, "step >= 1"
    for overlap in (0.0, 0.25, 0.5, 0.9):
        for n in (3, 8, 12, 13, 40, 1000):
            long_text = LongText("chunks", overlap=overlap)
            rows = truncation.windows([1] + [0] * (n - 2) + [1], 8, long_text) or [[]]
            assert len(rows) == truncation.count_windows(np.array([n]), 8, 2, overlap), (n, overlap)
            assert all(len(r) <= 8 for r in rows)
            covered = {i for r in rows for i in r} if n > 8 else set(range(n))
            assert covered == set(range(n)), "every token is in a window"
    with pytest.raises(ValueError, match="model.chunk_pool is 'median'"):
        truncation.windows(mask, 6, LongText("chunks", pool="median"))


def test_pooling_windows_into_texts() -> None:
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.0, 5.0], [7.0, 7.0]])
    owner = [0, 0, 1, 2]
    np.testing.assert_allclose(
        truncation.pool(logits, owner, 3, "mean"), [[2.0, -1.0], [0.0, 5.0], [7.0, 7.0]]
    )
    np.testing.assert_allclose(
        truncation.pool(logits, owner, 3, "max"), [[3.0, 0.0], [0.0, 5.0], [7.0, 7.0]]
    )
    np.testing.assert_array_equal(truncation.pool(logits[:3], [0, 1, 2], 3), logits[:3])
    np.testing.assert_allclose(truncation.pool(logits[:2], [1, 0], 2), logits[::-1][2:])


def test_encode_cuts_the_tokenizer_s_output(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    full = tokenizer(LONG)["input_ids"]  # [CLS] 0 1 ... 39 [SEP]
    head = truncation.encode(tokenizer, [LONG], 10, LongText("head"))[0]["input_ids"][0]
    assert head == tokenizer(LONG, truncation=True, max_length=10)["input_ids"]
    both, owner = truncation.encode(tokenizer, [LONG, "0 1"], 10, LongText("head_tail"))
    assert owner == [0, 1], "one row per text"
    assert both["input_ids"][0] == full[:3] + full[-7:], "[CLS] 2 head tokens, 6 tail + [SEP]"
    assert both["input_ids"][1] == tokenizer("0 1")["input_ids"], "a short text is not cut"
    assert [len(m) for m in both["attention_mask"]] == [10, 4]
    tail = truncation.encode(tokenizer, [LONG], 10, LongText("tail"))[0]["input_ids"][0]
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
            long_text=LongText(mode),
        )
        got, owner = onnx.encode(texts, 12)
        rows, want_owner = truncation.encode(hf, texts, 12, LongText(mode))
        want = hf.pad(rows, return_tensors="np")
        assert owner == want_owner, mode
        for key in onnx.input_names:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{mode} {key}")


def test_clip_chars_keeps_the_ends_the_mode_keeps() -> None:
    text = "a" * 50 + "b" * 50
    assert truncation.clip_chars(text, 200, LongText("head_tail")) == text
    assert truncation.clip_chars(text, 20, LongText("head")) == "a" * 20
    assert truncation.clip_chars(text, 20, LongText("tail")) == "b" * 20
    assert truncation.clip_chars(text, 20, LongText("head_tail")) == "a" * 5 + " " + "b" * 14
    assert truncation.clip_chars(text, 20, LongText("chunks")) == text, "chunks read it all"


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
    assert loaded.long_text == LongText("head_tail", 0.25)
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
    assert onnx.backend == "onnx" and onnx.long_text == LongText("head_tail", 0.25)
    np.testing.assert_allclose(onnx.predict([text], 8, 16).probabilities[0], probs, atol=1e-4)


def test_a_model_trained_on_chunks_scores_a_text_the_same_everywhere(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training learns windows; PyTorch, ONNX Runtime and the served pyfunc pool the same
    windows' logits into one score per text; a very long text runs in bounded batches."""
    from types import SimpleNamespace

    from finetune.evaluation import evaluate
    from finetune.export import export
    from finetune.modeling.classifier import open_classifier
    from finetune.modeling.onnx_pyfunc import ARTIFACT_KEY, OnnxTextClassifier

    monkeypatch.chdir(tmp_path)
    cfg = make_stage_cfg(tmp_path, tiny_model_dir, make_texts())
    cfg["model"].update({"long_text": "chunks", "max_length": 6, "chunk_pool": "mean"})
    cfg["train"].update({"epochs": 2, "precision": "fp32", "group_by_length": True})
    train_tiny(cfg)
    metrics = json.loads(Path(cfg["paths"]["train_report"]).read_text())
    loaded = open_classifier(cfg["paths"]["model_dir"])
    # validation during training pooled each text's windows, in order (transformers groups
    # evaluation rows by length, which would pair windows with other texts' labels)
    validation = pd.read_parquet(Path(cfg["paths"]["processed_dir"]) / "validation.parquet")
    assert (loaded.token_counts(validation["text"].tolist()) > np.array(6)).all()
    predicted = loaded.predict(validation["text"].tolist(), 8, 6).probabilities.argmax(axis=1)
    assert metrics["val_accuracy"] == pytest.approx(
        float((predicted == validation["label_id"].to_numpy()).mean())
    )
    assert loaded.long_text == LongText("chunks", 0.25, 0.25, "mean")
    card = (Path(cfg["paths"]["model_dir"]) / "README.md").read_text()
    assert "are read whole, in windows of that length overlapping by 25%" in card
    text = "refund charged " * 3 + "parcel arrived late " * 3  # 15 text tokens: 5 windows of 4
    ids = loaded.tokenizer(text)["input_ids"]
    starts = truncation.window_starts(len(ids) - 2, 4, 0.25)
    assert len(starts) == 5
    windows = [ids[:1] + ids[1 + s : 5 + s] + ids[-1:] for s in starts]
    expected = torch.softmax(
        torch.tensor(np.mean([_logits(loaded.model, w) for w in windows], axis=0)), -1
    ).numpy()
    probs = loaded.predict([text, "refund"], 8, 6).probabilities
    np.testing.assert_allclose(probs[0], expected, atol=1e-5)
    np.testing.assert_allclose(
        probs[1],
        torch.softmax(
            torch.tensor(_logits(loaded.model, loaded.tokenizer("refund")["input_ids"])), -1
        ).numpy(),
        atol=1e-5,
    )
    # a very long text: its windows go through the model at most batch_size at a time
    seen: list[int] = []
    forward = loaded.model.forward
    monkeypatch.setattr(
        loaded.model,
        "forward",
        lambda **kw: (seen.append(int(kw["input_ids"].shape[0])), forward(**kw))[1],
    )
    huge = " ".join(["refund"] * 5000)
    assert loaded.predict([huge], 4, 6).probabilities.shape == (1, 3)
    assert len(seen) == 1667 // 4 + 1 and max(seen) == 4  # 5,000 tokens in steps of 3
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # evaluate reads them whole: nothing is "truncated"
    evaluate.run(cfg)
    frame = pd.read_parquet(cfg["paths"]["predictions"])
    assert not frame["truncated"].any()
    # the ONNX export and the served pyfunc read the setting from config.json
    cfg["export"].update({"variants": ["fp32"], "max_f1_drop": 1.0, "latency_texts": 4})
    cfg["export"]["registered_model_name"] = None
    export.run(cfg)
    onnx = open_classifier(cfg["paths"]["export_dir"])
    assert onnx.long_text == loaded.long_text
    np.testing.assert_allclose(onnx.predict([text, "refund"], 2, 6).probabilities, probs, atol=1e-4)
    served = OnnxTextClassifier()
    served.load_context(SimpleNamespace(artifacts={ARTIFACT_KEY: cfg["paths"]["export_dir"]}))
    table = served.predict(None, [text, "refund"])
    np.testing.assert_allclose(table[[c for c in table if c.startswith("prob_")]], probs, atol=1e-4)


def test_training_rows_are_windows_and_validation_is_judged_per_text(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from finetune.training.trainer import DOCUMENT_COLUMN, document_metrics, tokenize

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    df = pd.DataFrame({"text": ["0 1", " ".join(WORDS[:10]), "5 6 7"], "label_id": [2, 1, 0]})
    teacher = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    ds = tokenize(df, tokenizer, 6, teacher, LongText("chunks"))
    assert ds[DOCUMENT_COLUMN] == [0, 1, 1, 1, 2], "10 text tokens: 3 windows of 4"
    assert ds["labels"] == [2, 1, 1, 1, 0] and ds["length"] == [4, 6, 6, 6, 5]
    assert ds["teacher_logits"][2] == [3.0, 4.0, 5.0]
    plain = tokenize(df, tokenizer, 6, long_text=LongText("head"))
    assert len(plain) == 3 and DOCUMENT_COLUMN not in plain.column_names
    # the middle text (class 1): by the mean of its windows' logits class 0, by the max 1
    logits = np.array([[0, 0, 9.0], [5, 0, 0], [5, 0, 0], [0, 7.0, 0], [9.0, 0, 0]])
    labels = np.array(ds["labels"])
    mean = document_metrics(ds[DOCUMENT_COLUMN], "mean")((logits, labels))
    assert mean["accuracy"] == pytest.approx(2 / 3) and mean["predicted_classes"] == 2
    best = document_metrics(ds[DOCUMENT_COLUMN], "max")((logits, labels))
    assert best["accuracy"] == 1 and best["predicted_classes"] == 3
