"""Multi-label data: separators found or refused, label sets through preprocess, thresholds
tuned and saved, training with a sigmoid per label, and the stages after it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finetune.core.errors import ConfigError, DataError
from finetune.data import preprocess
from finetune.data.label_sets import LIST_SEPARATOR, guess_separator, split_sets
from finetune.data.sources import load_files
from finetune.modeling import decisions
from tests.conftest import CLASS_WORDS, FILLER, data_config, train_tiny

# ------------------------------------------------------------------ separators


@pytest.mark.parametrize(
    ("values", "separator"),
    [
        (["earn", "acq", "earn|acq", "grain|corn", "corn"], "|"),
        (["a; b", "a", "b", "c"], ";"),
        (["billing", "shipping", "billing,shipping"], ","),
        (["x␟y␟", "␟", "x␟"], LIST_SEPARATOR),
    ],
)
def test_separator_found(values: list[str], separator: str) -> None:
    assert guess_separator(values).separator == separator


@pytest.mark.parametrize(
    "values",
    [
        ["positive", "negative"],
        # a comma inside names that never occur alone: part of the names
        ["Billing, refunds", "Shipping, delays", "Other"],
        # every joined value is a name of its own: splitting would not shrink the vocabulary
        ["R|D", "Q|A", "other"],
    ],
)
def test_single_labels_stay_single(values: list[str]) -> None:
    assert guess_separator(values).separator is None


def test_two_separators_are_ambiguous() -> None:
    guess = guess_separator(["a|b", "a", "b", "c;d", "c", "d"])
    assert guess.separator is None and guess.ambiguous
    assert "data.label_separator" in guess.reason


def test_split_sets_trims_and_drops_repeats() -> None:
    assert split_sets([" a | b |a", "", None, "c"], "|") == [("a", "b"), (), (), ("c",)]


# ------------------------------------------------------------------ preprocess

TOPICS = list(CLASS_WORDS)


def make_sets(n: int = 90, seed: int = 0, empty: int = 0) -> pd.DataFrame:
    """Texts about one or two topics, their labels joined by '|'; ``empty`` rows with none."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topics = rng.sample(TOPICS, 1 if i % 3 else 2)
        if i < empty:
            topics = []
        words = [w for t in topics for w in rng.sample(CLASS_WORDS[t], 2)]
        words += rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "labels": "|".join(topics)})
    return pd.DataFrame(rows)


def _preprocess(tmp_path: Path, df: pd.DataFrame, name: str = "ml.csv", **kw: Any) -> Any:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_csv(path, index=False)
    spec = data_config(
        path,
        label_column="labels",
        split={"validation": 0.2, "test": 0.2, "method": "hash"},
        **kw,
    )
    return preprocess.preprocess(load_files(spec), spec, 0)


def test_preprocess_finds_sets_and_counts_labels(tmp_path: Path) -> None:
    result = _preprocess(tmp_path, make_sets(empty=4))
    assert result.task == "multi_label"
    assert result.labels == sorted(TOPICS)
    train = result.splits["train"]
    assert "label_id" not in train.columns
    ids = train["label_ids"].tolist()
    assert all(list(x) == sorted(x) for x in ids)
    report = result.report
    assert "'|'" in report["task_reason"]
    assert sum(report["rows_without_label"].values()) == 4
    counts = report["class_counts"]["train"]
    assert sum(counts.values()) == sum(len(x) for x in ids)  # a row counts once per label


def test_single_label_data_stays_single_label(tmp_path: Path) -> None:
    df = make_sets()
    df["labels"] = df["labels"].str.split("|").str[0]
    result = _preprocess(tmp_path, df)
    assert result.task == "single_label" and "label_id" in result.splits["train"].columns


def test_jsonl_lists(tmp_path: Path) -> None:
    df = make_sets(empty=3)
    df["labels"] = [x.split("|") if x else [] for x in df["labels"]]
    result = _preprocess(tmp_path, df, "ml.jsonl")
    assert result.task == "multi_label" and result.labels == sorted(TOPICS)
    assert sum(result.report["rows_without_label"].values()) == 3


def test_jsonl_mixing_lists_and_single_labels_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a b", "labels": ["x", "y"]}\n{"text": "c d", "labels": "x"}\n')
    spec = data_config(path, label_column="labels")
    with pytest.raises(DataError, match=r"mixes lists and single values"):
        load_files(spec)


