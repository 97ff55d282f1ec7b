"""Explainers side by side (integrated gradients, SHAP, LIME), their faithfulness, and
`finetune explain` on every kind of model."""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finetune import cli
from finetune.analysis import explainers as X
from finetune.analysis.explain import (
    check_texts,
    context,
    render_page,
    report_rows,
    terminal_lines,
)
from finetune.core.errors import DataError
from finetune.core.schema import ExplanationsConfig
from finetune.lifecycle.explain import run_explain
from finetune.modeling.truncation import LongText
from tests.conftest import FILLER, base_params, make_stage_cfg, make_texts, train_tiny

CUE = "refund"


def cue_text(rng: random.Random, with_cue: bool, n: int = 6) -> str:
    words = rng.sample(FILLER, n)
    if with_cue:
        words[rng.randrange(n)] = CUE
    return " ".join(words)


@pytest.fixture(scope="module")
def decisive(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny BERT trained until one word decides the class: "refund" anywhere -> refund,
    else other (filler words only). Saved as a trained model directory."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir,
        num_labels=2,
        id2label={0: "other", 1: "refund"},
        label2id={"other": 0, "refund": 1},
    )
    rng = random.Random(0)
    data = [(cue_text(rng, i % 2 == 1), i % 2) for i in range(400)]
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        batch = rng.sample(data, 32)
        enc = tokenizer([t for t, _ in batch], return_tensors="pt", padding=True)
        loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()

    def proba(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
            return torch.softmax(model(**enc).logits, dim=-1).numpy()

    texts = [cue_text(rng, True) for _ in range(6)]
    assert (proba(texts).argmax(axis=1) == 1).all(), "the cue decides"
    assert (proba([cue_text(rng, False) for _ in range(6)]).argmax(axis=1) == 0).all()
    directory = tmp_path_factory.mktemp("decisive")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {
        "model": model,
        "tokenizer": tokenizer,
        "proba": proba,
        "texts": texts,
        "dir": directory,
    }


def build_all(decisive: dict[str, Any], **kw: Any) -> dict[str, X.Explainer]:
    return X.build(
        X.METHODS,
        decisive["proba"],
        model=decisive["model"],
        tokenizer=decisive["tokenizer"],
        max_length=64,
        shap_max_evals=60,
        lime_samples=80,
        **kw,
    )


def test_every_explainer_gives_one_score_per_word(decisive: dict[str, Any]) -> None:
    texts = ["refund", "my   refund  was not  please again", "a " * 30 + "refund"]
    explainers = build_all(decisive)
    assert set(explainers) == set(X.METHODS)
    normalised = [X.normalise(t) for t in texts]
    for name, explainer in explainers.items():
        scores = explainer(normalised, [1, 1, 1])
        assert [len(s) for s in scores] == [1, 6, 31], name
        assert all(np.isfinite(s).all() for s in scores), name
        assert [int(np.argmax(s)) for s in scores] == [0, 1, 30], (name, scores)


def test_the_deciding_word_ranks_first_and_every_explainer_beats_random(
    decisive: dict[str, Any],
) -> None:
    texts = decisive["texts"]
    result = X.explain(build_all(decisive), decisive["proba"], texts, [1] * len(texts), seed=3)
    for name in X.METHODS:
        for i, text in enumerate(result.texts):
            ranked = sorted(result.words_of(i, name), key=lambda ws: -ws[1])
            assert ranked[0][0] == CUE, (name, text, ranked)
    table = result.table.set_index("method")
    for name in X.METHODS:
        assert table.loc[name, "comprehensiveness"] > table.loc[X.RANDOM, "comprehensiveness"]
        assert table.loc[name, "sufficiency"] < table.loc[X.RANDOM, "sufficiency"]
        assert table.loc[name, "faithfulness"] > table.loc[X.RANDOM, "faithfulness"] + 0.1
        assert bool(table.loc[name, "beats_random"])
    assert not bool(table.loc[X.RANDOM, "beats_random"])
    assert result.recommended in X.METHODS
    assert "most faithful" in result.reason and "random" in result.reason
    assert set(zip(result.agreement["a"], result.agreement["b"], strict=True)) == {
        (X.IG, X.SHAP), (X.IG, X.LIME), (X.SHAP, X.LIME),
    }  # fmt: skip
    # every method ranks the cue first: of their top 20% (two words of six) one is shared
    assert (result.agreement["top_overlap"] >= 0.5).all()


def test_faithfulness_by_hand() -> None:
    """Comprehensiveness and sufficiency of a known model: P(target) is the share of "good"
    words. Two texts of different lengths, two fractions, each text's own target."""

    def proba(texts: list[str]) -> np.ndarray:
        share = np.array([t.split().count("good") / max(len(t.split()), 1) for t in texts])
        return np.stack([1 - share, share], axis=1)

    texts = ["good bad bad bad", "bad good good bad bad bad"]
    scores = [np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0.5, 0, 0, 0])]
    got = X.faithfulness(proba, texts, [1, 0], scores, fractions=[0.25, 0.5])
    # text 1, target good (p 1/4): top 1 = {good}; top 2 = {good, bad}
    comp_1 = np.mean([0.25 - 0.0, 0.25 - 0.0])  # "bad bad bad", "bad bad"
    suff_1 = np.mean([0.25 - 1.0, 0.25 - 0.5])  # "good", "good bad"
    # text 2, target bad (p 4/6): top 2 = {good, good}; top 3 = {good, good, bad}
    comp_2 = np.mean([4 / 6 - 1.0, 4 / 6 - 1.0])  # "bad bad bad bad", "bad bad bad"
    suff_2 = np.mean([4 / 6 - 0.0, 4 / 6 - 1 / 3])  # "good good", "bad good good"
    np.testing.assert_allclose(got["comprehensiveness"], [comp_1, comp_2])
    np.testing.assert_allclose(got["sufficiency"], [suff_1, suff_2])


