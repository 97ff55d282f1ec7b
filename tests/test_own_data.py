"""Your own data: labels of any shape through every stage, many classes, `finetune init-data`,
settings that fit the dataset (`auto`), and a gate that never compares different label sets."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from finetune.augment.augment import augment_enabled
from finetune.core.errors import ConfigError, DataError
from finetune.core.labels import prob_columns, safe_names
from finetune.modeling.tokens import max_length
from finetune.tracking.runs import run_tags, tag_path
from tests.conftest import CLASS_WORDS, FILLER, make_stage_cfg
from tests.helpers import BIN, sh, tiny_project

AWKWARD = [
    "reverted_card_payment?",
    "Billing & Payments",
    "C++",
    "Überweisung",
    "退款",
    "👍",
    "1st line",
    "x" * 199 + "!",
    "Spam",
    "spam",
]
CUES = sorted({w for ws in CLASS_WORDS.values() for w in ws})


def labelled(labels: list[str], per_class: int, seed: int = 0) -> pd.DataFrame:
    """``per_class`` texts per label, each label with its own pair of cue words."""
    rng = random.Random(seed)
    rows = []
    for k, label in enumerate(labels):
        cues = [CUES[k % len(CUES)], CUES[(3 * k + 1) % len(CUES)]]
        for i in range(per_class):
            words = [*cues, *rng.sample(FILLER, 3), str(i % 100), str(k % 100)]
            rng.shuffle(words)
            rows.append({"id": f"c{k}-{i}", "text": " ".join(words), "label": label,
                         "channel": rng.choice(["email", "chat"])})  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- safe names


def test_safe_names_are_safe_readable_stable_and_unique() -> None:
    names = safe_names([*AWKWARD, "billing"])
    assert names["billing"] == "billing", "a plain label is its own name"
    assert names["reverted_card_payment?"].startswith("reverted_card_payment-")
    assert names["Überweisung"].startswith("Uberweisung-")
    assert names["Spam"] != names["spam"] and names["Spam"].lower() != names["spam"].lower()
    assert len({n.lower() for n in names.values()}) == len(names)
    for name in names.values():
        assert len(name) <= 48 and all(c.isalnum() or c in "_.-" for c in name), name
        assert name.isascii()
    assert safe_names(["C++", "x"])["C++"] == names["C++"], "stable: from the label itself"
    with pytest.raises(ValueError, match="not unique"):
        safe_names(["a", "a"])


# --------------------------------------------------------------------------- every stage


@pytest.fixture(scope="module")
def awkward_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    from finetune.analysis import error_analysis
    from finetune.augment import augment
    from finetune.data import preprocess
    from finetune.evaluation import evaluate
    from finetune.training import train

    workspace = tmp_path_factory.mktemp("awkward")
    cfg = make_stage_cfg(workspace, tiny_model_dir, labelled(AWKWARD, 12))
    cfg["train"]["epochs"] = 2
    for stage in (preprocess, augment, train, evaluate, error_analysis):
        stage.run(cfg)
    return cfg


def test_awkward_labels_go_through_every_stage_and_the_mlflow_run(
    awkward_run: dict[str, Any],
) -> None:
    paths = awkward_run["paths"]
    names = safe_names(sorted(AWKWARD))
    labels = json.loads((Path(paths["processed_dir"]) / "label_map.json").read_text())["labels"]
    assert sorted(labels) == sorted(AWKWARD), "the label map holds the labels as they are"
    counts = json.loads(Path(paths["preprocess_class_counts"]).read_text())
    assert set(counts["train"]) == set(AWKWARD)
    per_class = json.loads(Path(paths["evaluate_per_class"]).read_text())
    assert set(per_class) == set(AWKWARD)
    assert "per_class" not in json.loads(Path(paths["evaluate_metrics"]).read_text())
    predictions = pd.read_parquet(paths["predictions"])
    assert set(prob_columns(labels)) <= set(predictions.columns)
    assert set(predictions["predicted"]) <= set(AWKWARD)
    html = Path(paths["error_report_html"]).read_text()
    assert "Billing &amp; Payments" in html and "Billing & Payments" not in html
    assert "<script" not in html
    run_id = json.loads(Path(paths["run_info"]).read_text())["run_id"]
    run = MlflowClient(awkward_run["tracking"]["uri"]).get_run(run_id)
    assert run.info.status == "FINISHED"
    for label in AWKWARD:
        assert f"test_f1_{names[label]}" in run.data.metrics, label
        assert f"data.class_counts.train.{names[label]}" in run.data.metrics, label
    md = Path(paths["error_report"]).read_text()
    assert "|" not in "".join(line for line in md.splitlines() if "Billing" in line and
                              not line.startswith("|"))  # fmt: skip


def test_predict_on_awkward_labels_names_the_columns_safely(
    awkward_run: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "in.csv"
    pd.DataFrame({"text": ["refund card please", "parcel tracking", ""]}).to_csv(inputs)
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [str(BIN / "finetune"), "predict", "-m", awkward_run["paths"]["model_dir"], "-i",
         str(inputs), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(out)
    labels = json.loads(
        (Path(awkward_run["paths"]["processed_dir"]) / "label_map.json").read_text()
    )["labels"]
    assert list(frame.columns[-len(labels) :]) == prob_columns(labels)
    assert set(frame["predicted"].dropna()) <= set(AWKWARD)
    assert frame["status"].tolist() == ["ok", "ok", "empty"]


def test_the_logged_model_predicts_awkward_labels(awkward_run: dict[str, Any]) -> None:
    mlflow.set_tracking_uri(awkward_run["tracking"]["uri"])
    run_id = json.loads(Path(awkward_run["paths"]["run_info"]).read_text())["run_id"]
    model_id = mlflow.get_run(run_id).outputs.model_outputs[0].model_id
    out = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(["refund card", "parcel"])
    assert set(out["label"]) <= set(AWKWARD)


# --------------------------------------------------------------------------- many classes


def test_120_classes_give_a_readable_report(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.analysis import error_analysis
    from finetune.augment import augment
    from finetune.data import preprocess
    from finetune.evaluation import evaluate
    from finetune.training import train

    monkeypatch.chdir(tmp_path)
    labels = [f"intent_{k:03d}" for k in range(120)]
    cfg = make_stage_cfg(tmp_path, tiny_model_dir, labelled(labels, 8))
    cfg["data"]["split"]["method"] = "hash"
    cfg["train"].update({"epochs": 1, "batch_size": 32})
    cfg["augment"]["enabled"] = False
    cfg["error_analysis"]["label_errors"]["folds"] = 2
    for stage in (preprocess, augment, train, evaluate, error_analysis):
        stage.run(cfg)
    paths = cfg["paths"]
    report = Path(paths["error_report_html"])
    assert report.stat().st_size < 3_000_000, "the report stays a few MB at most"
    html = report.read_text()
    assert "most confused of 120 classes" in html or "confusion matrix" in html
    matrix = pd.read_csv(Path(paths["error_tables"]) / "confusion_matrix.csv", index_col=0)
    assert matrix.shape == (120, 120)
    metrics = json.loads(Path(paths["evaluate_metrics"]).read_text())
    assert metrics["num_classes"] == 120 and len(json.dumps(metrics)) < 5000
    assert len(json.loads(Path(paths["evaluate_per_class"]).read_text())) == 120


def test_a_class_with_one_example_is_named_with_the_fix(tmp_path: Path) -> None:
    from finetune.core.errors import DataError
    from finetune.data import preprocess
    from finetune.data.sources import as_raw
    from tests.conftest import data_config

    data = labelled(["a", "b", "c"], 10)
    data = pd.concat([data, pd.DataFrame([{"id": "x", "text": "alone", "label": "lonely"}])])
    with pytest.raises(DataError, match=r"class\(es\) \{'lonely': 1\} have fewer than 3 examples"):
        preprocess.preprocess(as_raw(data), data_config(id_column="id"), seed=0)


# --------------------------------------------------------------------------- auto settings


def test_auto_settings_follow_the_dataset() -> None:
    assert augment_enabled("auto", 1067) is True
    assert augment_enabled("auto", 52000) is False
    assert augment_enabled(False, 10) is False
    lengths = [*range(1, 101), 500]
    assert max_length("auto", lengths, 512) == 104  # p99 = 100 -> multiple of 8
    assert max_length("auto", [5, 6], 512) == 16
    assert max_length("auto", [900], 512) == 512
    assert max_length(64, lengths, 512) == 64


def test_auto_is_resolved_recorded_and_reproducible(
    stage_cfg: dict[str, Any], tmp_path: Path
) -> None:
    from finetune.augment import augment
    from finetune.data import preprocess
    from finetune.training import train

    stage_cfg["model"]["max_length"] = "auto"
    stage_cfg["train"].update({"epochs": "auto", "max_epochs": 3})
    stage_cfg["augment"]["enabled"] = "auto"
    preprocess.run(stage_cfg)
    augment.run(stage_cfg)
    stats = json.loads(Path(stage_cfg["paths"]["augment_report"]).read_text())
    assert stats["enabled"] is True and stats["enabled_setting"] == "auto"
    report = json.loads(Path(stage_cfg["paths"]["preprocess_report"]).read_text())
    assert report["max_length_setting"] == "auto" and report["max_length"] == 16
    result = train.run(stage_cfg)
    rows = len(pd.read_parquet(Path(stage_cfg["paths"]["augmented_dir"]) / "train.parquet"))
    assert rows > 0 and result.metrics["epochs_planned"] == 3.0
    assert result.metrics["stop_reason"] in {"plateau", "max_epochs"}
    assert 0 < result.metrics["epochs"] <= 3.0
    assert result.metrics["max_length"] == report["max_length"], "the same rule, the same data"
    model_dir = Path(stage_cfg["paths"]["model_dir"])
    tokenizer = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tokenizer["model_max_length"] == 16, "kept with the model for every later use"
    card = (model_dir / "README.md").read_text()
    assert "Max sequence length: 16 (`model.max_length: auto`: the 99th percentile" in card
    run_id = json.loads(Path(stage_cfg["paths"]["run_info"]).read_text())["run_id"]
    params = MlflowClient(stage_cfg["tracking"]["uri"]).get_run(run_id).data.params
    assert params["resolved.model.max_length"] == "16"
    assert params["model.max_length"] == "auto"
    assert params["resolved.train.schedule"] == "warmup-constant-cooldown"
    assert "stopped by" in card and "train.max_epochs: 3" in card


# --------------------------------------------------------------------------- init-data


def init_data(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "finetune"), "init-data", *args, "--repo", str(repo)],
        capture_output=True, text=True, timeout=300, cwd=repo,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from tests.conftest import copy_repo

    return copy_repo(tmp_path / "repo")


def test_init_data_writes_a_config_that_composes_and_says_what_next(project: Path) -> None:
    source = project / "incoming_data"
    source.mkdir()
    frame = labelled(["yes", "no", "maybe"], 20).rename(
        columns={"text": "review", "label": "stars"}
    )
    frame[["id", "review", "stars"]].iloc[::2].to_csv(source / "train.csv", index=False)
    frame[["id", "review", "stars"]].iloc[1::2].to_csv(source / "test.csv", index=False)
    proc = init_data(project, str(source), "--name", "reviews")
    assert proc.returncode == 0, proc.stderr
    assert "text column 'review', label column 'stars', 3 classes" in proc.stdout
    assert (
        'make params O="data=reviews"' in proc.stdout
        and "dvc exp run -S data=reviews" in proc.stdout
    )
    written = (project / "conf" / "data" / "reviews.yaml").read_text()
    assert "- base" in written and "path: incoming_data" in written and "id_column: id" in written
    from finetune.core.config import compose
    from finetune.core.validate import parse

    cfg = parse(compose(project / "conf", ["data=reviews"]), project / "conf", ["data=reviews"])
    assert cfg.data.text_column == "review" and cfg.data.label_column == "stars"
    assert cfg.tracking.registered_model_name == "reviews", "the registered name follows"
    assert cfg.data.known_mislabels is None and cfg.data.extra_columns == [], "no demo settings"
    again = init_data(project, str(source), "--name", "reviews")
    assert again.returncode == 1 and "exists: pass --force" in again.stderr
    assert init_data(project, str(source), "--name", "reviews", "--force").returncode == 0


def test_split_files_beside_another_file_keep_their_splits(project: Path) -> None:
    """clinc150's folder holds train/validation/test.csv and oos_test.csv (another task):
    init-data keeps the predefined splits (split_files) and names the file it left out;
    preprocess on the folder alone refuses to pool them, with what to set."""
    from finetune.core.config import compose
    from finetune.core.validate import parse
    from finetune.data.sources import load_files

    source = project / "intents"
    source.mkdir()
    frame = labelled(["yes", "no", "maybe"], 20)[["text", "label"]]
    frame.iloc[::2].to_csv(source / "train.csv", index=False)
    frame.iloc[1::2].to_csv(source / "test.csv", index=False)
    frame.head(4).assign(label="oos").to_csv(source / "oos_test.csv", index=False)
    proc = init_data(project, str(source), "--name", "intents")
    assert proc.returncode == 0, proc.stderr
    written = (project / "conf" / "data" / "intents.yaml").read_text()
    assert "# Left out: oos_test.csv" in written and "predefined splits" in written
    cfg = parse(compose(project / "conf", ["data=intents"]), project / "conf", ["data=intents"])
    assert cfg.data.split_files == {"train": "intents/train.csv", "test": "intents/test.csv"}
    folder_only = cfg.data.model_copy(update={"path": str(source), "split_files": None})
    pattern = (
        r"2 file\(s\) are named as splits \(test.csv, train.csv\) and 1 are not "
        r"\(.*oos_test.csv\): pooling .* data.split_files"
    )
    with pytest.raises(DataError, match=pattern):
        load_files(folder_only)


def test_init_data_says_what_it_could_not_decide(project: Path) -> None:
    path = project / "odd.csv"
    rows = [{"title": f"about {w} and {v}", "body": f"{v} then {w} again", "score": i / 3}
            for i, (w, v) in enumerate(zip(CUES * 3, FILLER * 5, strict=False))]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False, sep=";")
    proc = init_data(project, str(path))
    assert proc.returncode == 0, proc.stderr
    assert "could not decide: no column looks like class labels" in proc.stdout
    written = (project / "conf" / "data" / "odd.yaml").read_text()
    assert "label_column: CHANGE_ME" in written and "delimiter: ;" in written
    assert "# UNDECIDED: no column looks like class labels" in written


def test_init_data_refuses_a_missing_path(project: Path) -> None:
    proc = init_data(project, str(project / "nope"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr


# --------------------------------------------------------------------------- the gate


def test_the_gate_refuses_models_with_different_label_maps() -> None:
    from types import SimpleNamespace

    from finetune.registry.gate import PromotionError, check_same_labels

    def model(*labels: str) -> Any:
        return SimpleNamespace(config=SimpleNamespace(
            id2label=dict(enumerate(labels)), num_labels=len(labels)))  # fmt: skip

    check_same_labels(("2", model("a", "b")), ("1", model("a", "b")), "m")
    with pytest.raises(PromotionError, match=r"m v2 \(challenger\) and v1 \(champion\) have "
                       r"different label maps \(only the challenger has \['c'\], only the "
                       r"champion \[\]\): the gate does not compare them"):  # fmt: skip
        check_same_labels(("2", model("a", "b", "c")), ("1", model("a", "b")), "m")
    with pytest.raises(PromotionError, match="the same labels in another id order"):
        check_same_labels(("2", model("b", "a")), ("1", model("a", "b")), "m")


def test_unknown_auto_values_are_config_errors() -> None:
    from tests.conftest import config

    with pytest.raises(ConfigError, match=r"train\.epochs=\"some\": Input should be"):
        config({"train.epochs": "some"})
    assert config({"train.epochs": "auto"}).train.epochs == "auto"


def test_any_data_path_makes_a_valid_mlflow_tag_key() -> None:
    """dvc.lock records a data path outside the repository as ../../x: the run's data tags
    must still be accepted by MLflow (it refused ``data.md5.preprocess.deps.../../x``)."""
    from mlflow.utils.validation import _validate_tag_name

    from finetune.tracking.runs import tag_path

    paths = ["data/processed", "../../../datasets/x", "/abs/path/data.csv",
             "../My Data (v2)/C++.csv", "../My Data (v2)/C__.csv", "daten/übung.csv", "a//b",
             "a/b", "./x", "data/raw:1"]  # fmt: skip
    keys = [f"data.md5.preprocess.deps.{tag_path(p)}" for p in paths]
    for key in keys:
        _validate_tag_name(key)
    assert len(set(keys)) == len(paths), "distinct paths, distinct keys"
    assert keys[0] == "data.md5.preprocess.deps.data/processed", "a plain path is kept as it is"


@pytest.mark.slow
def test_data_anywhere_a_user_puts_it_is_versioned_and_tagged(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A data file two directories up, by absolute path, and through a symlinked directory,
    its names with spaces, parentheses and non-ASCII: `dvc repro` records it in dvc.lock, the
    run's data tags from that lock are accepted by a real MLflow store (it refused
    ``data.md5.preprocess.deps.../../x``) and carry the file's hash; train runs on the last."""
    root = tiny_project(tmp_path / "work" / "repo", tiny_model_dir)
    outside = tmp_path / "Meine Daten (v2)"
    outside.mkdir()
    raw = outside / "übung tickets.csv"
    shutil.copy(root / "data" / "raw" / "support_tickets.csv", raw)
    (root / "data" / "linked").symlink_to(outside, target_is_directory=True)
    digest = hashlib.md5(raw.read_bytes()).hexdigest()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("paths")
    paths = {
        "two directories up": os.path.relpath(raw, root),
        "absolute": str(raw),
        "symlinked": "data/linked/übung tickets.csv",
    }
    for kind, path in paths.items():
        sh(root, sys.executable, "-m", "finetune.core.config", "compose", f"data.path='{path}'")
        sh(root, BIN / "dvc", "repro", "preprocess")
        lock = yaml.safe_load((root / "dvc.lock").read_text())
        deps = {d["path"]: d.get("md5") for d in lock["stages"]["preprocess"]["deps"]}
        assert deps.get(path) == digest, (kind, sorted(deps))
        run = client.create_run(experiment, tags=run_tags(root / "dvc.lock"))
        tags = client.get_run(run.info.run_id).data.tags
        assert tags[f"data.md5.preprocess.deps.{tag_path(path)}"] == digest, kind
    trained = sh(root, BIN / "dvc", "repro", "train")
    assert "Running stage 'train'" in trained.stdout
    assert json.loads((root / "reports" / "train" / "metrics.json").read_text())
    # the train stage's own MLflow run carries the symlinked file's hash under its tag
    run_info = json.loads((root / "models" / "mlflow_run.json").read_text())
    train_tags = MlflowClient(run_info["tracking_uri"]).get_run(run_info["run_id"]).data.tags
    assert train_tags[f"data.md5.preprocess.deps.{tag_path(paths['symlinked'])}"] == digest
