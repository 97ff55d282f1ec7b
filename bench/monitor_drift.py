"""finetune monitor on the demo model: the three verdicts, the label-free estimate, the time.

    python bench/monitor_drift.py [--repo .] [--model models/model]

Needs a trained demo model (``dvc repro``) whose data does not yet include
``data/incoming/support_tickets_batch2.csv`` (350 labelled messages from the same generator,
never trained on). Batches, each run with the real ``finetune monitor`` command:

- **same distribution**: batch 2 with its labels (must not be flagged);
- **another domain**: 350 sst2 test sentences, movie reviews (must be flagged);
- **one class 3x**: batch 2 + the validation split, resampled so that ``shipping`` is three
  times as frequent as in the test split, with labels (prediction drift must be flagged);
- **time**: 1,000 texts (batch 2, validation split, sst2 sentences), first with the model's
  reference cache removed (the reference is embedded), then again (cached).

Each run logs a monitoring run to the repository's MLflow store; ``paths.monitor_latest`` is
put back as it was afterwards. The last line is JSON.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import REPO, SST2, cpu_flags, setup_logging

BATCH2 = "data/incoming/support_tickets_batch2.csv"


def run_monitor(repo: Path, model: str, batch: Path, out: Path, labelled: bool) -> dict[str, Any]:
    command = [str(Path(sys.executable).parent / "finetune"), "monitor", "-m", model]
    command += ["-i", str(batch), "-o", str(out)] + (
        ["--label-column", "label"] if labelled else []
    )
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {"summary": summary, "exit_code": proc.returncode, "wall_s": round(seconds, 1)}


def shipping_x3(pool: pd.DataFrame, test: pd.DataFrame, label: str = "shipping") -> pd.DataFrame:
    """``pool`` resampled so that ``label`` has three times its test-split share."""
    share = test["label"].value_counts(normalize=True)
    chosen = pool[pool["label"] == label]
    total = len(chosen) / (3 * share[label])
    parts = [chosen]
    for other, p in share.items():
        if other != label:
            n = round((total - len(chosen)) * p / (1 - share[label]))
            parts.append(pool[pool["label"] == other].sample(n, random_state=0))
    return pd.concat(parts).sample(frac=1, random_state=0)


def row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    s = result["summary"]
    inp, pred, perf = s["input_drift"], s["prediction_drift"], s["performance"]
    auc = inp["domain_classifier"]
    return {
        "batch": name,
        "texts": s["batch"]["texts"],
        "drift": s["drift"],
        "exit": result["exit_code"],
        "flagged": [c["check"] for c in s["checks"] if c["flagged"]],
        "domain_auc": round(auc["auc"], 3),
        "domain_auc_ci": [round(auc["auc_low"], 3), round(auc["auc_high"], 3)],
        "mmd_p": round(inp["mmd"]["p_value"], 4),
        "chi2_p": float(f"{pred['p_value']:.3g}"),
        "psi": round(pred["psi"], 3),
        "estimated_accuracy": round(s["estimated_accuracy"], 4),
        "estimated_interval": [round(x, 4) for x in s["estimated_accuracy_interval"]],
        "accuracy": round(s["accuracy"], 4) if "accuracy" in s else None,
        "estimate_error": round(perf["estimate_error"], 4) if "estimate_error" in perf else None,
        "wall_s": result["wall_s"],
        "monitor_s": s["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--model", default="models/model")
    args = parser.parse_args()
    setup_logging()
    from finetune.core.config import load_config
    from finetune.core.io import read_json

    repo = args.repo.resolve()
    os.chdir(repo)
    cfg = load_config(repo)
    if not (SST2 / "test.csv").is_file():
        raise SystemExit(f"{SST2 / 'test.csv'} is needed for the other-domain batch")
    train = pd.read_parquet(Path(cfg.paths.processed_dir) / "train.parquet")
    batch2 = pd.read_csv(BATCH2)
    if set(batch2["id"]) & set(train["id"]):
        raise SystemExit(f"the model was trained on {BATCH2}: it is not an unseen batch")
    validation = pd.read_parquet(Path(cfg.paths.processed_dir) / "validation.parquet")
    test = pd.read_parquet(Path(cfg.paths.processed_dir) / "test.parquet")
    sst2 = pd.read_csv(SST2 / "test.csv")
    latest = Path(cfg.paths.monitor_latest)
    kept = latest.read_bytes() if latest.is_file() else None
    run_id = read_json(cfg.paths.run_info)["run_id"]
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            pool = pd.concat([batch2[["text", "label"]], validation[["text", "label"]]])
            batches = {
                "same distribution (batch 2)": (batch2[["text", "label"]], True),
                "another domain (sst2)": (sst2[["text"]].sample(350, random_state=0), False),
                "one class 3x (shipping)": (shipping_x3(pool, test), True),
            }
            timing = pd.concat([pool[["text"]], sst2[["text"]]]).head(1000)
            for name, (frame, labelled) in batches.items():
                path = tmp / f"{len(results)}.csv"
                frame.to_csv(path, index=False)
                results[name] = run_monitor(repo, args.model, path, tmp / name, labelled)
            timing.to_csv(tmp / "timing.csv", index=False)
            for cached in Path(cfg.paths.monitor_cache).glob(f"{run_id}-*.npz"):
                cached.unlink()  # a cache: the cold run embeds the reference again
            results["1,000 texts, cold"] = run_monitor(
                repo, args.model, tmp / "timing.csv", tmp / "cold", False
            )
            results["1,000 texts, cached"] = run_monitor(
                repo, args.model, tmp / "timing.csv", tmp / "warm", False
            )
    finally:
        if kept is not None:
            latest.write_bytes(kept)
        else:
            latest.unlink(missing_ok=True)
    rows = [row(name, r) for name, r in results.items()]
    print(f"\ncpu: {cpu_flags()}")
    print(pd.DataFrame(rows).to_string(index=False))
    same, other, skew = (rows[0], rows[1], rows[2])
    out = {
        "same_distribution_flagged": same["drift"],
        "other_domain_flagged": other["drift"] and "input drift" in other["flagged"],
        "class_x3_prediction_drift": "prediction drift" in skew["flagged"],
        "estimate_error_same": same["estimate_error"],
        "estimate_error_class_x3": skew["estimate_error"],
        "seconds_1000_cold": rows[3]["wall_s"],
        "seconds_1000_cached": rows[4]["wall_s"],
        "rows": rows,
        "cpu": cpu_flags(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