def test_agreement_and_the_verdict_without_a_faithful_explainer() -> None:
    same = [np.array([3.0, 2.0, 1.0, 0.0, -1.0])]
    reverse = [np.array([-1.0, 0.0, 1.0, 2.0, 3.0])]
    assert X.agreement(same, same) == {"spearman": pytest.approx(1.0), "top_overlap": 1.0}
    assert X.agreement(same, reverse) == {"spearman": pytest.approx(-1.0), "top_overlap": 0.0}
    table = pd.DataFrame(
        {
            "method": [X.SHAP, X.RANDOM],
            "comprehensiveness": [0.1, 0.2],
            "sufficiency": [0.3, 0.1],
            "faithfulness": [-0.2, 0.1],
            "seconds_per_text": [1.0, 0.0],
            "beats_random": [False, False],
        }
    )
    recommended, reason = X.recommend(table)
    assert recommended is None
    assert reason.startswith("no explainer beat random word scores")


def test_integrated_gradients_sums_pieces_into_words_and_skips_what_the_model_cannot_see(
    decisive: dict[str, Any],
) -> None:
    text = " ".join(["refund", *FILLER, *FILLER])  # 25 words, cut at 16 tokens
    explain = X.integrated_gradients(
        decisive["model"], decisive["tokenizer"], 16, 8, LongText("head", 0.25)
    )
    (scores,) = explain([text], [1])
    assert len(scores) == 25
    assert np.abs(scores[:14]).min() > 0, "every word the model reads gets a score"
    assert (scores[14:] == 0).all(), "words past the 14 text tokens the model reads"
    offsets = [(0, 0), (0, 2), (2, 6), (7, 9), (0, 0)]  # [CLS] re ##fund my [SEP]
    word_scores = X._word_scores("refund my", offsets, [1, 0, 0, 0, 1], np.array([9, 1, 2, 3, 9]))
    assert word_scores.tolist() == [3.0, 3.0]
    # sentencepiece: "▁world" starts on the space before it, a lone "▁" precedes "!"
    offsets = [(0, 0), (0, 5), (5, 11), (11, 12), (12, 13), (0, 0)]
    spaced = X._word_scores("hello world !", offsets, [1, 0, 0, 0, 0, 1], np.arange(6.0))
    assert spaced.tolist() == [1.0, 2.0, 7.0]


