"""finetune tune on the demo data: the default config against the tuned preset.

In a git clone of this repository's HEAD (the repository itself is not touched):

1. ``dvc repro augment`` and a commit (the trials' common baseline);
2. the default config: ``dvc exp run -n default evaluate`` (validation and test macro-F1, time);
3. ``finetune tune --trials 12`` over conf/tune/'s space (learning rate, epochs, batch size,
   warmup, weight decay; TPE, median pruner), each trial evaluated on validation *and* test;
4. the preset, trained again: ``dvc exp run --temp -f -s -S experiment=tuned -n tuned train
   evaluate``: the same validation metric as the best trial? and its test figures.

Prints the figures and a final JSON line. ``--trials``, ``--eval-steps`` and ``--workdir`` change
the run; ``--targets`` the stages each trial runs (default: evaluate, no error analysis).

    python bench/tune_demo.py                      # about 25 minutes on 2 cores
    python bench/tune_demo.py --trials 4           # a shorter study
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, cpu_flags, setup_logging

log = logging.getLogger("bench")


def sh(cwd: Path, *args: str, env: dict[str, str]) -> float:
    """Run a command (its output to this terminal); its wall time in seconds."""
    began = time.perf_counter()
    log.info("$ %s", " ".join(args))
    subprocess.run(args, cwd=cwd, env=env, check=True)
    return time.perf_counter() - began


def experiment_metrics(work: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for baseline in json.loads(out):
        for group in baseline.get("experiments") or []:
            for rev in group["revs"]:
                if rev.get("name") == name:
                    metrics = rev["data"]["metrics"]
                    train = metrics["metrics/train.json"]["data"]  # the headlines
                    test = metrics["metrics/evaluate.json"]["data"]
                    return {
                        "val_f1_macro": train["val_f1_macro"],
                        "val_accuracy": train["val_accuracy"],
                        "test_f1_macro": test["f1_macro"],
                        "test_accuracy": test["accuracy"],
                        "epochs": train["epochs"],
                        "steps": train["steps"],
                    }
    raise SystemExit(f"experiment {name} not in dvc exp show")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--eval-steps", type=int, default=10, help="train.eval_steps in trials")
    parser.add_argument("--targets", default="[evaluate]")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/finetune-tune-demo"))
    args = parser.parse_args()
    setup_logging()
    work = args.workdir / "repo"
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(work / "src"),  # the clone's code, whatever the venv points at
        "HF_HUB_OFFLINE": "1",
    }
    for var in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_ROOT"):
        env.pop(var, None)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    data_s = sh(work, "dvc", "repro", "augment", env=env)
    sh(work, *git, "commit", "-qam", "bench: data", "--allow-empty", env=env)

    default_s = sh(work, "dvc", "exp", "run", "--temp", "-n", "default", "evaluate", env=env)
    default = experiment_metrics(work, "default", env)

    tune_s = sh(
        work,
        "finetune",
        "tune",
        "--trials",
        str(args.trials),
        "--study",
        "demo",
        "-S",
        f"train.eval_steps={args.eval_steps}",
        "-S",
        f"tune.targets={args.targets}",
        env=env,
    )
    summary = json.loads((work / "reports" / "tune" / "demo" / "summary.json").read_text())
    best = summary["best"]

    # -f -s: train and evaluate really run; DVC's run cache would restore the best trial's
    # outputs (same params, same data) in seconds otherwise.
    tuned_s = sh(
        work, "dvc", "exp", "run", "--temp", "-f", "-s", "-S", "experiment=tuned", "-n", "tuned",
        "train", "evaluate", env=env,
    )  # fmt: skip
    tuned = experiment_metrics(work, "tuned", env)
    trial = experiment_metrics(work, best["experiment"], env)
    rows = summary["rows"]
    result = {
        "cpu": cpu_flags(),
        "trials": summary["trials"],
        "pruning": summary["pruning"],
        "tune_minutes": round(tune_s / 60, 1),
        "minutes_per_trial": round(tune_s / 60 / max(len(rows), 1), 1),
        "best": {"trial": best["number"], "params": best["params"], "val_f1_macro": best["value"]},
        "default": {**default, "minutes": round(default_s / 60, 1)},
        "tuned": {**tuned, "minutes": round(tuned_s / 60, 1)},
        "best_trial_test_f1_macro": trial["test_f1_macro"],
        "reproduced_exactly": tuned["val_f1_macro"] == best["value"],
        "data_minutes": round(data_s / 60, 1),
    }
    for name in ("default", "tuned"):
        r = result[name]
        log.info(
            "%-8s validation macro-F1 %.4f, test macro-F1 %.4f (accuracy %.4f), %d epochs, "
            "%.1f min",
            name,
            r["val_f1_macro"],
            r["test_f1_macro"],
            r["test_accuracy"],
            r["epochs"],
            r["minutes"],
        )
    log.info(
        "study: %s in %.1f min; pruning skipped %s of %s planned steps; reproduced exactly: %s",
        summary["trials"],
        tune_s / 60,
        summary["pruning"]["steps_skipped_by_pruning"],
        summary["pruning"]["planned_steps"],
        result["reproduced_exactly"],
    )
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
