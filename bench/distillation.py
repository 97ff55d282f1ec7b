"""Teacher and students side by side: accuracy, macro-F1, size and latency on one test split.

    python bench/distillation.py --split-file data/processed/test.parquet \
        --model teacher=DIR --model student_distilled=DIR --model student_plain=DIR

Each model runs on PyTorch fp32 (our predictor) at batch 1 (one text per call) and batch 32;
the split is the one the models were evaluated on (they must share its label map). The
students are made by the train stage with ``train.distill`` (docs/export.md, "Distillation").
The last line is JSON.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import cpu_flags, setup_logging
from inference_speed import measure, row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=DIR, repeatable")
    parser.add_argument("--split-file", required=True)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    setup_logging()
    import torch

    from finetune.modeling.backbones import inference_max_length, load_trained
    from finetune.modeling.inference import predict_proba

    torch.set_num_threads(args.threads)
    df = pd.read_parquet(args.split_file).head(args.texts)
    texts, y = df["text"].tolist(), df["label_id"].to_numpy().astype(int)
    rows: list[dict[str, Any]] = []
    for spec in args.model:
        name, directory = spec.split("=", 1)
        model, tokenizer = load_trained(directory)
        model = model.float()
        length = inference_max_length("auto", tokenizer)
        size = sum(f.stat().st_size for f in Path(directory).glob("*.safetensors")) / 1e6
        for batch in (1, 32):

            def ours(batch_texts: list[str], b: int = batch, m: Any = model, t: Any = tokenizer,
                     n: int = length) -> np.ndarray:  # fmt: skip
                return predict_proba(m, t, batch_texts, b, n).predicted

            r = row(name, batch, size, y, measure(ours, texts, batch))
            r["layers"] = int(model.config.num_hidden_layers)
            r["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
            rows.append(r)
    table = pd.DataFrame(rows)
    print(f"\n{args.split_file}: {len(texts)} texts; {args.threads} threads; CPU {cpu_flags()}\n")
    print(table.to_string(index=False))
    print(json.dumps({"split": args.split_file, "cpu": cpu_flags(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
