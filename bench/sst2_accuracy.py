"""Accuracy: the default model fine-tuned on the full sst2 train split, scored on its test split.

    python bench/sst2_accuracy.py             # full run (goal: >= 90% within 20 min, 2 cores)
    python bench/sst2_accuracy.py --quick     # smoke check: 2,000 train rows, 200 test rows
    python bench/sst2_accuracy.py model.pooling=cls train.learning_rate=3e-5   # + overrides

Uses `finetune.training.trainer.fine_tune` (the train stage's code) with the `train` and `model`
settings of
conf/ composed with the `experiment=sst2` preset (conf/experiment/sst2.yaml: the default model,
all-MiniLM-L6-v2, at max length 64 and learning rate 5e-5), so `dvc exp run -S experiment=sst2`
trains the same way. 1,000 train rows are held out as the validation split (evaluated once per
epoch; the best epoch is kept). Needs ../shared/datasets/sst2 (exits 2 when absent). Minutes are
wall-clock: model loading, tokenisation, training, validation and test inference. Prints a
table, then one JSON line.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

PRESET = "experiment=sst2"
VALIDATION_ROWS = 1000
GOAL_ACCURACY, GOAL_MINUTES = 0.90, 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 train / 200 test rows")
    parser.add_argument("--seed", type=int, help="training seed (default: conf seed, 42)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after the preset")
    args = parser.parse_args()
    _common.setup_logging()
    if not (_common.SST2 / "train.csv").is_file():
        _common.log.error("%s is missing: this benchmark needs the sst2 dataset", _common.SST2)
        sys.exit(2)
    import torch

    from finetune.core.config import compose
    from finetune.core.validate import parse
    from finetune.modeling.inference import predict_proba
    from finetune.training import trainer

    began = time.perf_counter()
    conf = _common.REPO / "conf"
    cfg = parse(compose(conf, [PRESET, *args.overrides]), conf, [PRESET, *args.overrides])
    pooling, max_length = cfg.model.pooling, cfg.model.max_length
    seed = cfg.seed if args.seed is None else args.seed  # the validation carve stays
    table, _ = _common.load_table("train")
    test, _ = _common.load_table("test")
    labels = _common.labels_of(table)
    table = table.sample(frac=1.0, random_state=cfg.seed).reset_index(drop=True)
    validation, train_df = table[:VALIDATION_ROWS], table[VALIDATION_ROWS:]
    if args.quick:
        train_df, test = train_df[:2000], test[:200]
        validation = validation[:200]
    spec = cfg.train.model_copy(update={"progress_bar": True})
    result = trainer.fine_tune(
        train_df.reset_index(drop=True),
        validation.reset_index(drop=True),
        labels,
        cfg.model,
        spec,
        seed,
    )
    preds = predict_proba(
        result.model, result.tokenizer, test["text"].tolist(), max_length=max_length
    )
    accuracy = float((preds.predicted == test["label_id"].to_numpy()).mean())
    minutes = (time.perf_counter() - began) / 60
    quick = " (QUICK: subsample)" if args.quick else ""
    print(
        f"\nmodel {cfg.model.name} ({PRESET} {' '.join(args.overrides)}: {pooling} pooling, "
        f"{spec.epochs} epoch(s), learning rate "
        f"{spec.learning_rate}, max length {max_length}, seed {seed}), {len(train_df)} train / "
        f"{len(validation)} validation / {len(test)} test rows, {torch.get_num_threads()} threads, "
        f"precision {result.metrics['precision']}{quick}"
    )
    print(f"{'test accuracy':<28} {accuracy:.4f}   (goal >= {GOAL_ACCURACY})")
    print(f"{'minutes (everything)':<28} {minutes:.1f}   (goal <= {GOAL_MINUTES})")
    print(f"{'training samples/s':<28} {result.metrics['train_samples_per_second']:.1f}")
    print(f"{'best step':<28} {result.metrics['best_step']}")
    print(
        json.dumps(
            {
                "quick": args.quick,
                "preset": PRESET,
                "overrides": args.overrides,
                "pooling": pooling,
                "epochs": spec.epochs,
                "learning_rate": spec.learning_rate,
                "seed": seed,
                "train_rows": len(train_df),
                "test_rows": len(test),
                "accuracy": round(accuracy, 4),
                "minutes": round(minutes, 2),
                "train_metrics": result.metrics,
                "goal_met": accuracy >= GOAL_ACCURACY and minutes <= GOAL_MINUTES,
            }
        )
    )


if __name__ == "__main__":
    main()
