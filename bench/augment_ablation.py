"""Does augmentation help? Test macro-F1 with augmentation off and on, over several seeds.

    python bench/augment_ablation.py                       # full: 3 seeds, demo + SST-2 sample
    python bench/augment_ablation.py --quick               # 1 seed, 10 training steps: a check
    python bench/augment_ablation.py --configs disabled,default,eda --seeds 0,1,2

For each dataset, each ``augment`` config (conf/augment/<name>.yaml) and each seed it runs the
real stages (preprocess -> augment -> train -> evaluate, via their ``run()`` functions) in a
temporary workspace with params composed from conf/ exactly as ``make params`` does, and reads
the test macro-F1 that evaluate writes. Datasets: (a) the demo data, (b) a stratified 500-example
sample of ../shared/datasets/sst2/train.csv split by the pipeline (skipped when absent). The
seed changes the split, augmentation and training, so the spread covers all three. Prints a
Markdown table (mean ± std) and, last, one JSON line with every score.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "datasets" / "sst2" / "train.csv"

log = logging.getLogger("augment_ablation")


def sst2_sample(dest: Path, n: int = 500, seed: int = 0) -> Path | None:
    if not SST2.is_file():
        log.warning("%s not found: skipping the SST-2 dataset", SST2)
        return None
    df = pd.read_csv(SST2)
    share = n / len(df)
    sample = df.groupby("label", group_keys=False).sample(frac=share, random_state=seed)
    sample = sample.head(n).reset_index(drop=True)
    path = dest / "sst2_500.csv"
    sample.to_csv(path, index=False)
    return path


def datasets(dest: Path, wanted: list[str]) -> dict[str, list[str]]:
    """name -> Hydra overrides selecting it."""
    found: dict[str, list[str]] = {}
    if "demo" in wanted:
        found["demo"] = []
    if "sst2" in wanted:
        path = sst2_sample(dest)
        if path is not None:
            found["sst2-500"] = [
                f"data.path={path}",
                f"data.watch={path}",
                "data.id_column=null",
                "data.extra_columns=[]",
                "data.split.validation=0.15",
                "data.split.test=0.3",
            ]
    return found


def one_run(overrides: list[str], workdir: Path, quick: bool) -> float:
    from finetune.augment import augment
    from finetune.core.config import compose
    from finetune.data import preprocess
    from finetune.evaluation import evaluate
    from finetune.training import train

    cfg: dict[str, Any] = compose(REPO / "conf", overrides)
    cfg["paths"] = {k: str(workdir / v) for k, v in cfg["paths"].items()}
    if not Path(cfg["data"]["path"]).is_absolute():
        cfg["data"]["path"] = str(REPO / cfg["data"]["path"])
    cfg["tracking"].update(
        {
            "uri": f"sqlite:///{workdir / 'mlflow.db'}",
            "log_model": False,
            "registered_model_name": None,
        }
    )
    if quick:
        cfg["train"].update({"max_steps": 10, "epochs": 1})
    for stage in (preprocess, augment, train, evaluate):
        stage.run(cfg)
    return float(json.loads(Path(cfg["paths"]["evaluate_metrics"]).read_text())["f1_macro"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 10 training steps")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2)")
    parser.add_argument("--configs", default="disabled,default", help="conf/augment names")
    parser.add_argument("--datasets", default="demo,sst2", help="demo and/or sst2")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    configs = args.configs.split(",")
    scores: dict[str, dict[str, list[float]]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="augment-ablation-") as tmp:
        for name, data_overrides in datasets(Path(tmp), args.datasets.split(",")).items():
            for config in configs:
                for seed in seeds:
                    work = Path(tmp) / f"{name}-{config}-{seed}"
                    overrides = [
                        *data_overrides,
                        f"augment={config}",
                        f"seed={seed}",
                        *args.override,
                    ]
                    t0 = time.perf_counter()
                    f1 = one_run(overrides, work, args.quick)
                    scores.setdefault(name, {}).setdefault(config, []).append(f1)
                    log.info(
                        "%s augment=%s seed=%d: test macro-F1 %.4f (%.0f s)",
                        name,
                        config,
                        seed,
                        f1,
                        time.perf_counter() - t0,
                    )
    lines = [
        f"Test macro-F1, mean ± std over seeds {seeds}"
        + (" (QUICK: 10 training steps, not a real result)" if args.quick else ""),
        "",
        "| dataset | " + " | ".join(f"augment={c}" for c in configs) + " |",
        "|---|" + "---:|" * len(configs),
    ]
    for name, by_config in scores.items():
        cells = []
        for c in configs:
            v = by_config[c]
            std = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.4f} ± {std:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print(
        json.dumps(
            {
                "seeds": seeds,
                "quick": args.quick,
                "scores": scores,
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
