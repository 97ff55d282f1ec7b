"""Defaults that fit the dataset: the old fixed defaults against `auto`, per dataset.

    python bench/auto_defaults.py demo sms_spam sst2     # each dataset, both settings
    python bench/auto_defaults.py demo --settings auto   # only one
    python bench/auto_defaults.py sms_spam --quick       # 1,500 train rows: checks the wiring
    python bench/auto_defaults.py demo --settings auto --set train.precision=fp32  # as on AVX2

``fixed`` is what the defaults were before ``auto``: 4 epochs, augmentation on, max length 128.
``auto`` is the default now (``train.epochs``, ``augment.enabled`` and ``model.max_length`` all
``auto``, resolved from the data by ``finetune.modeling.tokens``, ``finetune.augment.augment``
and ``finetune.training.schedule``). Each run is the pipeline's own
preprocess, augment, train and evaluate stages, in-process in a temporary workspace, with the
default backbone; wall time counts the four stages. demo is data/raw/support_tickets.csv;
sms_spam and sst2 come from ../shared/datasets (the generic base config, as `finetune
init-data` writes it). Prints a table and a final JSON line.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

FIXED = {"train.epochs": 4, "augment.enabled": True, "model.max_length": 128}
AUTO = {"train.epochs": "auto", "augment.enabled": "auto", "model.max_length": "auto"}
DATASETS = {
    "demo": [],
    "sms_spam": ["data=base", "data.name=sms_spam", "data.path=../shared/datasets/sms_spam"],
    "sst2": ["data=sst2"],
}


def run_one(dataset: str, setting: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    from finetune.augment import augment
    from finetune.core.config import compose
    from finetune.data import preprocess
    from finetune.evaluation import evaluate
    from finetune.training import train

    chosen = FIXED if setting == "fixed" else AUTO
    overrides = [*DATASETS[dataset], *(f"{k}={v}" for k, v in chosen.items()), *extra]
    cfg = compose(_common.REPO / "conf", overrides)
    with tempfile.TemporaryDirectory(prefix="auto-defaults-") as tmp:
        work = Path(tmp)
        cfg["paths"] = {k: str(work / v) for k, v in cfg["paths"].items()}
        path = Path(cfg["data"]["path"])
        cfg["data"]["path"] = str(path if path.is_absolute() else _common.REPO / path)
        if dataset == "demo":
            cfg["data"]["known_mislabels"] = None
        if quick:
            import pandas as pd

            source = Path(cfg["data"]["path"])
            (work / "data").mkdir()
            for name in ("train", "test"):
                frame = pd.read_csv(source / f"{name}.csv")
                frame.head(1500 if name == "train" else 300).to_csv(
                    work / "data" / f"{name}.csv", index=False
                )
            cfg["data"]["path"] = str(work / "data")
        cfg["tracking"].update({"uri": f"sqlite:///{work / 'mlflow.db'}", "log_model": False})
        cfg["train"]["progress_bar"] = False
        began = time.perf_counter()
        for stage in (preprocess, augment):
            stage.run(cfg)
        result = train.run(cfg)
        metrics = evaluate.run(cfg)
        seconds = time.perf_counter() - began
        aug = json.loads(Path(cfg["paths"]["augment_report"]).read_text())
    return {
        "dataset": dataset,
        "setting": setting,
        "accuracy": round(metrics["accuracy"], 4),
        "f1_macro": round(metrics["f1_macro"], 4),
        "baseline_f1_macro": round(metrics["baseline"]["f1_macro"], 4),
        "minutes": round(seconds / 60, 2),
        "epochs": result.metrics["epochs_planned"],
        "epochs_run": result.metrics["epochs"],
        "max_length": result.metrics["max_length"],
        "augment": aug["enabled"],
        "train_rows": aug["total_rows"],
        "test_rows": metrics["num_examples"],
        "precision": result.metrics["precision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", choices=sorted(DATASETS))
    parser.add_argument("--settings", default="fixed,auto")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra Hydra override for every run (repeatable)")  # fmt: skip
    args = parser.parse_args()
    _common.setup_logging()
    rows = [
        run_one(dataset, setting, args.quick, args.set)
        for dataset in args.datasets
        for setting in args.settings.split(",")
    ]
    print(
        f"\n{'dataset':<10} {'setting':<7} {'accuracy':>8} {'macro-F1':>8} {'TF-IDF':>7} "
        f"{'minutes':>7} {'epochs':>6} {'len':>4} {'augment':>7} {'rows':>7}"
    )
    for r in rows:
        print(
            f"{r['dataset']:<10} {r['setting']:<7} {r['accuracy']:>8.4f} {r['f1_macro']:>8.4f} "
            f"{r['baseline_f1_macro']:>7.4f} {r['minutes']:>7.1f} {r['epochs_run']:>6} "
            f"{r['max_length']:>4} {r['augment']!s:>7} {r['train_rows']:>7}"
        )
    cpu = _common.cpu_flags()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}")
    print(json.dumps({"quick": args.quick, "overrides": args.set, "cpu": cpu, "runs": rows}))


if __name__ == "__main__":
    main()
