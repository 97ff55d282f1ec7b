"""Likely label errors on real data with planted noise: how many flipped labels does the ranked
list find, and at what cost?

    python bench/label_noise.py sms_spam                  # ../shared/datasets/sms_spam
    python bench/label_noise.py sst2 --folds 3            # the sst2 preset (1 epoch, length 64)
    python bench/label_noise.py sms_spam --quick          # 1,500 rows: checks the wiring

A share (``--noise``, 5%) of the training rows get another label at random (seeded); the
pipeline's stages train on the noisy data as a user's data would be (preprocess, augment,
train, evaluate, in-process, in a temporary workspace); then the labelled rows outside the test
split are ranked with each ``error_analysis.label_errors.method``: embeddings (cross-validated
logistic regression on the trained model's frozen embeddings), finetuned (the backbone
fine-tuned ``--folds`` times, each row predicted by a model that never saw it) and ensemble
(their mean). Recall of the flipped rows within the first 1x and 2x entries of each list (x =
the number of flipped rows that survived preprocessing), and the seconds each took. Prints a
table and a final JSON line.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np
import pandas as pd

# sst2: the sst2 preset; sms_spam: the generic base, as `finetune init-data` would write it
PRESETS = {"sst2": ["experiment=sst2"], "sms_spam": ["data=base", "data.name=sms_spam"]}


def noisy_copy(name: str, out: Path, noise: float, seed: int, rows: int | None) -> set[str]:
    """train.csv (with ``noise`` of its labels flipped) and test.csv of ``name`` in ``out``,
    with an id column; returns the flipped ids."""
    source = _common.REPO.parent / "shared" / "datasets" / name
    train = pd.read_csv(source / "train.csv")
    test = pd.read_csv(source / "test.csv")
    if rows:
        train = train.sample(n=min(rows, len(train)), random_state=seed)
    train = train.reset_index(drop=True).assign(id=lambda d: [f"train-{i}" for i in d.index])
    test = test.assign(id=[f"test-{i}" for i in range(len(test))])
    rng = np.random.default_rng(seed)
    flip = rng.choice(len(train), round(noise * len(train)), replace=False)
    labels = sorted(train["label"].astype(str).unique())
    for i in flip:
        given = str(train.at[i, "label"])
        train.at[i, "label"] = rng.choice([x for x in labels if x != given])
    out.mkdir(parents=True)
    train[["id", "text", "label"]].to_csv(out / "train.csv", index=False)
    test[["id", "text", "label"]].to_csv(out / "test.csv", index=False)
    return set(train["id"].iloc[flip])


def config(name: str, data_dir: Path, work: Path, folds: int) -> dict[str, Any]:
    from finetune.core.config import compose

    cfg = compose(_common.REPO / "conf", PRESETS[name])
    cfg["paths"] = {k: str(work / v) for k, v in cfg["paths"].items()}
    cfg["data"].update({"path": str(data_dir), "id_column": "id"})
    cfg["tracking"]["uri"] = f"sqlite:///{work / 'mlflow.db'}"
    cfg["tracking"]["log_model"] = False
    cfg["train"]["progress_bar"] = False
    cfg["error_analysis"]["label_errors"]["folds"] = folds
    return cfg


def recall(ranked: pd.DataFrame, flipped: set[str]) -> dict[str, float]:
    ids = ranked["id"].astype(str).tolist()
    n = len(flipped)
    return {
        "recall_at_1x": len(set(ids[:n]) & flipped) / n,
        "recall_at_2x": len(set(ids[: 2 * n]) & flipped) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(PRESETS))
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="k-fold fine-tuning folds")
    parser.add_argument("--methods", default="embeddings,finetuned,ensemble")
    parser.add_argument("--quick", action="store_true", help="1,500 train rows")
    args = parser.parse_args()
    _common.setup_logging()
    if not (_common.REPO.parent / "shared" / "datasets" / args.dataset).is_dir():
        _common.log.error("../shared/datasets/%s is missing", args.dataset)
        sys.exit(2)
    from finetune.analysis import label_errors as L
    from finetune.augment import augment
    from finetune.core.artifacts import load_split
    from finetune.core.validate import parse
    from finetune.data import preprocess
    from finetune.evaluation import evaluate
    from finetune.modeling.backbones import inference_max_length, load_trained
    from finetune.modeling.inference import sentence_embeddings
    from finetune.training import train
    from finetune.training.kfold import out_of_fold_probs

    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory(prefix="label-noise-") as tmp:
        work = Path(tmp)
        flipped = noisy_copy(
            args.dataset, work / "data", args.noise, args.seed, 1500 if args.quick else None
        )
        cfg = parse(config(args.dataset, work / "data", work, args.folds))
        began = time.perf_counter()
        for stage in (preprocess, augment, train, evaluate):
            stage.run(cfg)
        pipeline_s = time.perf_counter() - began
        spec = cfg.error_analysis.label_errors
        labelled = pd.concat(
            [load_split(cfg.paths.processed_dir, s).assign(split=s) for s in spec.splits],
            ignore_index=True,
        )
        in_scope = flipped & set(labelled["id"].astype(str))
        labels = json.loads((Path(cfg.paths.processed_dir) / "label_map.json").read_text())
        labels = labels["labels"]
        y = labelled["label_id"].to_numpy().astype(int)
        model, tokenizer = load_trained(cfg.paths.model_dir)
        max_length = inference_max_length(cfg.model.max_length, tokenizer)
        probs: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        if {"embeddings", "ensemble"} & set(methods):
            began = time.perf_counter()
            emb = sentence_embeddings(model, tokenizer, labelled["text"].tolist(), 64, max_length)
            probs["embeddings"] = L.cross_validated_probs(emb, y, spec.folds, cfg.seed, spec.C)
            seconds["embeddings"] = time.perf_counter() - began
        if {"finetuned", "ensemble"} & set(methods):
            began = time.perf_counter()
            probs["finetuned"] = out_of_fold_probs(
                labelled, labels, cfg.model, cfg.train, args.folds, spec.finetune_epochs,
                cfg.seed, max_length,
            )  # fmt: skip
            seconds["finetuned"] = time.perf_counter() - began
        if "ensemble" in methods:
            probs["ensemble"] = (probs["embeddings"] + probs["finetuned"]) / 2
            seconds["ensemble"] = seconds["embeddings"] + seconds["finetuned"]
        results = {}
        for method in methods:
            ranked = L.rank_label_issues(labelled, y, probs[method], labels, len(labelled))
            results[method] = {
                **recall(ranked, in_scope),
                "flagged": int(ranked["flagged"].sum()),
                "seconds": round(seconds[method], 1),
            }
    print(
        f"\n{args.dataset}: {len(labelled)} labelled rows outside test, {len(in_scope)} of "
        f"{len(flipped)} flipped labels ({args.noise:.0%}) survive preprocessing; pipeline "
        f"(preprocess .. evaluate) {pipeline_s / 60:.1f} min"
    )
    print(f"{'method':<12} {'recall@1x':>10} {'recall@2x':>10} {'flagged':>8} {'seconds':>8}")
    for method, r in results.items():
        print(
            f"{method:<12} {r['recall_at_1x']:>10.3f} {r['recall_at_2x']:>10.3f} "
            f"{r['flagged']:>8} {r['seconds']:>8.0f}"
        )
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "quick": args.quick,
                "noise": args.noise,
                "labelled_rows": len(labelled),
                "flipped_in_scope": len(in_scope),
                "pipeline_seconds": round(pipeline_s, 1),
                "folds": args.folds,
                "methods": results,
                "goal_recall_at_2x": 0.7,
                "cpu": _common.cpu_flags(),
            }
        )
    )


if __name__ == "__main__":
    main()