def test_a_long_text_is_explained_as_the_words_the_model_reads(decisive: dict[str, Any]) -> None:
    text = " ".join(["refund", *FILLER, *FILLER])  # 25 words
    tokenizer = decisive["tokenizer"]
    assert X.visible_text(tokenizer, text, 64, LongText("head", 0.25)) == text
    assert X.visible_text(tokenizer, text, 6, LongText("head", 0.25)) == " ".join(text.split()[:4])
    assert X.visible_text(tokenizer, text, 6, LongText("tail", 0.25)) == " ".join(text.split()[-4:])
    both = X.visible_text(tokenizer, text, 6, LongText("head_tail", 0.5))
    assert both == " ".join(text.split()[:2] + text.split()[-2:])
    assert X.visible_text(tokenizer, text, 6, LongText("chunks")) == text, "chunks read it all"


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_integrated_gradients_over_the_windows_of_a_chunked_text(
    decisive: dict[str, Any], pool: str
) -> None:
    text = " ".join(["refund", *FILLER, *FILLER])  # 25 words, windows of 14 text tokens
    model, tokenizer = decisive["model"], decisive["tokenizer"]
    explain = X.integrated_gradients(model, tokenizer, 16, 8, LongText("chunks", pool=pool))
    (scores,) = explain([text], [1])
    assert len(scores) == 25
    if pool == "mean":
        assert np.abs(scores).min() > 0, "every word is in a window the text's logit averages"
        return
    # max: the words of the one window whose logit for the class is the highest
    seen = np.flatnonzero(scores)
    assert 0 < len(seen) <= 14 and seen.max() - seen.min() == len(seen) - 1


