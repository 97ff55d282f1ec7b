"""Inference speed, side by side in one run on the same texts and machine.

    python bench/inference_speed.py --model models/model [--texts 1000] [--threads N]

Rows: the usual tutorial way (``transformers.pipeline("text-classification")``, fp32, one text
at a time, and with ``batch_size=32``), our PyTorch predictor (fp32, and bf16 where the CPU has
avx512_bf16/amx_bf16), ONNX fp32 (optimised graph) and ONNX int8 (dynamic, per tensor and per
channel), made from ``--model`` with the export stage's own functions. Each at batch 1 (one text
per call, tokenisation included) and batch 32 (length-sorted batches): samples/s, p50/p95
latency per call, accuracy and macro-F1, and the model's size.

Texts: the sst2 test sentences (../shared/datasets/sst2/test.csv) when present and the model
predicts sst2's labels, else the model's own test split (``--split-file``, default
data/processed/test.parquet); the output says which. The last line is JSON.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import REPO, SST2, cpu_flags, setup_logging
from sklearn.metrics import accuracy_score, f1_score

log = logging.getLogger("bench")


def texts_for(labels: list[str], limit: int, split_file: Path) -> tuple[list[str], np.ndarray, str]:
    sst2 = SST2 / "test.csv"
    if sst2.is_file():
        df = pd.read_csv(sst2).dropna(subset=["text", "label"])
        if sorted(df["label"].astype(str).unique()) == sorted(labels):
            df = df.head(limit)
            y = df["label"].astype(str).map({label: i for i, label in enumerate(labels)})
            note = f"sst2 test.csv: {len(df)} sentences"
            if len(df) < limit:
                note += f" (all it has; {limit} asked)"
            return df["text"].astype(str).tolist(), y.to_numpy(), note
        log.info("the model's labels %s are not sst2's: using %s", labels, split_file)
    df = pd.read_parquet(split_file).head(limit)
    return (
        df["text"].tolist(),
        df["label_id"].to_numpy().astype(int),
        f"{split_file}: {len(df)} texts",
    )


def measure(predict: Any, texts: list[str], batch: int) -> tuple[np.ndarray, list[float], float]:
    """(predicted ids in input order, seconds per call, total seconds) for ``predict(list)``."""
    predict(texts[:batch])  # warm-up
    order = (
        np.argsort([len(t) for t in texts], kind="stable") if batch > 1 else np.arange(len(texts))
    )
    predicted = np.zeros(len(texts), dtype=int)
    calls: list[float] = []
    began = time.perf_counter()
    for start in range(0, len(texts), batch):
        idx = order[start : start + batch]
        t0 = time.perf_counter()
        predicted[idx] = predict([texts[i] for i in idx])
        calls.append(time.perf_counter() - t0)
    return predicted, calls, time.perf_counter() - began


def row(name: str, batch: int, size_mb: float, y: np.ndarray, result: tuple) -> dict[str, Any]:
    predicted, calls, total = result
    return {
        "runtime": name,
        "batch": batch,
        "samples_per_s": round(len(y) / total, 2),
        "latency_ms_p50": round(float(np.percentile(calls, 50)) * 1000, 2),
        "latency_ms_p95": round(float(np.percentile(calls, 95)) * 1000, 2),
        "accuracy": round(float(accuracy_score(y, predicted)), 4),
        "f1_macro": round(float(f1_score(y, predicted, average="macro")), 4),
        "size_mb": round(size_mb, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "model"))
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--split-file", default=str(REPO / "data" / "processed" / "test.parquet"))
    parser.add_argument("--max-length", type=int, default=None, help="default: the model's own")
    args = parser.parse_args()
    setup_logging()
    import torch
    from transformers import pipeline

    from finetune.core.schema import Int8Config
    from finetune.export import onnx_export as ox
    from finetune.export.export import bundle
    from finetune.modeling.backbones import inference_max_length, load_trained
    from finetune.modeling.inference import predict_proba
    from finetune.modeling.onnx_runtime import load_onnx
    from finetune.training.hardware import cpu_supports_bf16

    torch.set_num_threads(args.threads)
    model, tokenizer = load_trained(args.model)
    model = model.float()
    labels = [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
    length = args.max_length or inference_max_length("auto", tokenizer)
    texts, y, source = texts_for(labels, args.texts, Path(args.split_file))
    torch_mb = sum(f.stat().st_size for f in Path(args.model).glob("*.safetensors")) / 1e6
    rows: list[dict[str, Any]] = []

    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    label_id = {label: i for i, label in enumerate(labels)}
    for batch in (1, 32):

        def tutorial(batch_texts: list[str], b: int = batch) -> list[int]:
            out = classify(batch_texts, batch_size=b, truncation=True, max_length=length)
            return [label_id[o["label"]] for o in out]

        rows.append(
            row("transformers.pipeline fp32", batch, torch_mb, y, measure(tutorial, texts, batch))
        )
        log.info("%s", rows[-1])

    dtypes = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if cpu_supports_bf16() else [])
    for name, dtype in dtypes:
        typed = model.to(dtype)
        for batch in (1, 32):

            def ours(batch_texts: list[str], b: int = batch, m: Any = typed) -> np.ndarray:
                return predict_proba(m, tokenizer, batch_texts, b, length).predicted

            rows.append(
                row(f"finetune PyTorch {name}", batch, torch_mb, y, measure(ours, texts, batch))
            )
            log.info("%s", rows[-1])
    model, tokenizer = load_trained(args.model)  # fresh fp32 weights (not the bf16 round trip)

    with tempfile.TemporaryDirectory() as tmp:
        work = bundle(Path(args.model), Path(tmp))
        model.set_attn_implementation("eager")
        ox.export_onnx(model, tokenizer, work / "raw.onnx", 17)
        ox.optimize_graph(work / "raw.onnx", work / "fp32.onnx", model.config)
        flags = ox.cpu_flags()
        spec = Int8Config(reduce_range="auto", operators=None)
        ox.quantize_int8(work / "fp32.onnx", work / "int8.onnx", False, spec, flags)
        ox.quantize_int8(work / "fp32.onnx", work / "int8_pc.onnx", True, spec, flags)
        sizes = {}
        for name, file in (
            ("fp32", "fp32.onnx"),
            ("int8", "int8.onnx"),
            ("int8 per-channel", "int8_pc.onnx"),
        ):
            graph = work / file
            sizes[name] = graph.stat().st_size / 1e6
            onnx_model = load_onnx(work, graph, args.threads)
            for batch in (1, 32):

                def ort(batch_texts: list[str], b: int = batch, m: Any = onnx_model) -> np.ndarray:
                    return m.predict_proba(batch_texts, b, length).predicted

                rows.append(
                    row(f"ONNX Runtime {name}", batch, sizes[name], y, measure(ort, texts, batch))
                )
                log.info("%s", rows[-1])

    table = pd.DataFrame(rows)
    print(f"\n{source}; model {args.model}; max length {length}; {args.threads} threads")
    print(f"CPU: {cpu_flags()}\n")
    print(table.to_string(index=False))

    def get(runtime: str, batch: int) -> dict[str, Any]:
        return next(r for r in rows if r["runtime"] == runtime and r["batch"] == batch)

    int8_b1, torch_b1 = get("ONNX Runtime int8", 1), get("finetune PyTorch fp32", 1)
    pipe_b1 = get("transformers.pipeline fp32", 1)
    result = {
        "texts": source,
        "model": args.model,
        "threads": args.threads,
        "cpu": cpu_flags(),
        "int8_speedup_vs_torch_fp32_b1": round(
            int8_b1["samples_per_s"] / torch_b1["samples_per_s"], 2
        ),
        "int8_speedup_vs_pipeline_b1": round(
            int8_b1["samples_per_s"] / pipe_b1["samples_per_s"], 2
        ),
        "int8_speedup_vs_torch_fp32_b32": round(
            get("ONNX Runtime int8", 32)["samples_per_s"]
            / get("finetune PyTorch fp32", 32)["samples_per_s"],
            2,
        ),
        "int8_f1_drop": round(torch_b1["f1_macro"] - int8_b1["f1_macro"], 4),
        "int8_per_channel_f1_drop": round(
            torch_b1["f1_macro"] - get("ONNX Runtime int8 per-channel", 1)["f1_macro"], 4
        ),
        "int8_size_ratio": round(sizes["int8"] / sizes["fp32"], 3),
        "onnx_fp32_speedup_vs_torch_fp32_b1": round(
            get("ONNX Runtime fp32", 1)["samples_per_s"] / torch_b1["samples_per_s"], 2
        ),
        "rows": rows,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
