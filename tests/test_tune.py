"""finetune tune: the search space, the study, pruning inside training, the preset; end to end
a killed and resumed study of DVC experiments with MLflow child runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc
import yaml
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from finetune.core.config import compose
from finetune.core.errors import ConfigError
from finetune.core.schema import TuneConfig
from finetune.training.pruning import (
    PRUNED_STEP_ATTR,
    ReportToTrial,
    TrialLink,
    TrialPruned,
    build_pruner,
)
from finetune.tuning import preset
from finetune.tuning.space import check_space, grid, hydra_value, override_args
from finetune.tuning.study import open_study
from finetune.tuning.tune import TrialRow, TuneResult
from tests.conftest import CONF, base_params, config
from tests.helpers import env_with_venv, sh, tiny_project

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tune_spec(**changes: Any) -> TuneConfig:
    return TuneConfig.model_validate({**base_params()["tune"], **changes})


# --------------------------------------------------------------------------- config and space


def test_every_bad_search_is_an_error_before_any_trial() -> None:
    params = base_params()
    lr = {"param": "train.learning_rate", "type": "float", "low": 1e-5, "high": 1e-3, "log": True}
    with pytest.raises(ConfigError, match=r"train.learning_rat is not a key .*learning_rate\?"):
        check_space(tune_spec(space=[{**lr, "param": "train.learning_rat"}]), params)
    as_float = {"param": "train.batch_size", "type": "float", "low": 16, "high": 64, "log": False}
    with pytest.raises(ConfigError, match=r"train.batch_size = 16.0 is not a valid value"):
        check_space(tune_spec(space=[as_float]), params)
    with pytest.raises(ValidationError, match="empty range, low 0.001 is not below high 1e-05"):
        tune_spec(space=[{**lr, "low": 1e-3, "high": 1e-5}])
    with pytest.raises(ValidationError, match="log-scale range needs low > 0"):
        tune_spec(space=[{**lr, "low": 0.0}])
    with pytest.raises(ValidationError, match="only optimise a validation metric"):
        tune_spec(objective={"metric": "test_f1_macro", "direction": "maximize"})
    with pytest.raises(ValidationError, match="direction for val_loss must be minimize"):
        tune_spec(objective={"metric": "val_loss", "direction": "maximize"})
    with pytest.raises(ValidationError, match="space lists train.learning_rate more than once"):
        tune_spec(space=[lr, lr])
    with pytest.raises(ValidationError, match="String should match pattern"):
        tune_spec(space=[{**lr, "param": "data.path"}])
    with pytest.raises(ConfigError, match="grid: train.learning_rate is a float range"):
        grid(tune_spec(space=[lr]).space)
    epochs = {"param": "train.epochs", "type": "int", "low": 1, "high": 4, "log": False}
    batch = {"param": "train.batch_size", "type": "categorical", "choices": [16, 32]}
    assert grid(tune_spec(space=[epochs, batch]).space) == {
        "train.epochs": [1, 2, 3, 4],
        "train.batch_size": [16, 32],
    }


def test_overrides_parse_back_to_the_same_values() -> None:
    values = {"train.learning_rate": 3.5909585479487027e-05, "train.epochs": 3, "x.on": True}
    values |= {"model.name": "tiny-bert", "model.pooling": None, "augment.alpha": "0.1"}
    args = override_args(values)
    assert args[0] == "train.learning_rate=3.5909585479487027e-05"
    assert hydra_value("0.1") == "'0.1'" and hydra_value(None) == "null"
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(args)
    assert {o.key_or_group: o.value() for o in parsed} == values


def test_preset_reproduces_the_trial_params_exactly(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "config.yaml").write_text(
        (conf / "config.yaml")
        .read_text()
        .replace("- optional experiment: null", "- optional experiment: smoke")
    )
    trial = compose(conf, ["train.learning_rate=0.00031", "train.eval_steps=5"])
    assert trial["train"]["max_steps"] == 20, "the workspace's preset is part of the trial"
    target = conf / "experiment" / "tuned.yaml"
    body = preset.write_preset(conf, target, trial, ["best trial 3"])
    text = target.read_text()
    assert text.startswith("# @package _global_\n# best trial 3\n")
    assert body["train"]["learning_rate"] == 0.00031 and body["train"]["max_steps"] == 20
    assert "data" not in body, "only what differs from conf/ is written"
    assert compose(conf, ["experiment=tuned"]) == trial
    with pytest.raises(ConfigError, match="must be in"):
        preset.write_preset(conf, tmp_path / "tuned.yaml", trial, [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-S", "tune.objective.metric=test_accuracy"], "only optimise a validation metric"),
        (["--timeout", "soon"], r"--timeout 'soon': write a number and a unit, e\.g\. 90s"),
        (["--trials", "0"], "tune.trials: Input should be greater than or equal to 1"),
        (["-S", "train.learning_rat=0.1"], "Could not override 'train.learning_rat'"),
        (["--study", "a b"], "tune.study_name: String should match pattern"),
    ],
)
def test_the_command_refuses_bad_input_before_any_trial(
    tmp_path: Path, args: list[str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    from finetune import cli
    from tests.conftest import copy_repo

    root = copy_repo(tmp_path)
    cwd = Path.cwd()
    try:
        assert cli.main(["tune", "--repo", str(root), *args]) == 1
    finally:
        os.chdir(cwd)
    assert re.search(message, caplog.text), caplog.text
    assert not (root / ".optuna").exists(), "no study was created"


# --------------------------------------------------------------------------- study and pruning


def test_a_study_resumed_with_another_search_is_refused(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    spec = tune_spec()
    study = open_study(spec, storage, "s", [])
    assert study.user_attrs["pruner"]["type"] == "median"
    assert open_study(spec, storage, "s", []).study_name == "s", "the same search resumes"
    other = tune_spec(
        space=[{"param": "train.epochs", "type": "int", "low": 1, "high": 2, "log": False}]
    )
    with pytest.raises(ConfigError, match="was started with another search: its space was"):
        open_study(other, storage, "s", [])
    with pytest.raises(ConfigError, match="its overrides was"):
        open_study(spec, storage, "s", ["train.eval_steps=5"])
    pruner_off = tune_spec(pruner={**base_params()["tune"]["pruner"], "type": "none"})
    assert (
        open_study(pruner_off, storage, "s", ["tune.pruner.type=none"]).user_attrs["pruner"]["type"]
        == "none"
    ), "another pruner (or sampler) for the same search is fine"


def test_the_pruner_stops_training_at_an_evaluation() -> None:
    spec = tune_spec(
        pruner={**base_params()["tune"]["pruner"], "type": "threshold", "upper": 1.5}
    ).pruner
    study = optuna.create_study(direction="minimize", pruner=build_pruner(spec))
    trial = study.ask()
    link = TrialLink(trial, "s", "s-trial-0", "val_loss", "parent-id")
    assert link.mlflow_tags() == {
        "tune.study": "s",
        "tune.trial": "0",
        "mlflow.parentRunId": "parent-id",
    }
    callback = ReportToTrial(link)
    state = type("State", (), {"global_step": 5, "max_steps": 20})()
    callback.on_train_begin(None, state, None)
    callback.on_evaluate(None, state, None, metrics={"eval_loss": 1.2, "eval_f1_macro": 0.1})
    state.global_step = 10
    with pytest.raises(TrialPruned, match=r"pruned at step 10 of 20: val_loss 1.8000"):
        callback.on_evaluate(None, state, None, metrics={"eval_loss": 1.8})
    frozen = study.trials[0]
    assert frozen.intermediate_values == {5: 1.2, 10: 1.8}
    assert frozen.user_attrs == {"planned_steps": 20, PRUNED_STEP_ATTR: 10}


def test_the_pruner_does_not_fire_at_the_last_step() -> None:
    """Pruned at step 20 of 20 saved nothing and lost the model: at the last step the value is
    reported and the trial goes on to complete."""
    spec = tune_spec(
        pruner={**base_params()["tune"]["pruner"], "type": "threshold", "upper": 1.5}
    ).pruner
    study = optuna.create_study(direction="minimize", pruner=build_pruner(spec))
    callback = ReportToTrial(TrialLink(study.ask(), "s", "s-trial-0", "val_loss", None))
    state = type("State", (), {"global_step": 20, "max_steps": 20})()
    callback.on_train_begin(None, state, None)
    assert study.trials[0].user_attrs == {"planned_steps": 20}
    callback.on_evaluate(None, state, None, metrics={"eval_loss": 1.8})  # lags: no TrialPruned
    frozen = study.trials[0]
    assert frozen.intermediate_values == {20: 1.8}
    assert PRUNED_STEP_ATTR not in frozen.user_attrs


def test_pruning_savings_count_the_steps_pruned_trials_did_not_train() -> None:
    rows = [
        TrialRow(0, "COMPLETE", 0.8, "s-trial-0", None, 100, 100, {}),
        TrialRow(1, "PRUNED", None, "s-trial-1", None, 100, 25, {}),
        TrialRow(2, "FAIL", None, "s-trial-2", None, 100, None, {}),
    ]
    result = TuneResult("s", "val_f1_macro", "", Path(), rows, rows[0], None, "", 1.0)
    assert result.counts() == {"complete": 1, "pruned": 1, "fail": 1}
    assert result.pruning_savings() == {
        "planned_steps": 200,
        "steps_skipped_by_pruning": 75,
        "share_of_steps_skipped": 0.375,
    }


def test_the_default_search_composes_and_passes_the_schema() -> None:
    cfg = config()
    check_space(cfg.tune, base_params())
    assert {p.param for p in cfg.tune.space} == {
        "train.learning_rate",
        "train.epochs",
        "train.batch_size",
        "train.warmup_ratio",
        "train.weight_decay",
    }


# --------------------------------------------------------------------------- end to end


# Two learning rates x two weight decays on the grid: at most two of any three trials have the
# learning rate that learns, so at least one of them keeps the validation loss above the
# threshold at its first evaluation and is pruned (the tiny model with lr 1e-7 stays at 1.79;
# with 5e-3 it is below 1.74 from step 5 on).
SEARCH = [
    "tune.space=[{param:train.learning_rate,type:categorical,choices:[0.005,1.0e-7]},"
    "{param:train.weight_decay,type:categorical,choices:[0.0,0.01]}]",
    "tune.sampler.type=grid",
    "tune.objective.metric=val_loss",
    "tune.objective.direction=minimize",
    "tune.pruner.type=threshold",
    "tune.pruner.upper=1.77",
    "tune.targets=[evaluate]",
    "train.eval_steps=5",
]


def tune_command(*extra: str) -> list[str]:
    return ["finetune", "tune", "--study", "tiny", *(a for s in SEARCH for a in ("-S", s)), *extra]


def trials(repo: Path) -> list[optuna.trial.FrozenTrial]:
    """The study's trials (none before the tuner created it)."""
    storage = f"sqlite:///{repo / '.optuna' / 'studies.db'}"
    if not (repo / ".optuna" / "studies.db").is_file():
        return []
    try:
        if "tiny" not in optuna.get_all_study_names(storage):
            return []
        return optuna.load_study(study_name="tiny", storage=storage).get_trials()
    except sqlalchemy.exc.IntegrityError:  # the tuner is creating the tables: not there yet
        return []


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tiny_project(tmp_path_factory.mktemp("tune"), tiny_model_dir)
    sh(root, "dvc", "repro", "augment")
    lock = yaml.safe_load((root / "dvc.lock").read_text())  # only what ran here (data, cached)
    lock["stages"] = {k: v for k, v in lock["stages"].items() if k in ("preprocess", "augment")}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    return root


