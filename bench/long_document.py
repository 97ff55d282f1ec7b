"""Predict latency for one long document at batch 1, read whole in windows (chunks).

    python bench/long_document.py --model models/model [--words 5000] [--repeats 5]

The trained model is read the way ``model.long_text: chunks`` reads a text (its config's
long-text keys set to chunks in a copy, whatever it was trained with: the weights are the same
and the reading is what is timed), at the model's own max length, and exported with the export
stage's own functions: ONNX fp32 (optimised graph) and dynamic int8. Rows: PyTorch fp32, ONNX
fp32 and ONNX int8, each reading only the first window (``head``) and the whole document
(``chunks``): windows, latency per call (tokenisation included; p50 and min of ``--repeats``
calls after one warm-up) and tokens/s. A dynamically quantized graph runs one window per call
(the activations' scale must not depend on what is batched with it); the others run the
windows in batches of ``--window-batch``.

The document: test reviews of ../shared/datasets/imdb_subset joined until ``--words`` words
(whitespace-separated), else the demo data's texts. The last line is JSON.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import DEMO, REPO, cpu_flags, setup_logging

log = logging.getLogger("bench")
IMDB = REPO.parent / "shared" / "datasets" / "imdb_subset" / "test.csv"

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=str(REPO / "models" / "model"))
parser.add_argument("--words", type=int, default=5000)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--window-batch", type=int, default=16)
parser.add_argument("--threads", type=int, default=os.cpu_count())


def document(words: int) -> tuple[str, str]:
    """(a text of exactly ``words`` words, where they came from)."""
    source = IMDB if IMDB.is_file() else DEMO
    texts = pd.read_csv(source)["text"].dropna().astype(str)
    out: list[str] = []
    for text in texts:
        out.extend(text.split())
        if len(out) >= words:
            break
    if len(out) < words:
        raise SystemExit(f"{source} has only {len(out)} words; ask for fewer with --words")
    return " ".join(out[:words]), f"{source.parent.name}/{source.name}"


def timed(predict: Any, text: str, repeats: int) -> tuple[list[float], Any]:
    """Seconds of each of ``repeats`` calls of ``predict([text])`` after a warm-up, and its
    last output."""
    out = predict([text])
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = predict([text])
        seconds.append(time.perf_counter() - began)
    return seconds, out


def main() -> int:
    args = parser.parse_args()
    setup_logging()
    import torch

    from finetune.core.schema import Int8Config
    from finetune.export import onnx_export as ox
    from finetune.export.export import bundle
    from finetune.modeling import truncation
    from finetune.modeling.backbones import inference_max_length, load_trained
    from finetune.modeling.inference import predict_proba
    from finetune.modeling.onnx_runtime import load_onnx

    torch.set_num_threads(args.threads)
    text, source = document(args.words)
    model, tokenizer = load_trained(args.model)
    model = model.float().eval()
    length = inference_max_length("auto", tokenizer)
    tokens = len(tokenizer(text, truncation=False, verbose=False)["input_ids"])
    readings = {
        "head": truncation.HEAD_ONLY,
        "chunks": truncation.LongText(truncation.CHUNKS, pool=truncation.MEAN),
    }
    rows: list[dict[str, Any]] = []
    probs: dict[tuple[str, str], Any] = {}

    def add(runtime: str, reading: str, windows: int, seconds: list[float], out: Any) -> None:
        p50 = statistics.median(seconds)
        read = tokens if reading == "chunks" else min(tokens, length)
        rows.append(
            {
                "runtime": runtime,
                "reading": reading,
                "windows": windows,
                "latency_ms_p50": round(p50 * 1000, 1),
                "latency_ms_min": round(min(seconds) * 1000, 1),
                "tokens_per_s": round(read / p50),
            }
        )
        probs[runtime, reading] = out.probabilities[0]
        log.info("%s", rows[-1])

    for reading, long_text in readings.items():
        model.config.update(long_text.config())
        windows = len(truncation.encode(tokenizer, [text], length, long_text)[1])
        seconds, out = timed(
            lambda t: predict_proba(model, tokenizer, t, args.window_batch, length),
            text,
            args.repeats,
        )
        add("PyTorch fp32", reading, windows, seconds, out)

    with tempfile.TemporaryDirectory() as tmp:
        work = bundle(Path(args.model), Path(tmp))
        fresh, _ = load_trained(args.model)
        fresh.set_attn_implementation("eager")
        ox.export_onnx(fresh, tokenizer, work / "raw.onnx", 17)
        ox.optimize_graph(work / "raw.onnx", work / "fp32.onnx", fresh.config)
        spec = Int8Config(reduce_range="auto", operators=None)
        ox.quantize_int8(work / "fp32.onnx", work / "int8.onnx", False, spec, ox.cpu_flags())
        config_file = work / "config.json"
        base = json.loads(config_file.read_text())
        for reading, long_text in readings.items():
            config_file.write_text(json.dumps({**base, **long_text.config()}))
            for name in ("fp32", "int8"):
                onnx_model = load_onnx(work, work / f"{name}.onnx", args.threads)
                windows = len(onnx_model.encode([text], length)[1])
                seconds, out = timed(
                    lambda t, m=onnx_model: m.predict_proba(t, args.window_batch, length),
                    text,
                    args.repeats,
                )
                add(f"ONNX Runtime {name}", reading, windows, seconds, out)

    table = pd.DataFrame(rows)
    print(
        f"\none document of {args.words} words ({tokens} tokens) from {source}; model "
        f"{args.model}; max length {length}; {args.threads} threads; {args.repeats} calls each"
    )
    print(f"CPU: {cpu_flags()}\n")
    print(table.to_string(index=False))
    int8 = next(r for r in rows if r["runtime"] == "ONNX Runtime int8" and r["reading"] == "chunks")
    torch_chunks = next(
        r for r in rows if r["runtime"] == "PyTorch fp32" and r["reading"] == "chunks"
    )
    gap = abs(probs["ONNX Runtime int8", "chunks"] - probs["PyTorch fp32", "chunks"]).max()
    result = {
        "words": args.words,
        "tokens": tokens,
        "windows": int8["windows"],
        "max_length": length,
        "threads": args.threads,
        "cpu": cpu_flags(),
        "int8_chunks_latency_ms_p50": int8["latency_ms_p50"],
        "torch_fp32_chunks_latency_ms_p50": torch_chunks["latency_ms_p50"],
        "int8_speedup_vs_torch_fp32": round(
            torch_chunks["latency_ms_p50"] / int8["latency_ms_p50"], 2
        ),
        "int8_vs_torch_max_probability_gap": round(float(gap), 4),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
