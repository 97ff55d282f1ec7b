"""Registry lifecycle: aliases after training and the promotion gate (tiny model, in-process)."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from finetune.augment import augment
from finetune.core.errors import ConfigError
from finetune.core.schema import PromotionConfig
from finetune.data import preprocess
from finetune.registry import aliases as registry
from finetune.registry import gate, report
from finetune.registry.gate import Decision, ModelScore, decide
from tests.conftest import REPO, config, make_stage_cfg, make_texts, train_stage, typed


def s(version: str, f1: float, **recall: float) -> ModelScore:
    return ModelScore(version, f1, f1, recall, 100)


def GateSpec(
    min_f1_gain: float = 0.005, max_recall_drop: float = 0.05, require_beat_baseline: bool = False
) -> PromotionConfig:
    """The committed promotion section with these margins (the baseline guard off: the tiny
    model never beats TF-IDF; the guard's own tests turn it on)."""
    return config(
        {
            "promotion.min_f1_gain": min_f1_gain,
            "promotion.max_recall_drop": max_recall_drop,
            "promotion.require_beat_baseline": require_beat_baseline,
        }
    ).promotion


def test_first_model_is_promoted() -> None:
    d = decide(s("1", 0.5, a=0.5), None, GateSpec())
    assert d.promote and "first model" in d.reason


def test_gain_at_least_margin_and_no_recall_drop_promotes() -> None:
    d = decide(s("2", 0.81, a=0.8, b=0.82), s("1", 0.80, a=0.8, b=0.8), GateSpec(0.01, 0.05))
    assert d.promote and d.f1_gain == pytest.approx(0.01)
    assert d.recall_drops == {"a": pytest.approx(0.0), "b": pytest.approx(-0.02)}


def test_gain_below_margin_keeps_the_champion() -> None:
    d = decide(s("2", 0.805, a=0.9), s("1", 0.80, a=0.8), GateSpec(0.01, 0.05))
    assert not d.promote and d.outcome == "kept"
    assert "below the required +0.0100" in d.reason


def test_one_class_recall_drop_keeps_the_champion_despite_better_f1() -> None:
    d = decide(s("2", 0.90, a=0.99, b=0.70), s("1", 0.80, a=0.80, b=0.80), GateSpec(0.01, 0.05))
    assert not d.promote and d.worst_class == "b"
    assert "recall of class 'b' drops by 0.1000" in d.reason


def test_a_new_class_cannot_drop_and_a_lost_class_drops_fully() -> None:
    new = decide(s("2", 0.9, a=0.9, c=0.5), s("1", 0.8, a=0.9), GateSpec(0.0, 0.05))
    assert new.promote and new.recall_drops["c"] == pytest.approx(-0.5)
    lost = decide(s("2", 0.9, a=0.9), s("1", 0.8, a=0.9, c=0.5), GateSpec(0.0, 0.05))
    assert not lost.promote and lost.worst_class == "c"


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"min_f1_gain": 2}, r"promotion\.min_f1_gain=2: Input should be less than or equal to 1"),
        ({"max_recall_drop": "x"}, r"promotion\.max_recall_drop=\"x\": Input should be a valid"),
        ({"margin": 0.1}, r"unknown key promotion\.margin"),
    ],
)
def test_gate_config_errors(cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config({f"promotion.{k}": v for k, v in cfg.items()})


def test_report_renders_the_numbers() -> None:
    d = decide(s("3", 0.70, a=0.6), s("2", 0.80, a=0.8), GateSpec(0.0, 0.05))
    text = report.render_report(d, "m", GateSpec(0.0, 0.05))
    assert "m v3 KEPT" in text and "| macro-F1 | 0.7000 | 0.8000 | -0.1000 |" in text
    assert "| recall a | 0.6000 | 0.8000 | -0.2000 |" in text
    assert isinstance(Decision.as_dict(d), dict)


# --------------------------------------------------------------------------- with MLflow


@pytest.fixture(scope="module")
def trained_cfg(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """Tiny data preprocessed and one model trained and registered (version 1)."""
    cfg = make_stage_cfg(tmp_path_factory.mktemp("registry"), tiny_model_dir, make_texts())
    cfg["augment"]["enabled"] = False
    cfg["train"]["epochs"] = 1
    cfg["paths"]["promotion_report"] = str(Path(cfg["paths"]["model_dir"]).parent / "promo.md")
    cfg["paths"]["promotion_decision"] = str(Path(cfg["paths"]["model_dir"]).parent / "promo.json")
    for stage in (preprocess, augment, train_stage):
        stage.run(cfg)
    return cfg


def aliases(cfg: dict[str, Any]) -> dict[str, str | None]:
    client = registry.client(typed(cfg).tracking)
    name = cfg["tracking"]["registered_model_name"]
    return {
        a: (str(v.version) if (v := registry.alias_version(client, name, a)) else None)
        for a in (registry.CHAMPION, registry.CHALLENGER)
    }


def train_again(cfg: dict[str, Any], lr: float) -> str:
    again = copy.deepcopy(cfg)
    again["train"]["learning_rate"] = lr
    train_stage.run(again)
    return json.loads(Path(cfg["paths"]["run_info"]).read_text())["run_id"]


@pytest.mark.slow
def test_first_trained_model_is_challenger_and_champion(trained_cfg: dict[str, Any]) -> None:
    assert aliases(trained_cfg) == {"champion": "1", "challenger": "1"}
    run_id = json.loads(Path(trained_cfg["paths"]["run_info"]).read_text())["run_id"]
    tags = MlflowClient(trained_cfg["tracking"]["uri"]).get_run(run_id).data.tags
    assert tags["promotion.outcome"] == "promoted"
    assert "first model" in tags["promotion.reason"]
    result = gate.apply_gate(typed(trained_cfg))
    assert result.decision is None and "already the champion" in str(result.skipped)


@pytest.mark.slow
def test_registration_source_is_the_logged_model_or_an_older_runs_artifacts(
    trained_cfg: dict[str, Any], tmp_path: Path
) -> None:
    """MLflow 3 logs the model as a LoggedModel: registered as ``models:/<its id>`` (no
    "runs:/ URI" warning); a run that holds the model in its artifacts (logged before MLflow 3)
    is registered from ``runs:/<run>/model``."""
    from finetune.tracking.models import MODEL_ARTIFACT

    client = MlflowClient(trained_cfg["tracking"]["uri"])
    run_id = json.loads(Path(trained_cfg["paths"]["run_info"]).read_text())["run_id"]
    uri = registry.logged_model_uri(client, run_id, MODEL_ARTIFACT)
    assert uri.startswith("models:/"), uri
    logged = client.get_logged_model(uri.removeprefix("models:/"))
    assert logged.source_run_id == run_id and logged.name == MODEL_ARTIFACT
    version = registry.alias_version(
        client, trained_cfg["tracking"]["registered_model_name"], "champion"
    )
    assert version is not None and version.source == uri, "registered from it"

    older = tmp_path / MODEL_ARTIFACT
    older.mkdir()
    (older / "MLmodel").write_text("flavors: {}\n")
    run = client.create_run(client.get_run(run_id).info.experiment_id)
    client.log_artifacts(run.info.run_id, str(older), MODEL_ARTIFACT)
    client.set_terminated(run.info.run_id)
    found = registry.logged_model_uri(client, run.info.run_id, MODEL_ARTIFACT)
    assert found == f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}"
    client.delete_run(run.info.run_id)  # the module's other tests see the runs they made


@pytest.mark.slow
def test_gate_promotes_then_keeps(trained_cfg: dict[str, Any]) -> None:
    run2 = train_again(trained_cfg, 3e-3)
    assert aliases(trained_cfg) == {"champion": "1", "challenger": "2"}
    promoted = gate.apply_gate(typed(trained_cfg), GateSpec(min_f1_gain=-1, max_recall_drop=1))
    assert promoted.decision is not None and promoted.decision.promote
    assert aliases(trained_cfg) == {"champion": "2", "challenger": "2"}
    client = MlflowClient(trained_cfg["tracking"]["uri"])
    tags = client.get_run(run2).data.tags
    assert tags["promotion.outcome"] == "promoted" and tags["promotion.champion_version"] == "1"
    f1_1, f1_2 = (
        float(tags["promotion.champion_f1_macro"]),
        float(tags["promotion.challenger_f1_macro"]),
    )
    assert float(tags["promotion.f1_gain"]) == pytest.approx(f1_2 - f1_1, abs=1e-5)
    version_tags = client.get_model_version(
        trained_cfg["tracking"]["registered_model_name"], "2"
    ).tags
    assert version_tags["promotion.outcome"] == "promoted"

    run3 = train_again(trained_cfg, 1e-3)
    kept = gate.apply_gate(typed(trained_cfg), GateSpec(min_f1_gain=1.0, max_recall_drop=1))
    assert kept.decision is not None and not kept.decision.promote
    assert aliases(trained_cfg) == {"champion": "2", "challenger": "3"}
    tags = client.get_run(run3).data.tags
    assert (
        tags["promotion.outcome"] == "kept"
        and "below the required +1.0000" in tags["promotion.reason"]
    )
    # Both models were scored on the same, current test split.
    decision = json.loads(Path(trained_cfg["paths"]["promotion_decision"]).read_text())
    assert decision["outcome"] == "kept"
    assert decision["challenger"]["num_examples"] == decision["champion"]["num_examples"] > 0
    assert not math.isnan(decision["champion"]["f1_macro"])
    report = Path(trained_cfg["paths"]["promotion_report"]).read_text()
    assert "v3 KEPT" in report and "champion v2" in report
    artifacts = [a.path for a in client.list_artifacts(run3, "promotion")]
    assert artifacts == ["promotion/promo.md"]


@pytest.mark.slow
def test_gate_without_registered_name_says_what_to_set(trained_cfg: dict[str, Any]) -> None:
    cfg = copy.deepcopy(trained_cfg)
    cfg["tracking"]["registered_model_name"] = None
    with pytest.raises(ConfigError, match="tracking.registered_model_name is null"):
        gate.apply_gate(typed(cfg))


# --------------------------------------------------------------------------- the baseline guard


def test_a_model_below_the_baseline_is_refused_by_the_gate() -> None:
    from finetune.evaluation.baseline import baseline_gap, baseline_standing

    gap = baseline_gap({"val_f1_macro": 0.50, "baseline_val_f1_macro": 0.91})
    assert gap is not None and "0.5000 vs 0.9100" in gap
    assert baseline_gap({"val_f1_macro": 0.92, "baseline_val_f1_macro": 0.91}) is None
    assert baseline_gap({"val_f1_macro": 0.92}) is None  # a run from before the guard
    # within one validation example's worth (1/126: sms_spam's 64-shot cut, 2 errors each) is
    # a tie: not refused, but not "beats" either
    tie = {"val_f1_macro": 0.98412298, "baseline_val_f1_macro": 0.98412698,
           "baseline_tolerance": 1 / 126}  # fmt: skip
    assert baseline_standing(tie) == "ties" and baseline_gap(tie) is None
    worse = {**tie, "val_f1_macro": 0.97}
    assert baseline_standing(worse) == "loses" and baseline_gap(worse) is not None
    on = GateSpec(require_beat_baseline=True)
    first = decide(s("1", 0.5, a=0.5), None, on, below_baseline=gap)
    better = decide(s("2", 0.95, a=0.95), s("1", 0.5, a=0.5), on, below_baseline=gap)
    for d in (first, better):
        assert not d.promote and d.reason.startswith("the challenger is worse than the TF-IDF")
    assert decide(s("1", 0.5, a=0.5), None, GateSpec(), below_baseline=gap).promote
    tags = gate.decision_tags(better)
    assert tags["promotion.champion_version"] == "1" and "promotion.f1_gain" not in tags


def test_a_model_that_wins_on_a_tiny_validation_split_but_loses_on_test_is_refused() -> None:
    """sms_spam's 8-shot cut: 16 validation rows said the model beats TF-IDF, the 1,047 test
    rows (logged by evaluate into the same run, which the gate reads) said it loses."""
    import numpy as np

    from finetune.evaluation.baseline import baseline_gap, baseline_standing, verdict

    train = {"val_f1_macro": 1.0, "baseline_val_f1_macro": 0.875, "baseline_tolerance": 1 / 16}
    assert baseline_standing(train) == "beats" and baseline_gap(train) is None  # at registration
    run = {**train, "test_f1_macro": 0.7746, "baseline_test_f1_macro": 0.8048,
           "test_num_examples": 1047.0}  # fmt: skip
    assert baseline_standing(run) == "loses" and baseline_standing(run, "val") == "beats"
    gap = baseline_gap(run)
    assert gap is not None and "on test macro-F1 (0.7746 vs 0.8048)" in gap
    assert "validation" not in gap
    within_one = {**run, "test_f1_macro": 0.8048 - 0.5 / 1047}
    assert baseline_standing(within_one) == "ties" and baseline_gap(within_one) is None
    # without the test row count there is no tolerance to judge test by: validation alone
    uncounted = {k: v for k, v in run.items() if k != "test_num_examples"}
    assert baseline_standing(uncounted, "test") is None and baseline_gap(uncounted) is None
    assert baseline_standing(uncounted) == "beats"
    ev = verdict(1.0, 0.875, train, np.array([8, 8]), 0.0, True, test=(0.7746, 0.8048, 1047))
    assert ev["beats_baseline"] is False
    assert "(validation 1.0000 vs 0.8750 (beats); test 0.7746 vs 0.8048 (loses))" in str(
        ev["baseline_warning"]
    )
    assert "a median of 8 training examples per class" in " ".join(ev["what_to_try"])
    assert "TF-IDF baseline, which wins on this data" in ev["what_to_try"][-1]
    # sms_spam-64shot: a tie on its 126 validation rows, a win on test: the baseline does not win
    tie = {"val_f1_macro": 0.9841, "baseline_val_f1_macro": 0.9841, "baseline_tolerance": 1 / 126}
    tied = verdict(0.9841, 0.9841, tie, np.array([60, 61]), 0.0, True, test=(0.94, 0.92, 1047))
    assert tied["beats_baseline"] is False and "(ties)" in str(tied["baseline_warning"])
    assert "which ties the model on validation and is smaller" in tied["what_to_try"][-1]
    # imdb_subset: 14% of test texts past 512 tokens with max_length already at the backbone's
    # 512 positions: "raise model.max_length" would be no advice
    cut = verdict(1.0, 0.875, train, np.array([8, 8]), 0.14, True, test=(0.7, 0.8, 1047))
    assert "raise model.max_length" in " ".join(cut["what_to_try"])
    at_limit = verdict(
        1.0, 0.875, train, np.array([8, 8]), 0.14, True, test=(0.7, 0.8, 1047), length_limit=512
    )
    tips = " ".join(at_limit["what_to_try"])
    assert "raise model.max_length" not in tips and "backbone's 512-token limit" in tips
    assert "try model.long_text: head_tail" in tips, "the model read only the head"
    both = verdict(
        1.0, 0.875, train, np.array([8, 8]), 0.14, True, (0.7, 0.8, 1047), 512, "head_tail"
    )
    assert "model.long_text: head_tail): part of each is never read" in " ".join(
        both["what_to_try"]
    )


@pytest.mark.slow
def test_first_model_below_the_baseline_is_not_made_champion(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The tiny model scores chance on validation, TF-IDF learns the tiny data: the first
    version is challenger only, tagged with the reason, and the gate refuses it too."""
    from finetune.evaluation import evaluate

    cfg = make_stage_cfg(tmp_path, tiny_model_dir, make_texts())
    cfg["augment"]["enabled"] = False
    cfg["train"].update({"epochs": 1, "learning_rate": 1e-12})
    cfg["promotion"]["require_beat_baseline"] = True
    cfg["paths"]["promotion_report"] = str(tmp_path / "promo.md")
    cfg["paths"]["promotion_decision"] = str(tmp_path / "promo.json")
    for stage in (preprocess, augment, train_stage):
        stage.run(cfg)
    metrics = json.loads(Path(cfg["paths"]["train_report"]).read_text())
    assert metrics["beats_baseline"] is False
    assert metrics["baseline_val_f1_macro"] > metrics["val_f1_macro"]
    assert aliases(cfg) == {"champion": None, "challenger": "1"}
    run_id = json.loads(Path(cfg["paths"]["run_info"]).read_text())["run_id"]
    tags = MlflowClient(cfg["tracking"]["uri"]).get_run(run_id).data.tags
    assert tags["promotion.outcome"] == "kept"
    assert tags["promotion.reason"].startswith("is worse than the TF-IDF baseline")
    result = gate.apply_gate(typed(cfg))
    assert result.decision is not None and not result.decision.promote
    assert result.champion_after is None
    assert "is worse than the TF-IDF baseline" in Path(cfg["paths"]["promotion_report"]).read_text()
    # evaluate says so in the first keys of its metrics, with what to try
    ev = evaluate.run(cfg)
    assert list(ev)[:3] == ["beats_baseline", "baseline_warning", "what_to_try"]
    assert ev["beats_baseline"] is False and "does NOT beat" in ev["baseline_warning"]
    assert any("examples per class" in tip for tip in ev["what_to_try"])


# --------------------------------------------------------------------------- one owner, one lock


@pytest.mark.slow
def test_a_study_trial_or_dvc_experiment_leaves_the_challenger_unchanged(
    trained_cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tune trial is a `dvc exp run`, for which DVC sets DVC_EXP_NAME: the train stage logs
    the model to its run but registers nothing, so after a study the challenger is what it was
    (not the trial that finished last). Unchanged rather than the best trial: a trial's model
    is one point of a search; it becomes a candidate once its settings are applied and trained
    in the workspace (`dvc exp apply`, `dvc repro`), which registers it."""
    client = MlflowClient(trained_cfg["tracking"]["uri"])
    name = trained_cfg["tracking"]["registered_model_name"]
    before = aliases(trained_cfg), len(client.search_model_versions(f"name='{name}'"))
    trial = copy.deepcopy(trained_cfg)
    for key in ("model_dir", "run_info", "train_report"):  # the trial's own workspace outputs
        trial["paths"][key] = str(Path(trial["paths"][key]).with_name(f"trial-{key}"))
    monkeypatch.setenv("DVC_EXP_NAME", "study-trial-3")
    train_stage.run(trial)
    run_id = json.loads(Path(trial["paths"]["run_info"]).read_text())["run_id"]
    assert client.list_artifacts(run_id, "model"), "the trial's model is logged to its run"
    assert (aliases(trained_cfg), len(client.search_model_versions(f"name='{name}'"))) == before


@pytest.mark.slow
def test_registering_after_export_points_the_onnx_version_at_the_registered_one(
    trained_cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """finetune retrain runs `dvc repro` (train and export) and registers afterwards: export
    found no registered version and tagged the ONNX model with the run's URI; registering the
    PyTorch model then points the ONNX version's source_model at it."""
    from finetune.registry.register import register_run

    client = MlflowClient(trained_cfg["tracking"]["uri"])
    name = trained_cfg["tracking"]["registered_model_name"]
    onnx_name = typed(trained_cfg).export.registered_model_name
    monkeypatch.setenv("FINETUNE_NO_REGISTER", "the retrain registers")
    run_id = train_again(trained_cfg, 5e-3)
    runs_uri = f"runs:/{run_id}/model"
    if not client.search_registered_models(f"name='{onnx_name}'"):
        client.create_registered_model(onnx_name)
    onnx = client.create_model_version(
        onnx_name,
        runs_uri,
        run_id,
        tags={"source_model": runs_uri},
        description=f"ONNX (int8, dynamic) of {runs_uri}; served by onnxruntime",
    )
    version = register_run(typed(trained_cfg), run_id)
    after = client.get_model_version(onnx_name, onnx.version)
    assert after.tags["source_model"] == f"{name} v{version}"
    assert after.description == f"ONNX (int8, dynamic) of {name} v{version}; served by onnxruntime"


@pytest.fixture(scope="module")
def two_trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """Preprocessed data in a workspace whose registry is empty; and a config for a second
    training with its own outputs, sharing the store and the registry lock."""
    cfg = make_stage_cfg(tmp_path_factory.mktemp("concurrent"), tiny_model_dir, make_texts())
    cfg["augment"]["enabled"] = False
    cfg["train"].update({"epochs": 1, "progress_bar": False})
    for stage in (preprocess, augment):
        stage.run(cfg)
    second = copy.deepcopy(cfg)
    second["train"]["learning_rate"] = 3e-3
    for key in ("model_dir", "run_info", "train_report", "checkpoints_dir"):
        second["paths"][key] = str(Path(cfg["paths"][key]).with_name(f"second-{key}"))
    return {"first": cfg, "second": second}


TRAIN_STAGE = """
import json, sys
from finetune.core.runner import configure_logging
from finetune.core.store import check_tracking
from tests.conftest import train_and_register, typed
configure_logging()
cfg = json.loads(open(sys.argv[1]).read())
check_tracking(typed(cfg).tracking)  # as the stage runner does first
train_and_register(cfg)
"""


@pytest.mark.slow
def test_two_concurrent_trainings_on_an_empty_registry_make_one_champion(
    two_trained: dict[str, Any], tmp_path: Path
) -> None:
    """Two train stages (two queue workers, two clones on one store) finish at the same time on
    an empty registry: the registry lock makes one the first model (champion) and the other
    find it, so exactly one version carries the first-model decision."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DVC_EXP_NAME", None)
    procs = []
    for which in ("first", "second"):
        params = tmp_path / f"{which}.json"
        params.write_text(json.dumps(two_trained[which]))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", TRAIN_STAGE, str(params)],
                cwd=REPO,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    cfg = two_trained["first"]
    client = MlflowClient(cfg["tracking"]["uri"])
    name = cfg["tracking"]["registered_model_name"]
    versions = client.search_model_versions(f"name='{name}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    first_models = [
        str(v.version) for v in versions if v.tags.get("promotion.outcome") == "promoted"
    ]
    assert len(first_models) == 1, "exactly one version was made the first champion"
    (champion,) = first_models
    assert aliases(cfg) == {"champion": champion, "challenger": {"1": "2", "2": "1"}[champion]}


@pytest.mark.slow
def test_the_gate_aborts_with_nothing_moved_when_the_champion_moves_meanwhile(
    two_trained: dict[str, Any],
) -> None:
    """The gate reads the champion, scores, and reads both aliases again before it moves one:
    a champion moved in between (another machine on a remote server, a manual move) stops it
    with nothing recorded, written or moved."""
    import mlflow

    cfg = typed(two_trained["first"])
    name = registry.model_name(cfg.tracking)
    client = registry.client(cfg.tracking)
    before = aliases(two_trained["first"])
    spec = GateSpec(min_f1_gain=-1, max_recall_drop=1)  # it would promote
    pending = gate.evaluate_aliases(cfg, spec, name, client)
    assert isinstance(pending, gate.Pending) and pending.decision.promote
    # meanwhile, outside the lock: the champion's model registered again and made champion
    champion_run = client.get_model_version(name, before["champion"]).run_id
    moved = mlflow.register_model(f"runs:/{champion_run}/model", name).version
    client.set_registered_model_alias(name, "champion", moved)
    with pytest.raises(
        gate.ChampionMoved,
        match=rf"moved while the gate compared challenger v{before['challenger']} with champion "
        rf"v{before['champion']} \(champion v{before['champion']} -> v{moved}; .*nothing was "
        r"recorded or moved",
    ):
        gate.commit(cfg, spec, name, client, pending)
    assert aliases(two_trained["first"]) == {
        "champion": str(moved),
        "challenger": before["challenger"],
    }
    tags = client.get_model_version(name, before["challenger"]).tags
    assert "promotion.decided_at" not in tags, "no decision recorded"
    assert not Path(cfg.paths.promotion_report).exists(), "no report written"


def test_promote_during_a_retrain_waits_for_the_lock_then_says_who_holds_it(
    tmp_path: Path,
) -> None:
    """The gate takes the registry lock a retrain holds for its whole run: without waiting it
    stops at once (`finetune promote` exits 75), with --wait it waits, and it never reads the
    registry meanwhile (this store does not exist)."""
    from finetune.registry.lock import RegistryLocked, exclusive_lock, holder_file, lock_path

    cfg = config(
        {
            "retrain.lock_file": str(tmp_path / "registry.lock"),
            "tracking.uri": f"sqlite:///{tmp_path / 'never-opened.db'}",
        }
    )
    path = lock_path(cfg)
    with exclusive_lock(path):  # as `finetune retrain` holds it
        holder_file(path).write_text("pid 4242 since test: finetune retrain")
        with pytest.raises(RegistryLocked, match=r"\(pid 4242 since test: finetune retrain; "):
            gate.apply_gate(cfg, wait_s=0)
        began = time.monotonic()
        with pytest.raises(RegistryLocked, match=r"waited 1 s\. Nothing was done"):
            gate.apply_gate(cfg, wait_s=1)
        assert time.monotonic() - began >= 1
    assert not (tmp_path / "never-opened.db").exists()
