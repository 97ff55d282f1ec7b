"""Likely label errors on real data with planted noise: how many flipped labels does the ranked
list find, and at what cost? Over the suite in ../shared/datasets, or the datasets named.

    python bench/label_noise.py                           # every single-label dataset there
    python bench/label_noise.py sst2 imdb_subset          # those only
    python bench/label_noise.py sms_spam --methods backbone+tfidf,embeddings
    python bench/label_noise.py sms_spam --quick          # 1,500 rows: checks the wiring

Per dataset: a share (``--noise``, 5%) of the official train rows get another label at random
(seeded); the official validation rows (where there is a file) join them unflipped, as a user's
labelled data; test rows whose label is not in train are left out (atis has five). The
pipeline's stages run on that as a user's data would be (preprocess, and augment + train when a
method needs the trained model), in-process, in a temporary workspace, with the default config
(`data=base`, as `finetune init-data` writes it). Then the labelled rows outside the test split
are ranked as error_analysis ranks them (finetune.analysis.error_analysis.label_error_sources),
by each method: a source of out-of-sample probabilities or several joined by ``+`` (mixed as
error_analysis mixes them, with the weights that best explain the given labels; the plain mean's
recall is given beside it):
backbone (frozen pretrained embeddings), tfidf (the TF-IDF baseline's model), embeddings (the
trained model's embeddings), finetuned (k-fold fine-tuning). Recall of the flipped rows within
the first 1x and 2x entries of each list (x = the flipped rows that survived preprocessing), and
the seconds each took (a source shared by several methods is computed once; a joined method's
seconds are the sum of its sources'). Prints a table and a final JSON line.
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

DATASETS = _common.REPO.parent / "shared" / "datasets"
# Single-label datasets of the suite (reuters is multi-label).
SUITE = ["sms_spam", "atis", "clinc150", "germeval2018", "sst2", "imdb_subset", "newsgroups"]
GOAL_RECALL_AT_2X = 0.7
NEEDS_TRAINING = {"embeddings"}
MIN_ROWS_PER_CLASS = 5  # classes rarer in train are left out (atis has 1- and 2-row classes)


def noisy_copy(name: str, out: Path, noise: float, seed: int, rows: int | None) -> set[str]:
    """train.csv (official train with ``noise`` of its labels flipped, plus the official
    validation rows) and test.csv of ``name`` in ``out``, with an id column; returns the
    flipped ids."""
    source = DATASETS / name
    train = pd.read_csv(source / "train.csv", dtype={"label": str})
    test = pd.read_csv(source / "test.csv", dtype={"label": str})
    if rows:
        train = train.sample(n=min(rows, len(train)), random_state=seed)
    counts = train["label"].value_counts()
    rare = sorted(counts[counts < MIN_ROWS_PER_CLASS].index)
    if rare:  # too few to stratify: preprocess would stop, as it tells a user
        _common.log.info("%s: %d classes with < %d train rows left out: %s", name, len(rare),
                         MIN_ROWS_PER_CLASS, rare)  # fmt: skip
        train = train[~train["label"].isin(rare)]
        test = test[~test["label"].isin(rare)]
    train = train.reset_index(drop=True).assign(id=lambda d: [f"train-{i}" for i in d.index])
    rng = np.random.default_rng(seed)
    flip = rng.choice(len(train), round(noise * len(train)), replace=False)
    labels = sorted(train["label"].unique())
    for i in flip:
        given = train.at[i, "label"]
        train.at[i, "label"] = rng.choice([x for x in labels if x != given])
    flipped = set(train["id"].iloc[flip])
    if (source / "validation.csv").is_file() and not rows:
        validation = pd.read_csv(source / "validation.csv", dtype={"label": str})
        validation = validation.assign(id=[f"validation-{i}" for i in range(len(validation))])
        validation = validation[validation["label"].isin(set(train["label"]))]
        train = pd.concat([train, validation], ignore_index=True)
    test = test.assign(id=[f"test-{i}" for i in range(len(test))])
    unseen = ~test["label"].isin(set(train["label"]))
    if unseen.any():
        _common.log.info("%s: %d test rows with labels not in train left out", name, unseen.sum())
    out.mkdir(parents=True)
    train[["id", "text", "label"]].to_csv(out / "train.csv", index=False)
    test.loc[~unseen, ["id", "text", "label"]].to_csv(out / "test.csv", index=False)
    return flipped


def config(name: str, data_dir: Path, work: Path, folds: int) -> dict[str, Any]:
    from finetune.core.config import compose

    cfg = compose(_common.REPO / "conf", ["data=base", f"data.name={name}"])
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


def run_dataset(name: str, args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    """One dataset: the noisy copy, the stages the methods need, each method's recall."""
    from finetune.analysis import label_errors as L
    from finetune.analysis.error_analysis import label_error_sources
    from finetune.augment import augment
    from finetune.core.artifacts import load_split
    from finetune.core.validate import parse
    from finetune.data import preprocess
    from finetune.modeling.backbones import inference_max_length, load_trained
    from finetune.modeling.tokens import load_tokenizer, max_length, position_limit, token_counts
    from finetune.training import train

    sources = sorted({source for method in methods for source in method.split("+")})
    with tempfile.TemporaryDirectory(prefix="label-noise-") as tmp:
        work = Path(tmp)
        rows = 1500 if args.quick else None
        flipped = noisy_copy(name, work / "data", args.noise, args.seed, rows)
        raw = config(name, work / "data", work, args.folds)
        raw["error_analysis"]["label_errors"]["sources"] = sources
        cfg = parse(raw)
        began = time.perf_counter()
        stages = [preprocess, augment, train] if NEEDS_TRAINING & set(sources) else [preprocess]
        for stage in stages:
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
        if NEEDS_TRAINING & set(sources):
            model, tokenizer = load_trained(cfg.paths.model_dir)
            length = inference_max_length(cfg.model.max_length, tokenizer)
        else:  # the length train would choose, from the train split's token counts
            model, tokenizer = None, load_tokenizer(cfg.model.name_or_path)
            train_texts = load_split(cfg.paths.processed_dir, "train")["text"].tolist()
            counts = token_counts(tokenizer, train_texts)
            length = max_length(cfg.model.max_length, counts, position_limit(tokenizer))
        made = label_error_sources(cfg, model, tokenizer, labels, length)
        probs: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        for source in sources:
            probs[source], took, _ = L.out_of_sample_probs(
                labelled, y, len(labels), {source: made[source]}
            )
            seconds[source] = took[source]
        results = {}
        for method in methods:
            parts = method.split("+")
            mixed, weights = L.combine_probs([probs[p] for p in parts], y, len(labels))
            mean = np.mean([probs[p] for p in parts], axis=0)
            ranked = L.rank_label_issues(labelled, y, mixed, labels, len(labelled))
            results[method] = {
                **recall(ranked, in_scope),
                "flagged": int(ranked["flagged"].sum()),
                "seconds": round(sum(seconds[p] for p in parts), 1),
            }
            if len(parts) > 1:  # the weights, and the plain mean for comparison
                plain = L.rank_label_issues(labelled, y, mean, labels, len(labelled))
                results[method]["weights"] = [round(float(w), 3) for w in weights]
                results[method]["mean_recall_at_2x"] = recall(plain, in_scope)["recall_at_2x"]
    return {
        "labelled_rows": len(labelled),
        "classes": len(labels),
        "flipped_in_scope": len(in_scope),
        "flipped": len(flipped),
        "max_length": length,
        "pipeline_seconds": round(pipeline_s, 1),
        "methods": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="*", help=f"default: {' '.join(SUITE)}")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument(
        "--methods",
        default="backbone,tfidf,backbone+tfidf",
        help="comma-separated; a method is a source or sources joined by + "
        "(backbone, tfidf, embeddings, finetuned)",
    )
    parser.add_argument("--quick", action="store_true", help="1,500 train rows")
    args = parser.parse_args()
    _common.setup_logging()
    methods = args.methods.split(",")
    known = {"backbone", "tfidf", "embeddings", "finetuned"}
    unknown = {s for m in methods for s in m.split("+")} - known
    if unknown:
        parser.error(f"unknown source(s) {sorted(unknown)}; known: {sorted(known)}")
    names = args.datasets or [n for n in SUITE if (DATASETS / n).is_dir()]
    missing = [n for n in names if not (DATASETS / n / "train.csv").is_file()]
    if missing or not names:
        _common.log.error("not in %s: %s", DATASETS, missing or "any suite dataset")
        sys.exit(2)
    from finetune.core.errors import PipelineError

    results, failed = {}, {}
    for name in names:
        try:
            results[name] = run_dataset(name, args, methods)
        except PipelineError as exc:  # the pipeline refused this dataset: say so, go on
            _common.log.error("%s: %s", name, exc)
            failed[name] = str(exc).splitlines()[0]
            continue
        _common.log.info("%s: %s", name, json.dumps(results[name]["methods"]))
    print(f"\nflipped {args.noise:.0%} of train labels (seed {args.seed}); x = flipped rows ranked")
    head = f"{'dataset':<14} {'rows':>7} {'classes':>7} {'x':>5} {'method':<16}"
    print(f"{head} {'recall@1x':>9} {'recall@2x':>9} {'mean@2x':>8} {'seconds':>8}  weights")
    for name, r in results.items():
        for method, m in r["methods"].items():
            row = f"{name:<14} {r['labelled_rows']:>7} {r['classes']:>7} {r['flipped_in_scope']:>5}"
            mean = f"{m['mean_recall_at_2x']:.3f}" if "mean_recall_at_2x" in m else "-"
            print(
                f"{row} {method:<16} {m['recall_at_1x']:>9.3f} {m['recall_at_2x']:>9.3f} "
                f"{mean:>8} {m['seconds']:>8.0f}  {m.get('weights', '')}"
            )
    for name, error in failed.items():
        print(f"{name:<14} failed: {error}")
    worst = {
        method: min((r["methods"][method]["recall_at_2x"] for r in results.values()), default=None)
        for method in methods
    }
    print(
        json.dumps(
            {
                "noise": args.noise,
                "seed": args.seed,
                "quick": args.quick,
                "folds": args.folds,
                "datasets": results,
                "failed": failed,
                "worst_recall_at_2x": worst,
                "goal_recall_at_2x": GOAL_RECALL_AT_2X,
                "cpu": _common.cpu_flags(),
            }
        )
    )


if __name__ == "__main__":
    main()
