"""Explainers side by side on a trained model: faithfulness, cost and agreement.

    python bench/explainers.py --model models/model [--data data/processed/test.parquet]
        [--texts 50] [--methods integrated_gradients,shap,lime] [--samples N] [--threads 2]

Texts: a seeded sample of ``--data`` (CSV, JSONL or Parquet with a ``text`` column; default the
project's test split), each explained towards the class the model predicts, with the settings of
``error_analysis.explanations`` in params.yaml (``--samples`` overrides SHAP's and LIME's model
calls per text). Per explainer and for random word scores: comprehensiveness, sufficiency, their
difference (faithfulness) and seconds per text; then the pairwise agreement (Spearman rho, top
20% words shared). The last line is JSON.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import REPO, cpu_flags, params, setup_logging

log = logging.getLogger("bench")


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_csv(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory or models:/ URI")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "processed" / "test.parquet")
    parser.add_argument("--texts", type=int, default=50)
    parser.add_argument("--methods", help="comma-separated (default: params.yaml's)")
    parser.add_argument("--samples", type=int, help="SHAP's and LIME's model calls per text")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_logging()
    import torch

    torch.set_num_threads(args.threads)
    from finetune.analysis.explain import explain_rows
    from finetune.core.schema import ExplanationsConfig
    from finetune.modeling.classifier import effective_max_length, open_classifier

    spec = params().error_analysis.explanations.model_dump()
    spec["time_budget"] = None  # every sampled text, not what the report's budget fits
    if args.methods:
        spec["methods"] = args.methods.split(",")
    if args.samples:
        spec["shap_max_evals"] = spec["lime_samples"] = args.samples
    explanations = ExplanationsConfig.model_validate(spec)
    frame = read(args.data)
    frame = frame[frame["text"].astype(str).str.strip() != ""]
    frame = frame.sample(n=min(args.texts, len(frame)), random_state=args.seed)
    loaded = open_classifier(args.model, num_threads=args.threads)
    length = effective_max_length(loaded, None)

    def proba(texts: list[str]) -> Any:
        return loaded.predict(texts, 64, length).probabilities

    texts = frame["text"].astype(str).tolist()
    probs = proba(texts)
    rows = pd.DataFrame(
        {
            "id": [str(i) for i in frame.get("id", pd.Series(range(len(frame))))],
            "text": texts,
            "predicted_label": [loaded.labels[i] for i in probs.argmax(axis=1)],
            "confidence": probs.max(axis=1),
        }
    )
    began = time.perf_counter()
    ctx = explain_rows(
        rows, loaded.labels, proba, explanations, args.seed,
        model=loaded.model, tokenizer=loaded.tokenizer, max_length=length,
        long_text=loaded.long_text,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    words = sum(len(t.split()) for t in texts)
    print(
        f"\n{len(texts)} texts from {args.data} ({words / max(len(texts), 1):.1f} words on "
        f"average), model {args.model} ({loaded.backend}), max length {length}, "
        f"{args.threads} threads, {explanations.shap_max_evals} SHAP evals / "
        f"{explanations.lime_samples} LIME samples per text; {seconds:.1f} s in all\n"
    )
    print("| explainer | comprehensiveness | sufficiency | faithfulness | s/text | beats random |")
    print("|---|---:|---:|---:|---:|---|")
    for r in ctx["table"]:
        beats = "-" if r["method"] == "random" else ("yes" if r["beats_random"] else "NO")
        print(
            f"| {r['title']} | {r['comprehensiveness']:.3f} | {r['sufficiency']:.3f} | "
            f"{r['faithfulness']:.3f} | {r['seconds_per_text']:.3f} | {beats} |"
        )
    print("\n| explainers | Spearman rho | top 20% words shared |\n|---|---:|---:|")
    for r in ctx["agreement"]:
        rho = "-" if r["spearman"] is None else f"{r['spearman']:.3f}"
        print(f"| {r['a']} / {r['b']} | {rho} | {r['top_overlap']:.3f} |")
    print(f"\nrecommended: {ctx['recommended']}: {ctx['reason']}")
    print(
        json.dumps(
            {
                "model": args.model,
                "data": str(args.data),
                "texts": len(texts),
                "seconds": round(seconds, 1),
                "threads": args.threads,
                "shap_max_evals": explanations.shap_max_evals,
                "lime_samples": explanations.lime_samples,
                "table": ctx["table"],
                "agreement": ctx["agreement"],
                "recommended": ctx["recommended"],
                "cpu": cpu_flags(),
            }
        )
    )


if __name__ == "__main__":
    main()