def test_ambiguous_separator_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    df = make_sets()
    df.loc[:5, "labels"] = ["billing;shipping", "billing", "shipping"] * 2
    with pytest.raises(DataError, match=r"data.label_separator"):
        _preprocess(tmp_path, df)


def test_labels_outside_the_declared_set_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"outside data.labels"):
        _preprocess(tmp_path, make_sets(), labels=["billing", "shipping"])


def test_a_label_no_train_row_has_leaves_the_sets(tmp_path: Path) -> None:
    df = make_sets()
    result = _preprocess(tmp_path, df)
    test_text = result.splits["test"]["text"].iloc[0]
    df.loc[df["text"] == test_text, "labels"] = "billing|refunds_only_here"
    result = _preprocess(tmp_path, df)
    assert "refunds_only_here" not in result.labels
    assert result.report["unseen_label_rows_dropped"]["test"] == 1
    with pytest.raises(DataError, match=r"refunds_only_here.*no train"):
        _preprocess(tmp_path, df, unseen_labels="error")


def test_explicit_task_and_separator(tmp_path: Path) -> None:
    df = make_sets()
    df["labels"] = df["labels"].str.replace("|", "/")
    assert _preprocess(tmp_path, df).task == "single_label"  # "/" is no separator we guess
    result = _preprocess(tmp_path, df, label_separator="/")
    assert result.task == "multi_label" and result.labels == sorted(TOPICS)


@pytest.mark.parametrize(
    ("policy", "expected"), [("union", {0, 1, 2}), ("majority", {0}), ("drop", None)]
)
def test_duplicate_texts_with_different_sets(
    tmp_path: Path, policy: str, expected: set[int] | None
) -> None:
    df = make_sets()
    text = df["text"][1]  # one topic
    first = df["labels"][1]
    others = [t for t in TOPICS if t != first]
    dup = pd.DataFrame({"text": [text, text.upper()], "labels": [others[0], others[1]]})
    result = _preprocess(tmp_path, pd.concat([df, dup]), cleaning={"conflicts": policy})
    rows = pd.concat(result.splits.values())
    found = rows.loc[rows["text"].str.lower() == text.lower(), "label"].tolist()
    if expected is None:
        assert found == []
    else:
        wanted = [first, *others][: max(expected) + 1]
        assert len(found) == 1 and set(found[0].split("|")) == set(wanted)
    assert result.report["conflicting_label_texts"] == 1
    assert result.report["conflict_rows_dropped"] == (3 if policy == "drop" else 2)


def test_union_on_single_label_data_is_an_error(tmp_path: Path) -> None:
    df = make_sets()
    df["labels"] = df["labels"].str.split("|").str[0]
    with pytest.raises(DataError, match=r"conflicts=union.*one label per row.*data.task"):
        _preprocess(tmp_path, df, cleaning={"conflicts": "union"})


# ------------------------------------------------------------------ thresholds


def test_best_cut_and_tuned_thresholds() -> None:
    scores = np.array([0.9, 0.8, 0.35, 0.3, 0.1])
    truth = np.array([1, 1, 1, 0, 0])
    threshold, f1 = decisions.best_cut(scores, truth)
    assert f1 == 1.0 and 0.3 < threshold < 0.35
    rng = np.random.default_rng(0)
    y = np.zeros((200, 3), dtype=bool)
    y[:60, 0] = True
    y[:2, 2] = True  # two positives: too few for a threshold of its own
    probs = rng.random((200, 3)) * 0.3
    probs[:60, 0] += 0.25  # label 0's positives score 0.25-0.55: 0.5 would miss most
    chosen = decisions.tune(y, probs, min_positives=5, at_least_one=False)
    assert chosen.fallback == (1, 2)
    assert chosen.values[0] < 0.4  # well below 0.5
    assert chosen.values[2] == chosen.global_value
    tuned = decisions.decide(probs, chosen)
    fixed = decisions.decide(probs, decisions.fixed(3, 0.5, False))
    assert tuned[:, 0].sum() > fixed[:, 0].sum()


