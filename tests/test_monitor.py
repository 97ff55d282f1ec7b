"""finetune monitor: the statistics on synthetic arrays, the prediction log, and the command on
the tiny model (each verdict, exit codes, bad input, MLflow run, retrain trigger)."""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from finetune import cli
from finetune.core.durations import parse_duration
from finetune.core.errors import ConfigError, DataError
from finetune.core.schema import MonitorConfig
from finetune.lifecycle.retrain import read_ledger, unhandled_drift
from finetune.lifecycle.retrain import retrain as retrain_in_process
from finetune.monitoring import drift, performance, predlog, textstats
from finetune.monitoring.monitor import batch_from_frame
from tests.conftest import base_params, config, make_stage_cfg, make_texts, train_tiny

# --------------------------------------------------------------------------- statistics


def gaussians(shift: float, n: int = 300, dim: int = 16, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + shift


def test_domain_classifier_auc_is_chance_for_one_distribution_and_high_for_a_shift() -> None:
    same = drift.domain_classifier(*gaussians(0.0), folds=5, bootstrap=200, level=0.95, seed=0)
    moved = drift.domain_classifier(*gaussians(0.5), folds=5, bootstrap=200, level=0.95, seed=0)
    assert same.low < 0.5 < same.high and same.high < 0.62
    assert moved.low > 0.8 and moved.low <= moved.auc <= moved.high
    assert len(moved.batch_scores) == 300 and len(moved.reference_scores) == 300
    # the batch rows a shifted batch holds score higher than the reference's
    assert moved.batch_scores.mean() > moved.reference_scores.mean() + 0.2


def test_mmd_permutation_p_value_separates_same_from_shifted() -> None:
    same = drift.mmd_test(*gaussians(0.0), permutations=199, max_samples=200, seed=0)
    moved = drift.mmd_test(*gaussians(0.3), permutations=199, max_samples=200, seed=0)
    assert same.p_value > 0.05
    assert moved.p_value == pytest.approx(1 / 200) and moved.mmd2 > same.mmd2 > -1e-6


def test_prediction_drift_chi_square_and_psi() -> None:
    labels = ["a", "b", "c"]
    ref = np.repeat([0, 1, 2], 100)
    same = drift.prediction_drift(ref, np.repeat([0, 1, 2], 50), labels)
    assert same["p_value"] == pytest.approx(1.0) and same["psi"] == pytest.approx(0.0)
    tripled = drift.prediction_drift(ref, np.repeat([0, 1, 2], [150, 25, 25]), labels)
    assert tripled["batch_share"] == {"a": 0.75, "b": 0.125, "c": 0.125}
    expected = (0.75 - 1 / 3) * np.log(0.75 * 3) + 2 * (0.125 - 1 / 3) * np.log(0.125 * 3)
    assert tripled["psi"] == pytest.approx(expected)
    assert tripled["p_value"] < 1e-10
    assert drift.prediction_drift(np.zeros(5, int), np.zeros(7, int), labels)["p_value"] == 1.0


def test_label_free_estimate_covers_the_accuracy_of_labels_drawn_from_the_probabilities() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([0.6, 0.6, 0.6], size=2000)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    est = performance.estimate(probs, draws=300, level=0.95, seed=0)
    real = performance.measured(labels, probs, ["a", "b", "c"])
    assert est["accuracy"] == pytest.approx(probs.max(axis=1).mean())
    assert est["accuracy_low"] <= real["accuracy"] <= est["accuracy_high"]
    assert est["f1_macro_low"] <= real["f1_macro"] <= est["f1_macro_high"]
    assert est["accuracy_high"] - est["accuracy_low"] < 0.06


def test_text_statistics_see_new_words_and_a_new_script() -> None:
    assert textstats.script("Привет, как дела") == "CYRILLIC"
    assert textstats.script("hello there") == "LATIN" and textstats.script("123 !") == "NONE"
    vocab = textstats.vocabulary(["My refund is late", "the parcel"])
    assert vocab == {"my", "refund", "is", "late", "the", "parcel"}
    frame = pd.DataFrame({"script": ["LATIN"] * 4, **{k: [0.0] * 4 for k in textstats.NUMERIC}})
    moved = frame.assign(script=["CYRILLIC", "CYRILLIC", "LATIN", "LATIN"], tokens=[9.0] * 4)
    cmp = textstats.compare(frame, moved)
    assert cmp["script_shift"] == pytest.approx(0.5)
    assert cmp["numeric"]["tokens"]["batch_mean"] == 9.0
    assert cmp["numeric"]["chars"]["ks_p_value"] == 1.0


def test_an_unreachable_mmd_threshold_is_a_config_error() -> None:
    spec = base_params()["monitor"]
    spec = {**spec, "permutations": 99, "thresholds": {**spec["thresholds"], "mmd_p_value": 0.01}}
    with pytest.raises(ValidationError, match="can never be reached: 99 permutations"):
        MonitorConfig.model_validate(spec)


# --------------------------------------------------------------------------- prediction log


def test_prediction_log_round_trip_by_day_and_window(tmp_path: Path) -> None:
    labels = ["billing", "shipping"]
    old = datetime(2026, 11, 20, 12, tzinfo=UTC)
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    predlog.append(tmp_path, ["old text"], np.array([[0.9, 0.1]]), labels, "m v1", now=old)
    probs = np.array([[0.2, 0.8], [np.nan, np.nan]])
    predlog.append(tmp_path, ["new text", ""], probs, labels, "m v2", ["ok", "empty"], now=now)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-11-20", "date=2026-12-01"]
    assert not list(tmp_path.rglob(".*"))  # no temporary file left behind
    everything = predlog.read_log(tmp_path, None)
    assert everything["text"].tolist() == ["old text", "new text", ""]
    week = predlog.read_log(tmp_path, parse_duration("7d", "--since"), now=now)
    assert week["text"].tolist() == ["new text", ""]
    row = week.iloc[0]
    assert row["predicted"] == "shipping" and row["confidence"] == pytest.approx(0.8)
    assert list(row["probabilities"]) == [0.2, 0.8] and list(row["labels"]) == labels
    assert row["model"] == "m v2" and row["time"] == pd.Timestamp(now)
    assert pd.isna(week.iloc[1]["predicted"]) and week.iloc[1]["status"] == "empty"
    assert parse_duration("12h", "--since") == timedelta(hours=12)
    with pytest.raises(ConfigError, match="--since 'soon': write a number and a unit"):
        parse_duration("soon", "--since")
    with pytest.raises(DataError, match="holds no Parquet files"):
        predlog.read_log(tmp_path / "nothing", None)


def _parts(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("date=*/*.parquet"))


def _wait_for(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_served_models_writer_buffers_and_flushes_by_rows_seconds_and_at_close(
    tmp_path: Path,
) -> None:
    """Not one Parquet file per request, written in the request: the writer buffers, and its
    thread writes once flush_rows rows are held, once the oldest is flush_seconds old, and at
    close (shutdown)."""
    labels, probs = ["billing", "shipping"], np.array([[0.3, 0.7]])
    by_rows = predlog.LogWriter(tmp_path / "rows", flush_rows=3, flush_seconds=3600)
    for i in range(2):
        by_rows.append([f"text {i}"], probs, labels, "m")
    time.sleep(0.3)
    assert _parts(tmp_path / "rows") == [], "two requests, three rows to flush: nothing yet"
    by_rows.append(["text 2"], probs, labels, "m")
    assert _wait_for(lambda: len(_parts(tmp_path / "rows")) == 1)
    by_rows.append(["text 3"], probs, labels, "m")
    by_rows.close()  # what the interpreter's exit runs: the last row is not lost
    assert by_rows.close() is None  # twice is fine
    assert predlog.read_log(tmp_path / "rows", None)["text"].tolist() == [
        f"text {i}" for i in range(4)
    ]
    assert [len(pd.read_parquet(p)) for p in _parts(tmp_path / "rows")] in ([3, 1], [1, 3])

    by_time = predlog.LogWriter(tmp_path / "time", flush_rows=1000, flush_seconds=0.3)
    by_time.append(["quiet server"], probs, labels, "m")
    assert _wait_for(lambda: len(_parts(tmp_path / "time")) == 1), "flushed by age"
    by_time.close()
    with pytest.raises(RuntimeError, match="the writer is closed"):
        by_time.append(["late"], probs, labels, "m")
    with pytest.raises(ValueError, match="flush_rows 0 must be >= 1"):
        predlog.LogWriter(tmp_path, flush_rows=0, flush_seconds=1)


def test_retention_deletes_old_days_and_monitor_ignores_older_rows(tmp_path: Path) -> None:
    labels, probs = ["billing", "shipping"], np.array([[0.3, 0.7]])
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for days in (40, 10, 7, 0):
        when = now - timedelta(days=days, hours=1)
        predlog.append(tmp_path, [f"{days} days old"], probs, labels, "m", now=when)
    # monitor's read with monitor.log_retention_days 7: older days deleted, older rows ignored
    frame = predlog.read_log(tmp_path, None, now=now, retention_days=7)
    assert frame["text"].tolist() == ["0 days old"]  # 7 days and 1 hour old: ignored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-11-24", "date=2026-12-01"]
    assert predlog.read_log(tmp_path, timedelta(days=1), now=now)["text"].tolist() == ["0 days old"]
    # the served model's writer expires after each write
    writer = predlog.LogWriter(tmp_path, flush_rows=1, flush_seconds=60, retention_days=1)
    writer.append(["now"], probs, labels, "m")
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == [f"date={datetime.now(UTC):%Y-%m-%d}"]
    with pytest.raises(DataError, match=r"holds no Parquet files \(days older than 1 are del"):
        predlog.read_log(tmp_path, None, now=now + timedelta(days=30), retention_days=1)


# --------------------------------------------------------------------------- the batch


def test_batch_from_frame_drops_empty_texts_and_explains_bad_input() -> None:
    df = pd.DataFrame({"text": ["a b", "", None, "c", "d", "e", "f"], "label": ["x"] * 7})
    batch = batch_from_frame(df, "text", "label", "in.csv", max_texts=100, seed=0)
    assert batch.texts == ["a b", "c", "d", "e", "f"] and batch.empty == 2 and batch.rows == 7
    sampled = batch_from_frame(df, "text", None, "in.csv", max_texts=5, seed=0)
    assert len(sampled.texts) == 5 and sampled.labels is None
    with pytest.raises(DataError, match=r"in.csv: no column 'body' .*pass --text-column"):
        batch_from_frame(df, "body", None, "in.csv", 100, 0)
    with pytest.raises(DataError, match=r"in.csv: no label column 'y'"):
        batch_from_frame(df, "text", "y", "in.csv", 100, 0)
    with pytest.raises(DataError, match=r"in.csv: 1 non-empty text\(s\) .* at least 5"):
        batch_from_frame(df.iloc[:3], "text", None, "in.csv", 100, 0)


# --------------------------------------------------------------------------- the command


OTHER_WORDS = ["quantum", "zebra", "violin", "galaxy", "orchid", "tundra", "saffron", "comet"]


def other_domain(n: int = 60) -> pd.DataFrame:
    """Texts the tiny model's vocabulary has never seen, half of them in Cyrillic."""
    rng = random.Random(5)
    cyrillic = ["привет", "погода", "книга", "музыка", "река", "город"]
    rows = [" ".join(rng.sample(OTHER_WORDS if i % 2 else cyrillic, 4)) for i in range(n)]
    return pd.DataFrame({"text": rows})


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A repository root (dvc.yaml + params.yaml) around a tiny model trained well enough to
    tell the three classes apart (preprocess, train, evaluate), with its own MLflow store."""
    from finetune.evaluation import evaluate

    root = tmp_path_factory.mktemp("monitor")
    cfg = make_stage_cfg(root, tiny_model_dir, make_texts(n_per_class=40))
    cfg["train"].update(epochs=8, learning_rate=1e-2)
    train_tiny(cfg)
    evaluate.run(cfg)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    make_texts(seed=1).to_csv(root / "same.csv", index=False)
    other_domain().to_csv(root / "other.csv", index=False)
    tickets = make_texts(n_per_class=40, seed=2)
    tickets[tickets["label"] == "billing"].to_csv(root / "billing_only.csv", index=False)
    return root


def params(repo: Path) -> dict[str, Any]:
    return yaml.safe_load((repo / "params.yaml").read_text())


def monitor(
    repo: Path, monkeypatch: pytest.MonkeyPatch, name: str, *args: str
) -> tuple[int, dict[str, Any]]:
    monkeypatch.chdir(repo)  # the command moves to the repository root; restored after
    out = repo / "out" / name
    code = cli.main(
        [
            "monitor",
            "--repo",
            str(repo),
            "-m",
            params(repo)["paths"]["model_dir"],
            "-o",
            str(out),
            *args,
        ]
    )
    summary = (
        json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    )
    return code, summary


def test_a_batch_like_the_training_data_is_not_flagged(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, s = monitor(repo, monkeypatch, "same", "-i", "same.csv", "--label-column", "label")
    assert code == 0 and s["drift"] is False and s["reasons"] == []
    assert {"drift", "estimated_accuracy", "accuracy"} <= set(s)
    assert s["input_drift"]["domain_classifier"]["auc_low"] < 0.7
    assert s["batch"] == {"source": "same.csv", "rows": 60, "empty": 0, "texts": 60, "labelled": 60}
    assert s["performance"]["recall"].keys() == s["performance"]["test"]["recall"].keys()
    assert 0 <= s["estimated_accuracy"] <= 1 and s["reference"]["source"] == "workspace"
    page = (repo / "out" / "same" / "report.html").read_text()
    assert "Nothing flagged" in page and "<script" not in page
    assert len(pd.read_csv(repo / "out" / "same" / "to_label.csv")) == 60
    latest = json.loads(Path(params(repo)["paths"]["monitor_latest"]).read_text())
    assert latest["drift"] is False and latest["mlflow_run_id"] == s["mlflow_run_id"]


def test_texts_from_another_domain_are_flagged_with_exit_code_3(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, s = monitor(repo, monkeypatch, "other", "-i", "other.csv")
    assert code == 3 and s["drift"] is True
    flagged = {c["check"] for c in s["checks"] if c["flagged"]}
    assert {"input drift", "script drift"} <= flagged
    assert s["input_drift"]["domain_classifier"]["auc_low"] > 0.9
    assert s["input_drift"]["mmd"]["p_value"] < 0.01
    words = s["input_drift"]["text_statistics"]["numeric"]["new_word_share"]
    assert words["batch_mean"] == 1.0 and words["reference_mean"] < 0.5
    assert "accuracy" not in s  # no labels: only the estimate
    page = (repo / "out" / "other" / "report.html").read_text()
    assert "Drift flagged" in page and "input drift: domain classifier ROC-AUC" in page
    # the most out-of-place texts are the batch's own, with the model's prediction
    assert "zebra" in page or "привет" in page


def test_one_class_three_times_as_frequent_raises_prediction_drift(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, s = monitor(
        repo, monkeypatch, "billing", "-i", "billing_only.csv", "--label-column", "label"
    )
    pred = s["prediction_drift"]
    assert pred["reference_share"]["billing"] == pytest.approx(1 / 3, abs=0.1)
    assert pred["batch_share"]["billing"] > 0.8
    assert code == 3 and any(r.startswith("prediction drift") for r in s["reasons"])
    assert s["performance"]["recall"]["shipping"] is None  # absent from the batch


def test_the_monitoring_run_is_in_mlflow_and_linked_to_the_model_version(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, s = monitor(repo, monkeypatch, "linked", "-i", "other.csv")
    cfg = params(repo)
    client = MlflowClient(tracking_uri=cfg["tracking"]["uri"])
    run = client.get_run(s["mlflow_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == cfg["monitor"]["experiment_name"]
    assert experiment.name.endswith("-monitor")
    assert run.data.tags["monitor.model_run_id"] == s["model"]["run_id"]
    assert run.data.tags["monitor.drift"] == "true" and run.info.status == "FINISHED"
    assert run.data.metrics["domain_auc"] == pytest.approx(
        s["input_drift"]["domain_classifier"]["auc"]
    )
    assert run.data.metrics["drift"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "monitor")}
    assert {"monitor/summary.json", "monitor/report.html", "monitor/to_label.csv"} <= artifacts
    name, version = s["model"]["name"], s["model"]["version"]
    assert name and version
    tags = client.get_model_version(name, version).tags
    assert tags["monitor.last_run_id"] == run.info.run_id and tags["monitor.last_drift"] == "true"
    # the registry URI resolves to the same version and run
    code, by_uri = monitor(
        repo, monkeypatch, "uri", "-m", f"models:/{name}/{version}", "-i", "same.csv"
    )
    assert by_uri["model"]["run_id"] == s["model"]["run_id"] and code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "missing.csv"], "input file missing.csv does not exist"),
        (["-i", "same.csv", "--text-column", "body"], "same.csv: no column 'body'"),
        (["-i", "same.csv", "--label-column", "y"], "same.csv: no label column 'y'"),
        (["-i", "empty.csv"], "empty.csv is empty"),
        (["-i", "garbage.csv"], "garbage.csv: cannot read it as csv"),
        (["-i", "strange.csv", "--label-column", "label"], r"label\(s\) \['refunds'\]"),
        (["--log", "nolog"], "prediction log nolog holds no Parquet files"),
        (["-i", "same.csv", "--log", "nolog"], "give the batch as -i FILE or --log DIR"),
    ],
)
def test_bad_input_exits_1_with_the_file_and_the_fix(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    args: list[str],
    message: str,
) -> None:
    (repo / "empty.csv").write_text("")
    (repo / "garbage.csv").write_bytes(b'text\n"unterminated\x00\xff\xfe')
    strange = make_texts(seed=3).assign(label="refunds")
    strange.to_csv(repo / "strange.csv", index=False)
    with caplog.at_level("ERROR"):
        code, summary = monitor(repo, monkeypatch, "bad", *args)
    assert code == 1 and summary == {}
    logged = [r.getMessage() for r in caplog.records]
    assert any(re.search(message, line) for line in logged), logged


def test_a_model_trained_against_another_store_names_the_store_and_the_fix(
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """models/model trained against one store, monitored against another: not MLflow's bare
    'Run with id=... not found', but the URI searched and MLFLOW_TRACKING_URI / .services/env."""
    other = tmp_path / "other"
    other.mkdir()
    cfg = params(repo)
    cfg["tracking"]["uri"] = f"sqlite:///{other / 'mlflow.db'}"
    (other / "dvc.yaml").write_text("stages: {}\n")
    (other / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (other / "same.csv").write_text((repo / "same.csv").read_text())
    with caplog.at_level("ERROR"):
        code, summary = monitor(other, monkeypatch, "elsewhere", "-i", "same.csv")
    assert code == 1 and summary == {}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert re.search(
        rf"training run \w+ of .* is not in the MLflow store searched, "
        rf"{re.escape(cfg['tracking']['uri'])} .* likely trained against another tracking "
        r"server.*`source \.services/env`.*MLFLOW_TRACKING_URI",
        logged,
    ), logged


def test_predict_logs_and_monitor_reads_the_log(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir = repo / "logs" / "predictions"
    monkeypatch.chdir(repo)
    model = params(repo)["paths"]["model_dir"]
    for name in ("same.csv", "other.csv"):
        args = ["predict", "--repo", str(repo), "-m", model, "-i", name, "-o", f"{name}.out.csv"]
        assert cli.main([*args, "--log", str(log_dir)]) == 0
    logged = predlog.read_log(log_dir, parse_duration("1h", "--since"))
    assert len(logged) == 120 and set(logged["model"]) == {model}
    out = pd.read_csv(repo / "same.csv.out.csv")
    assert logged["predicted"].iloc[:60].tolist() == out["predicted"].tolist()
    assert np.allclose([sum(p) for p in logged["probabilities"]], 1.0, atol=1e-4)
    code, s = monitor(repo, monkeypatch, "from-log", "--log", str(log_dir), "--since", "1h")
    assert s["batch"]["texts"] == 120 and s["batch"]["source"].startswith("log ")
    assert code == 3  # half of it is the other domain


def test_predict_logs_by_config_only_when_asked(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = params(repo)
    log_dir = Path(cfg["paths"]["prediction_log"])
    monkeypatch.chdir(repo)
    args = ["predict", "--repo", str(repo), "-m", cfg["paths"]["model_dir"], "-i", "same.csv"]
    before = len(list(log_dir.rglob("*.parquet"))) if log_dir.exists() else 0
    assert cli.main([*args, "-o", "a.csv"]) == 0  # monitor.log_predictions is false
    assert (len(list(log_dir.rglob("*.parquet"))) if log_dir.exists() else 0) == before
    cfg["monitor"]["log_predictions"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        assert cli.main([*args, "-o", "b.csv"]) == 0
        assert len(list(log_dir.rglob("*.parquet"))) == before + 1
        assert cli.main([*args, "-o", "c.csv", "--no-log"]) == 0
        assert len(list(log_dir.rglob("*.parquet"))) == before + 1
    finally:
        cfg["monitor"]["log_predictions"] = False
        (repo / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


# --------------------------------------------------------------------------- retrain trigger


def test_retrain_when_drift_waits_for_an_unhandled_drift_verdict(tmp_path: Path) -> None:
    latest = tmp_path / "latest.json"
    assert unhandled_drift(latest, {"files": {}}) is None
    latest.write_text(json.dumps({"drift": False, "mlflow_run_id": "r1"}))
    assert unhandled_drift(latest, {"files": {}}) is None
    latest.write_text(json.dumps({"drift": True, "mlflow_run_id": "r2", "summary": "s"}))
    assert unhandled_drift(latest, {"files": {}})["mlflow_run_id"] == "r2"
    assert unhandled_drift(latest, {"files": {}, "drift_handled": "r2"}) is None
    latest.write_text("{broken")
    with pytest.raises(DataError, match="latest.json is not valid JSON"):
        unhandled_drift(latest, {})
    latest.write_text(json.dumps({"drift": True, "mlflow_run_id": "r3", "summary": "s"}))
    cfg = config(
        {
            "paths.retrain_ledger": "ledger.json",
            "paths.monitor_latest": "latest.json",
            "data.path": "raw.csv",
        }
    )
    spec = cfg.retrain.model_copy(update={"incoming": "in/*.csv", "lock_file": "r.lock"})
    # new-data (the default) ignores the verdict; drift with it handled does nothing either
    assert retrain_in_process(tmp_path, cfg, spec).status == "no-new-data"
    (tmp_path / "ledger.json").write_text(json.dumps({"files": {}, "drift_handled": "r3"}))
    drift_spec = spec.model_copy(update={"when": "drift"})
    assert retrain_in_process(tmp_path, cfg, drift_spec).status == "no-trigger"
    assert read_ledger(tmp_path / "ledger.json")["drift_handled"] == "r3"