@pytest.mark.slow
def test_killed_study_resumes_prunes_and_its_preset_reproduces_the_best_trial(repo: Path) -> None:
    env = {k: v for k, v in env_with_venv().items() if k not in ("DVC_EXP_NAME", "DVC_ROOT")}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = repo / "tune-1.log"
    with log_path.open("wb") as log:
        first = subprocess.Popen(
            tune_command("--trials", "3"),
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # kill it once trial 0 is done and trial 1 trains
        assert first.poll() is None, log_path.read_text()[-3000:]
        states = [t.state.name for t in trials(repo)]
        if states[:1] in (["COMPLETE"], ["PRUNED"]) and states[1:2] == ["RUNNING"]:
            break
        time.sleep(2)
    else:
        raise AssertionError(f"trial 1 never started:\n{log_path.read_text()[-3000:]}")
    time.sleep(8)  # trial 1's experiment is in the queue's worker
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    resumed = sh(repo, *tune_command("--trials", "3"), timeout=900)
    out = resumed.stdout + resumed.stderr
    assert "trial 1 was running when the last tuner stopped: marked failed" in out
    done = trials(repo)
    states = [t.state.name for t in done]
    assert states[1] == "FAIL" and len(done) == 4, states
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert "PRUNED" in states and "COMPLETE" in states, states
    pruned = [t for t in done if t.state.name == "PRUNED"]
    assert all(t.params["train.learning_rate"] == 1e-7 for t in pruned)
    assert all(t.user_attrs[PRUNED_STEP_ATTR] == 5 for t in pruned)

    # DVC: complete trials are experiments with evaluate's metrics; pruned ones failed in train.
    show = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    exps = {
        rev["name"]: rev
        for baseline in show
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }
    for t in done:
        name = f"tiny-trial-{t.number}"
        assert t.user_attrs["dvc_experiment"] == name and name in exps
        if t.state.name == "COMPLETE":
            metrics = exps[name]["data"]["metrics"]
            assert metrics["metrics/train.json"]["data"]["val_loss"] == t.value
            assert "f1_macro" in metrics["metrics/evaluate.json"]["data"]
        elif t.state.name == "PRUNED":
            assert exps[name]["error"], "a pruned trial's experiment stopped at train"
            log = sh(repo, "dvc", "queue", "logs", name).stdout
            assert "pruned at step 5 of 20" in log and "Running stage 'evaluate'" not in log

    # MLflow: one parent run for the study, each trial's run its child, states tagged.
    client = MlflowClient(f"sqlite:///{repo / '.mlflow' / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("finetune-pipeline").experiment_id
    (parent,) = client.search_runs([exp_id], "tags.`tune.role` = 'parent'")
    assert parent.info.run_name == "tiny" and parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_pruned"] == states.count("PRUNED")
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_trial = {int(r.data.tags["tune.trial"]): r for r in children}
    for t in done:
        if t.state.name in ("COMPLETE", "PRUNED"):
            run = by_trial[t.number]
            assert run.info.run_id == t.user_attrs["mlflow_run_id"]
            assert run.data.tags["tune.state"] == t.state.name
            assert run.info.status == ("FINISHED" if t.state.name == "COMPLETE" else "KILLED")
            assert ("test_f1_macro" in run.data.metrics) == (t.state.name == "COMPLETE")
    # A trial is a `dvc exp run`: its model is logged to its run and nothing is registered,
    # so the registry (empty before) holds no version and no challenger after the study.
    assert not client.search_registered_models(), "a trial registered a model"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "tune")}
    assert {"tune/history.png", "tune/params.png", "tune/summary.json"} <= artifacts

    study_dir = repo / "reports" / "tune" / "tiny"
    summary = json.loads((study_dir / "summary.json").read_text())
    best = min((t for t in done if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert summary["best"]["number"] == best.number
    assert summary["pruning"]["steps_skipped_by_pruning"] == 15 * states.count("PRUNED")
    assert (study_dir / "history.png").read_bytes()[:4] == b"\x89PNG"

    # The preset: dvc exp run -S experiment=tuned trains the best trial's model again.
    tuned = repo / "conf" / "experiment" / "tuned.yaml"
    assert f"trial {best.number} (DVC experiment tiny-trial-{best.number})" in tuned.read_text()
    assert yaml.safe_load(tuned.read_text())["train"]["eval_steps"] == 5
    # -f -s: train really runs (DVC's run cache would restore the trial's outputs otherwise)
    rerun = sh(
        repo, "dvc", "exp", "run", "-f", "-s", "-S", "experiment=tuned", "-n", "again", "train"
    )
    assert "Running stage 'train'" in rerun.stdout, "trained again, not restored from a cache"
    again = json.loads((repo / "reports" / "train" / "metrics.json").read_text())
    assert again["val_loss"] == best.value, "same params, same data: the same model"
    # The trial into the workspace. Outputs of the stages neither this baseline nor the trials
    # ran (error_analysis, export) have nothing to check out, and DVC says so.
    apply = sh(repo, "dvc", "exp", "apply", f"tiny-trial-{best.number}", check=False)
    if apply.returncode != 0:
        missing = apply.stderr.split("Checkout failed for following targets:")[1]
        missing = [line for line in missing.splitlines() if line.strip()][:-2]  # + 2 hint lines
        assert missing and all(
            line.startswith(
                (
                    "reports/error_analysis/",
                    "reports/export/",
                    "metrics/export.json",
                    "models/onnx",
                )
            )
            for line in missing
        ), apply.stderr
    trained = json.loads((repo / "reports" / "train" / "metrics.json").read_text())
    assert trained["val_loss"] == best.value
    applied = yaml.safe_load((repo / "params.yaml").read_text())
    assert applied["train"]["learning_rate"] == best.params["train.learning_rate"]
    assert applied["train"]["weight_decay"] == best.params["train.weight_decay"]

    again = sh(repo, *tune_command("--trials", "3"))
    assert "queued as" not in again.stdout + again.stderr, "3 trials finished: none is added"