def test_at_least_one() -> None:
    probs = np.array([[0.2, 0.1], [0.7, 0.9]])
    chosen = decisions.fixed(2, 0.5, True)
    assert decisions.decide(probs, chosen).tolist() == [[True, False], [True, True]]
    assert decisions.at_least_one("auto", np.array([1, 2])) is True
    assert decisions.at_least_one("auto", np.array([1, 0])) is False


# ------------------------------------------------------------------ train


@pytest.fixture
def multi_cfg(stage_cfg: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    raw = Path(stage_cfg["data"]["path"])
    make_sets(n=120, empty=6).to_csv(raw, index=False)
    stage_cfg["data"].update(label_column="labels", id_column=None, extra_columns=[])
    stage_cfg["data"]["split"]["method"] = "hash"
    stage_cfg["train"]["epochs"] = 3
    return stage_cfg


def test_train_multi_label_saves_thresholds(multi_cfg: dict[str, Any]) -> None:
    from finetune.modeling.backbones import load_trained
    from finetune.modeling.inference import predict_proba

    train_tiny(multi_cfg)
    model_dir = Path(multi_cfg["paths"]["model_dir"])
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["problem_type"] == decisions.MULTI_LABEL
    assert len(saved["decision_thresholds"]) == 3
    assert saved["decision_at_least_one"] is False  # some train rows have no label
    metrics = json.loads(Path(multi_cfg["paths"]["train_report"]).read_text())
    for key in ("val_f1_macro", "val_f1_micro", "baseline_val_f1_micro", "thresholds_own"):
        assert key in metrics
    model, tokenizer = load_trained(model_dir)
    probs = predict_proba(model, tokenizer, ["refund charged invoice parcel delivery"], 8, 32)
    assert probs.probabilities.shape == (1, 3)
    assert not np.isclose(probs.probabilities.sum(), 1.0)  # a sigmoid per label, not a softmax


def test_class_weights_with_multi_label_is_a_config_error(multi_cfg: dict[str, Any]) -> None:
    multi_cfg["train"]["class_weights"] = "balanced"
    with pytest.raises(ConfigError, match=r"train.multi_label.pos_weight"):
        train_tiny(multi_cfg)


def test_evaluate_multi_label(multi_cfg: dict[str, Any]) -> None:
    from finetune.evaluation import evaluate

    train_tiny(multi_cfg)
    metrics = evaluate.run(multi_cfg)
    paths = multi_cfg["paths"]
    assert metrics["task"] == "multi_label"
    for key in ("f1_micro", "f1_macro", "f1_samples", "hamming_loss", "lrap", "f1_macro_at_0_5"):
        assert (key in metrics and key in metrics["baseline"]) or key.endswith("0_5")
    assert metrics["baseline"]["name"] == "tfidf_logreg_one_vs_rest"
    per_class = json.loads(Path(paths["evaluate_per_class"]).read_text())
    assert set(per_class) == set(TOPICS)
    assert all("threshold" in v and "ece" in v for v in per_class.values())
    frame = pd.read_parquet(paths["predictions"])
    assert {"predicted", "predicted_ids", "correct"} <= set(frame.columns)
    records = pd.read_csv(paths["confusion_plot"])
    assert set(records["actual"]) <= {*TOPICS, "(none)"}
    y = decisions.multi_hot(frame["label_ids"].tolist(), 3) > 0
    assert len(records) >= y.sum()  # every true label is a record (found or missed)


@pytest.fixture(scope="module")
def ml_exported(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """A multi-label tiny model trained, evaluated and exported (fp32 ONNX only)."""
    from finetune.evaluation import evaluate
    from finetune.export import export
    from tests.conftest import make_stage_cfg

    workspace = tmp_path_factory.mktemp("ml-export")
    cfg = make_stage_cfg(workspace, tiny_model_dir, make_sets(n=120, empty=6))
    cfg["data"].update(label_column="labels", id_column=None, extra_columns=[])
    cfg["data"]["split"]["method"] = "hash"
    cfg["export"].update({"variants": ["fp32"], "max_f1_drop": 1.0, "latency_texts": 5})
    train_tiny(cfg)
    evaluate.run(cfg)
    metrics = export.run(cfg)
    return {"cfg": cfg, "metrics": metrics}


def test_predict_multi_label_through_pytorch_onnx_and_the_pyfunc(
    ml_exported: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow

    from finetune import cli
    from finetune.modeling.classifier import open_classifier

    cfg, metrics = ml_exported["cfg"], ml_exported["metrics"]
    assert metrics["chosen"] == "fp32"
    fp32 = metrics["variants"]["fp32"]
    assert fp32["agreement_with_pytorch"] == 1.0  # the same label sets as PyTorch
    texts = ["refund charged invoice parcel delivery", "", "password login locked"]
    src = tmp_path / "in.jsonl"
    pd.DataFrame({"text": texts}).to_json(src, orient="records", lines=True)
    outputs = {}
    for key, model in {
        "pytorch": cfg["paths"]["model_dir"],
        "onnx": cfg["paths"]["export_dir"],
    }.items():
        out = tmp_path / f"{key}.jsonl"
        code = cli.main(["predict", "-m", model, "-i", str(src), "-o", str(out)])
        assert code == 0, key
        outputs[key] = pd.read_json(out, lines=True)
    columns = [f"prob_{label}" for label in sorted(TOPICS)]
    ok = outputs["pytorch"]["status"] == "ok"
    np.testing.assert_allclose(
        outputs["onnx"].loc[ok, columns].to_numpy(),
        outputs["pytorch"].loc[ok, columns].to_numpy(),
        atol=1e-4,
    )
    assert outputs["onnx"]["predicted"].tolist() == outputs["pytorch"]["predicted"].tolist()
    # the predicted set is every label at or above its saved threshold
    loaded = open_classifier(cfg["paths"]["model_dir"])
    probs = outputs["pytorch"].loc[ok, columns].to_numpy()
    expected = [
        "|".join(s)
        for s in decisions.label_sets(decisions.decide(probs, loaded.thresholds), loaded.labels)
    ]
    assert outputs["pytorch"].loc[ok, "predicted"].fillna("").tolist() == expected
    # the registered ONNX pyfunc answers with the label set and every label's probability
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    name = f"{cfg['tracking']['registered_model_name']}-onnx"
    served = mlflow.pyfunc.load_model(f"models:/{name}/1").predict(
        pd.DataFrame({"text": texts[::2]})
    )
    assert served["label"].fillna("").tolist() == expected
    np.testing.assert_allclose(served[columns].to_numpy(), probs, atol=1e-4)


def test_label_share_drift_is_per_label_and_bonferroni_corrected() -> None:
    from finetune.monitoring import multilabel as ML

    rng = np.random.default_rng(0)
    rates = np.array([0.3, 0.2, 0.1])
    reference = rng.random((400, 3)) < rates
    same = ML.prediction_drift(reference, rng.random((300, 3)) < rates, TOPICS, 0.01)
    moved = ML.prediction_drift(reference, rng.random((300, 3)) < [0.3, 0.2, 0.4], TOPICS, 0.01)
    assert same["p_value"] > 0.05 and same["labels_moved"] == []
    assert moved["p_value"] < 1e-6 and moved["labels_moved"] == [TOPICS[2]]
    assert moved["most_moved_label"] == TOPICS[2] and moved["psi"] > same["psi"]
    assert moved["batch_share"][TOPICS[2]] == pytest.approx(0.4, abs=0.06)
    # Bonferroni: the reported p-value is the smallest corrected one
    assert min(moved["per_label_p_value"].values()) == pytest.approx(moved["p_value"], abs=1e-6)


def test_monitor_label_matrix_and_measured_sets() -> None:
    from finetune.monitoring import multilabel as ML

    got = ML.label_matrix(["a|b", None, "b"], ["a", "b", "c"], "batch.csv (label column)")
    assert got.tolist() == [[1, 1, 0], [0, 0, 0], [0, 1, 0]]  # blank: a text with no label
    with pytest.raises(DataError, match=r"batch.csv \(label column\) has label\(s\) \['z'\]"):
        ML.label_matrix(["a|z"], ["a", "b"], "batch.csv (label column)")
    y = np.array([[1, 1, 0], [0, 1, 0]], dtype=bool)
    decided = np.array([[1, 0, 0], [0, 1, 0]], dtype=bool)
    m = ML.measured(y, decided, ["a", "b", "c"])
    assert m["accuracy"] == 0.5 and m["f1_micro"] == pytest.approx(0.8)
    assert m["recall"] == {"a": 1.0, "b": 0.5, "c": None}
    assert m["f1_macro"] == pytest.approx((1.0 + 2 / 3) / 2)  # c: neither given nor decided


def test_monitor_a_multi_label_model(
    ml_exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from finetune import cli

    cfg = ml_exported["cfg"]
    root = Path(cfg["paths"]["model_dir"]).parents[1]
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    make_sets(n=60, seed=3, empty=5).to_csv(root / "batch.csv", index=False)
    monkeypatch.chdir(root)
    runs = {}
    for name, extra in {"labelled": ["--label-column", "labels"], "unlabelled": []}.items():
        out = root / "monitor-out" / name
        code = cli.main(
            [
                *("monitor", "--repo", str(root), "-m", cfg["paths"]["model_dir"]),
                *("-i", "batch.csv", *extra, "-o", str(out)),
            ]
        )
        assert code in (0, 3), name
        runs[name] = (json.loads((out / "summary.json").read_text()), out / "report.html")
    s, page = runs["labelled"]
    assert s["estimated_accuracy"] is None and s["batch"]["labelled"] == 60
    # the shares and the figures are the model's label sets at its saved thresholds
    from finetune.modeling.classifier import open_classifier
    from finetune.monitoring import multilabel as ML

    model = open_classifier(cfg["paths"]["model_dir"])
    batch = pd.read_csv(root / "batch.csv", keep_default_na=False)
    decided = decisions.decide(
        model.predict(batch["text"].tolist(), 8, model.saved_max_length).probabilities,
        model.thresholds,
    )
    shares = s["prediction_drift"]["batch_share"]
    np.testing.assert_allclose([shares[x] for x in model.labels], decided.mean(axis=0), atol=1e-4)
    given = ML.label_matrix(batch["labels"].tolist(), model.labels, "batch") > 0
    assert given[:5].sum() == 0  # the rows with no label count, as empty sets
    expected = ML.measured(given, decided, model.labels)
    assert s["performance"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert s["performance"]["f1_micro"] == pytest.approx(expected["f1_micro"])
    perf = s["performance"]
    assert perf["basis"] == "subset accuracy" and 0 <= perf["accuracy"] <= 1
    assert {"f1_micro", "f1_macro", "drop_p_value"} <= set(perf)
    assert set(perf["recall"]) == set(TOPICS)
    assert s["prediction_drift"]["test"] == "fisher_exact_per_label_bonferroni"
    assert set(s["prediction_drift"]["batch_share"]) == set(TOPICS)
    assert "subset accuracy" in page.read_text()
    s, page = runs["unlabelled"]
    check = next(c for c in s["checks"] if c["check"] == "performance drop")
    assert not check["flagged"] and "no label-free estimate" in check["detail"]
    assert "not calibrated" in page.read_text()


def test_error_analysis_multi_label(ml_exported: dict[str, Any]) -> None:
    from finetune.analysis import error_analysis

    cfg = ml_exported["cfg"]
    summary = error_analysis.run(cfg)
    assert summary["task"] == "multi_label"
    tables = Path(cfg["paths"]["error_tables"])
    per_label = pd.read_csv(tables / "per_label.csv")
    assert set(per_label["label"]) == set(TOPICS)
    assert per_label["false_positives"].sum() == summary["false_positives"]
    assert per_label["false_negatives"].sum() == summary["false_negatives"]
    assert (tables / "label_swaps.csv").is_file() and (tables / "cooccurrence.csv").is_file()
    page = Path(cfg["paths"]["error_report_html"]).read_text()
    assert "Labels by errors" in page and "not run for multi-label" in page


def test_multi_label_distillation_loss() -> None:
    import torch

    from finetune.training.distill import multi_label_distillation_loss as loss

    student = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 1.5, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    weight = torch.tensor([1.0, 3.0, 0.5])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(student, labels, pos_weight=weight)
    assert float(loss(student, student * 4, labels, 2.0, 0.0, weight)) == pytest.approx(float(bce))
    assert float(loss(student, student, labels, 2.0, 1.0)) == pytest.approx(0, abs=1e-6)
    teacher = torch.tensor([[-3.0, 3.0, 0.0], [3.0, -3.0, 0.0]])
    t = 2.0
    p, q = torch.sigmoid(teacher / t), torch.sigmoid(student / t)  # teacher, student
    kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))  # KL(teacher || student)
    soft = loss(student, teacher, labels, t, 1.0)
    assert float(soft) == pytest.approx(t**2 * float(kl.mean()), rel=1e-5)
    mixed = loss(student, teacher, labels, t, 0.5, weight)
    assert float(mixed) == pytest.approx(0.5 * float(soft) + 0.5 * float(bce), rel=1e-5)


def test_multi_label_distillation_wiring(ml_exported: dict[str, Any], tmp_path: Path) -> None:
    """Two different multi-label teachers average per label; the trainer's loss on a batch is
    the multi-label distillation loss with the positive weights; accumulating 2 micro-batches
    halves each one's loss, as for any loss that is a mean per micro-batch."""
    import torch

    from finetune.core.artifacts import load_labels
    from finetune.modeling.backbones import load_trained
    from finetune.modeling.inference import predict_proba
    from finetune.training import trainer
    from finetune.training.distill import multi_label_distillation_loss, teacher_log_probs
    from tests.conftest import config

    base = ml_exported["cfg"]
    first = base["paths"]["model_dir"]
    labels = load_labels(base["paths"]["processed_dir"])
    texts = ["refund charged invoice", "parcel delivery late", "hello there"]
    other, tokenizer = load_trained(first)
    with torch.no_grad():
        other.classifier.bias += torch.tensor([2.0, -1.0, 0.5])
    second = tmp_path / "second"
    other.save_pretrained(second)
    tokenizer.save_pretrained(second)
    each = [predict_proba(*load_trained(d), texts, 8, 32).probabilities for d in (first, second)]
    assert not np.allclose(each[0], each[1])
    logits = teacher_log_probs((first, str(second)), texts, labels, 8, multi_label=True)
    mean = (each[0] + each[1]) / 2  # probabilities averaged per label, no softmax
    assert 1 / (1 + np.exp(-logits)) == pytest.approx(mean, abs=1e-4)
    with pytest.raises(ConfigError, match=r"predicts label sets .* one label per text"):
        teacher_log_probs((first,), texts, labels, 8, multi_label=False)

    overrides = {"train.distill.enabled": True, "train.distill.teacher": "x"}
    spec = config({**overrides, "train.gradient_accumulation_steps": 2}).train
    model, tok = trainer.build_model(
        base["model"]["name_or_path"], labels, spec, "cls", problem_type=decisions.MULTI_LABEL
    )
    df = pd.DataFrame({"text": texts, "label_ids": [[0], [1, 2], []]})
    ds = trainer.tokenize(df, tok, 32, logits, num_labels=len(labels))
    pos_weight = [1.0, 3.0, 0.5]
    multi = (spec.multi_label, False, pos_weight)
    built = trainer.build_trainer(
        model, tok, ds, ds, spec, "fp32", str(tmp_path / "out"), 0, multi_label=multi
    )
    batch = next(iter(built.get_train_dataloader()))
    model.eval()  # no dropout: the two computations below see the same network
    got = built.compute_loss(model, dict(batch))
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits", "length")}
    with torch.no_grad():
        student = model(**inputs).logits
    expected = multi_label_distillation_loss(
        student,
        batch["teacher_logits"],
        batch["labels"],
        spec.distill.temperature,
        spec.distill.alpha,
        torch.tensor(pos_weight),
    )
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-5)
    model.train()  # the training step's mode: the same seed gives both the same dropout
    torch.manual_seed(0)
    whole = built.compute_loss(model, dict(batch))
    built.current_gradient_accumulation_steps = 2
    torch.manual_seed(0)
    step = built.training_step(model, dict(batch), num_items_in_batch=torch.tensor(9))
    assert float(step) == pytest.approx(float(whole) / 2, rel=1e-4)


def test_multi_label_student_learns_from_a_multi_label_teacher(
    ml_exported: dict[str, Any], tmp_path: Path
) -> None:
    import copy

    from finetune.modeling.backbones import load_trained
    from finetune.training import train

    base = ml_exported["cfg"]
    cfg = copy.deepcopy(base)
    for key in ("model_dir", "run_info", "train_report", "checkpoints_dir"):
        cfg["paths"][key] = str(tmp_path / Path(base["paths"][key]).name)
    cfg["train"]["distill"].update(
        enabled=True, teacher=base["paths"]["model_dir"], keep_every_kth_layer=2
    )
    cfg["tracking"]["registered_model_name"] = "ml-students"
    result = train.run(cfg)
    assert "val_f1_micro" in result.metrics
    student, _ = load_trained(cfg["paths"]["model_dir"])
    assert decisions.is_multi_label(student.config)
    assert student.config.num_hidden_layers == 1
    assert len(student.config.decision_thresholds) == 3


def test_swaps_and_cooccurrence_count_texts() -> None:
    from finetune.analysis import multilabel_errors as ML

    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    pred = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    swapped = ML.swaps(y, pred, ["a", "b", "c"])
    assert swapped.to_dict("records") == [{"missed": "a", "added": "b", "texts": 1}]
    together = ML.cooccurrence(y, pred, ["a", "b", "c"], 5)
    assert together.to_dict("records") == [
        {"label_a": "a", "label_b": "b", "given_together": 1, "predicted_together": 1}
    ]


# ------------------------------------------------------------------ registry gate


def _fake_model(problem_type: str | None, labels: list[str]) -> Any:
    from types import SimpleNamespace

    config = SimpleNamespace(
        problem_type=problem_type, id2label=dict(enumerate(labels)), num_labels=len(labels)
    )
    return SimpleNamespace(config=config)


def test_gate_refuses_to_compare_multi_label_with_single_label() -> None:
    from finetune.core.errors import PipelineError
    from finetune.registry.gate import check_same_labels

    multi = _fake_model(decisions.MULTI_LABEL, TOPICS)
    single = _fake_model(None, TOPICS)
    with pytest.raises(PipelineError, match=r"v2 \(challenger\) is multi-label and v1 .*single"):
        check_same_labels(("2", multi), ("1", single), "tickets")
    other = _fake_model(decisions.MULTI_LABEL, [*TOPICS, "returns"])
    with pytest.raises(PipelineError, match=r"different label maps.*returns"):
        check_same_labels(("2", other), ("1", multi), "tickets")


def test_gate_scores_label_sets() -> None:
    from finetune.registry.gate import score_sets

    y_true = ["a|b", "a", "", "c"]
    y_pred = ["a|b", "a|c", "", "c"]
    scored = score_sets("3", y_true, y_pred, ["a", "b", "c"])
    assert scored.accuracy == 0.75
    assert scored.recall == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert scored.f1_micro == pytest.approx(2 * 4 / (2 * 4 + 1))
    assert scored.f1_macro == pytest.approx((1 + 1 + 2 / 3) / 3)


# ------------------------------------------------------------------ retrain


def test_retrain_ingests_label_sets_into_jsonl_as_lists(tmp_path: Path) -> None:
    from finetune.lifecycle.retrain import ingest

    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"text": "refund please", "labels": ["billing"]}\n')
    new = tmp_path / "new.jsonl"
    new.write_text(
        '{"text": "refund and parcel", "labels": ["billing", "shipping"]}\n'
        '{"text": "nothing to do", "labels": []}\n'
    )
    spec = data_config(raw, label_column="labels", id_column=None, extra_columns=[])
    (result,) = ingest(raw, [new], spec, tmp_path)
    assert result.added == 2
    rows = [json.loads(line) for line in raw.read_text().splitlines() if line]
    assert [r["labels"] for r in rows] == [["billing"], ["billing", "shipping"], []]
    preprocessed = load_files(spec)  # the grown file still reads: lists in every row
    assert guess_separator(preprocessed.table.column("labels").to_pylist()).separator == (
        LIST_SEPARATOR
    )


def test_multi_label_loss_is_the_mean_over_examples_and_labels() -> None:
    import torch

    from finetune.training.loss import multi_label_loss, positive_weights

    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss = multi_label_loss(None)
    assert torch.isclose(loss({"logits": logits}, labels), plain)
    # accumulation: the Trainer counts label entries; two halves add up to the whole batch
    halves = sum(loss({"logits": logits[i : i + 2]}, labels[i : i + 2], 12) for i in (0, 2))
    assert torch.isclose(halves, plain)
    weights = positive_weights("sqrt", labels.numpy())
    assert weights == pytest.approx([1.0, 1.0, 3**0.5])
    assert positive_weights("balanced", labels.numpy()) == pytest.approx([1.0, 1.0, 3.0])
    assert positive_weights("none", labels.numpy()) is None