def test_an_onnx_model_gets_the_explainers_that_need_only_probabilities(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def proba(texts: list[str]) -> np.ndarray:
        return np.full((len(texts), 2), 0.5)

    with caplog.at_level("INFO"):
        built = X.build(X.METHODS, proba, model=None)
    assert set(built) == {X.SHAP, X.LIME}
    assert "integrated gradients left out" in caplog.text
    with pytest.raises(ValueError, match=r"unknown explainer\(s\) \['anchors'\]"):
        X.build(["anchors"], proba)


def test_bad_texts_are_named() -> None:
    with pytest.raises(DataError, match="text 2 is empty: give a text with words in it"):
        check_texts(["fine", "  "], [3, 2], 32, ["text 1", "text 2"])
    with pytest.raises(DataError, match="in.csv row 1 is 90 tokens and the model reads at most 32"):
        check_texts(["long " * 88], [90], 32, ["in.csv row 1"])


def test_the_context_is_plain_json(decisive: dict[str, Any]) -> None:
    import json

    rows = pd.DataFrame(
        {
            "id": ["a"],
            "text": [decisive["texts"][0]],
            "predicted_label": ["refund"],
            "confidence": [np.float32(0.9)],
            "target_label": ["other"],
        }
    )
    explainers = build_all(decisive)
    result = X.explain(explainers, decisive["proba"], rows["text"].tolist(), [0], seed=0)
    ctx = context(result, rows)
    json.dumps(ctx)
    assert ctx["examples"][0]["heading"] == "a: predicted refund (0.90), explaining other"
    lines = terminal_lines(ctx, top=2)
    assert lines[0].endswith("refund (0.90), explaining other")
    assert any(line.strip().startswith("SHAP") for line in lines)


def test_a_time_budget_explains_the_first_texts_that_fit(decisive: dict[str, Any]) -> None:
    now = [0.0]  # a clock only the explainer moves: 0.5 s a text, everything else free

    def slow(texts: list[str], targets: list[int]) -> list[np.ndarray]:
        now[0] += 0.5 * len(texts)
        return [np.arange(len(X.words(t)), dtype=float) for t in texts]

    def run(budget: float | None) -> X.Explained:
        now[0] = 0.0
        return X.explain(
            {"slow": slow}, decisive["proba"], texts, [1] * 8, seed=0, time_budget_s=budget,
            clock=lambda: now[0],
        )  # fmt: skip

    texts = [cue_text(random.Random(i), True) for i in range(8)]
    everything = run(None)
    assert everything.texts == texts and len(everything.per_text) == 8 * 2
    assert everything.table.set_index("method").loc["slow", "seconds_per_text"] == 0.5
    # after 3 texts (1.5 s) a fourth would end at 2.0 s: over 1.8; after 2, a third fits
    cut = run(1.8)
    assert cut.texts == texts[:3] and set(cut.per_text["text"]) == {0, 1, 2}
    assert len(cut.scores["slow"]) == len(cut.scores[X.RANDOM]) == 3
    assert run(2.0).texts == texts[:4], "one that ends on the budget fits"
    assert run(0.001).texts == texts[:1], "at least one text"
    with pytest.raises(ValueError, match="no text to explain"):
        X.explain({"slow": slow}, decisive["proba"], [], [], seed=0)


def test_one_text_at_a_time_scores_as_one_batch_would(decisive: dict[str, Any]) -> None:
    """The per-text loop gives each explainer the same seeds and each text the same
    faithfulness as whole-batch calls: LIME's k-th text gets seed + k, the random floor one
    stream."""
    texts = [X.normalise(t) for t in decisive["texts"][:3]]
    targets = [1, 1, 1]
    kw = {"shap_max_evals": 60, "lime_samples": 80, "seed": 5}
    result = X.explain(X.build([X.LIME], decisive["proba"], **kw), decisive["proba"], texts,
                       targets, seed=5)  # fmt: skip
    batched = X.build([X.LIME], decisive["proba"], **kw)[X.LIME](texts, targets)
    for got, want in zip(result.scores[X.LIME], batched, strict=True):
        np.testing.assert_allclose(got, want)
    floor = X.random_scores(5)(texts, targets)
    for got, want in zip(result.scores[X.RANDOM], floor, strict=True):
        np.testing.assert_array_equal(got, want)
    for method in (X.LIME, X.RANDOM):
        mine = result.per_text[result.per_text["method"] == method]
        alone = X.faithfulness(decisive["proba"], texts, targets, result.scores[method])
        np.testing.assert_allclose(mine["comprehensiveness"], alone["comprehensiveness"])
        np.testing.assert_allclose(mine["sufficiency"], alone["sufficiency"])


def test_the_report_mixes_errors_and_correct_texts_in_proportion() -> None:
    errors = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(4)],
            "text": [f"wrong {i}" for i in range(4)],
            "label": "a",
            "predicted": "b",
            "confidence": [0.9, 0.8, 0.7, 0.6],
        }
    )
    errors = errors.rename(columns={"label": "true_label", "predicted": "predicted_label"})
    predictions = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(5)],
            "text": [f"right {i}" for i in range(4)] + [" "],
            "label": "a",
            "predicted": "a",
            "confidence": 0.9,
            "correct": True,
        }
    )
    rows = report_rows(predictions, errors, top_errors=4, correct=2, seed=0)
    assert rows["correct"].tolist() == [False, True, False, False, True, False]
    assert [i for i in rows["id"] if i.startswith("e")] == ["e0", "e1", "e2", "e3"]
    assert " " not in rows["text"].tolist()
    ctx = context(None, rows.iloc[:0], candidates=6)
    assert ctx["examples"] == [] and ctx["candidates"] == 6


def test_the_page_says_when_the_budget_left_texts_out(decisive: dict[str, Any]) -> None:
    rows = pd.DataFrame(
        {
            "id": ["a", "b"],
            "text": decisive["texts"][:2],
            "predicted_label": ["refund", "refund"],
            "confidence": [0.9, 0.8],
        }
    )
    explainers = build_all(decisive)
    result = X.explain(explainers, decisive["proba"], rows["text"].tolist()[:1], [1], seed=0)
    page = render_page(context(result, rows.iloc[:1], candidates=2), "m", "pytorch")
    assert "1 of 2 texts explained" in page and "explanations.time_budget" in page
    whole = render_page(context(result, rows.iloc[:1]), "m", "pytorch")
    assert "texts explained" not in whole


# --------------------------------------------------------------------------- finetune explain


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """The tiny model trained and registered (champion), exported to int8 ONNX."""
    from finetune.export import export

    cfg = train_tiny(
        make_stage_cfg(tmp_path_factory.mktemp("explain"), tiny_model_dir, make_texts())
    )
    cfg = copy.deepcopy(cfg)
    cfg["export"].update({"max_f1_drop": 1.0, "latency_texts": 5, "variants": ["int8"]})
    export.run(cfg)
    return cfg


FAST = ["--methods", "integrated_gradients,shap,lime", "--samples", "40"]


@pytest.mark.parametrize("kind", ["directory", "onnx", "models-uri"])
def test_explain_on_each_kind_of_model(
    trained: dict[str, Any],
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = trained["paths"]
    model, extra = {
        "directory": (paths["model_dir"], []),
        "onnx": (paths["export_dir"], []),
        "models-uri": (
            f"models:/{trained['tracking']['registered_model_name']}@champion",
            ["--tracking-uri", trained["tracking"]["uri"]],
        ),
    }[kind]
    page = tmp_path / "why.html"
    code = cli.main(
        ["explain", "-m", model, "my card was charged twice refund please",
         "parcel tracking says delivered", "-o", str(page), *FAST, *extra]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("'my card was charged twice refund please': ")
    expected = ["SHAP", "LIME"] if kind == "onnx" else ["Integrated gradients", "SHAP", "LIME"]
    shown = [m for m in ["Integrated gradients", "SHAP", "LIME"] if f"  {m} " in out]
    assert shown == expected
    assert "faithfulness (comprehensiveness - sufficiency" in out
    html = page.read_text()
    assert html.count('<div class="attr">') == 2 * len(expected)
    assert "<script" not in html and not re.search(r"(src|href)=[\"']?https?:", html)
    assert "Random" in html and "beats random" in html


def test_explain_another_label_and_from_a_file(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": ["t1"], "text": ["refund my card"]}).to_csv(src, index=False)
    code = cli.main(
        ["explain", "-m", trained["paths"]["model_dir"], "-i", str(src), "--label", "shipping",
         "--methods", "lime", "--top", "2"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("'refund my card': ") and out[0].endswith(", explaining shipping")
    assert out[1].strip().startswith("LIME") and out[1].count(",") == 1  # two words
    # the explained class is the one asked for: towards it, the words score otherwise
    spec = ExplanationsConfig.model_validate(
        {**base_params()["error_analysis"]["explanations"], "methods": ["shap"]}
    )
    model = trained["paths"]["model_dir"]
    asked = run_explain(model, ["refund my card"], spec, label="shipping", max_length=32)
    own = run_explain(model, ["refund my card"], spec, max_length=32)
    assert own["examples"][0]["predicted_label"] != "shipping"
    assert asked["examples"][0]["words"]["shap"] != own["examples"][0]["words"]["shap"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "text 1 is empty: give a text with words in it"),
        (["refund " * 80], "text 1 is .* tokens and the model reads at most 32"),
        (["refund", "--label", "nope"], "unknown --label 'nope': the model's labels are "),
        ([], r'nothing to explain: give a text \("..."\) or --input FILE'),
        (["refund", "--methods", "shap,anchors"], "--methods: Input should be"),
        (["refund", "--samples", "3"], "--samples: Input should be greater than or equal to 10"),
        (["refund", "--methods", ""], "no explainer chosen: pass --methods"),
    ],
)
def test_bad_input_is_one_clear_line(
    trained: dict[str, Any],
    args: list[str],
    message: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.html"
    code = cli.main(
        ["explain", "-m", trained["paths"]["model_dir"], "--max-length", "32", "-o", str(page),
         *args]
    )  # fmt: skip
    assert code == 1
    assert re.search(message, caplog.text), caplog.text
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    assert not page.exists(), "nothing half written"


def test_an_onnx_model_cannot_give_integrated_gradients(
    trained: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    code = cli.main(
        ["explain", "-m", trained["paths"]["export_dir"], "refund",
         "--methods", "integrated_gradients"]
    )  # fmt: skip
    assert code == 1
    assert "is an ONNX model: integrated gradients needs the PyTorch model's" in caplog.text


def test_a_failed_page_leaves_nothing_behind(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.lifecycle import explain as lifecycle_explain

    page = tmp_path / "why.html"
    page.write_text("the page from before")

    def broken(*args: Any, **kw: Any) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(lifecycle_explain, "render_page", broken)
    code = cli.main(
        ["explain", "-m", trained["paths"]["model_dir"], "refund", "--methods", "lime",
         "--samples", "20", "-o", str(page)]
    )  # fmt: skip
    assert code == 1
    assert page.read_text() == "the page from before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["why.html"], "no temporary file left"
