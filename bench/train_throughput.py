"""Training throughput: our train step against the tutorial recipe, side by side in one run.

    python bench/train_throughput.py            # 1,024 sst2 examples, both recipes
    python bench/train_throughput.py --quick    # smoke check: fewer examples and steps
    python bench/train_throughput.py --lengths  # tokens/s by sequence length (64 ... 512)

Both run the Hugging Face Trainer on the same model (params.yaml `model`), the same 1,024
examples of ../shared/datasets/sst2/train.csv (the demo data when absent: said in the output),
the same batch size and this machine:

- ours: `finetune.training.trainer.build_trainer` exactly as the train stage builds it: dynamic
  padding to
  the batch's longest text (multiple of 8), length-grouped batches, `train.precision` (auto =
  bf16 autocast on CPUs with avx512_bf16/AMX), fused AdamW, SDPA attention;
- tutorial: `tokenizer(..., padding="max_length", max_length=512)`, fp32, random batches,
  Trainer defaults otherwise.

Each is timed over steady-state optimizer steps (the first steps are warm-up and not counted),
wall time between consecutive step ends (data loading, forward, backward, optimizer). Tokens/s
counts real (non-padding) tokens, the work both recipes must do. MFU = model training FLOP/s
(6 x non-embedding params x tokens + attention, see bench/_common.py) over the peak matmul
FLOP/s of the same dtype measured by this script on this machine. Prints a table, then one JSON
line.

``--lengths`` measures instead how the cost per token grows with the sequence length: texts of
exactly 64, 128, 256 and 512 tokens (windows of the same data, truncated), the same number of
tokens in every batch (``--batch-tokens``), the model built as the train stage builds it
(``build_model``, ``train.precision``, fused AdamW) with the backbone's dropout on attention
weights and without it (``train.attention_dropout``), and inference as evaluate runs it
(``predict_proba``, tokenisation included). Each figure is also given per token relative to 64
tokens (goal: at least 0.70 at 512, for training with ``train.attention_dropout: auto`` and for
inference).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

BASELINE_MAX_LENGTH = 512


class Recorder:
    """Collator wrapper remembering (rows, padded length, real tokens) of every batch, in order."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.collate(features)
        rows, seq = batch["input_ids"].shape
        self.batches.append((int(rows), int(seq), int(batch["attention_mask"].sum())))
        return batch


def _step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.ends = [time.perf_counter()]

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.ends.append(time.perf_counter())

    return StepTimer()


def measure(trainer: Any, recorder: Recorder, timer: Any, warmup: int, model: Any) -> dict:
    trainer.train()
    durations = [b - a for a, b in zip(timer.ends, timer.ends[1:], strict=False)]
    steps = range(warmup, len(durations))
    seconds = sum(durations[i] for i in steps)
    rows = sum(recorder.batches[i][0] for i in steps)
    padded = sum(recorder.batches[i][0] * recorder.batches[i][1] for i in steps)
    real = sum(recorder.batches[i][2] for i in steps)
    flops = sum(
        _common.train_flops(model, recorder.batches[i][2], recorder.batches[i][1]) for i in steps
    )
    return {
        "steps_timed": len(steps),
        "seconds": round(seconds, 3),
        "samples_per_s": rows / seconds,
        "tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "flops_per_s": flops / seconds,
        "mean_padded_length": padded / rows,
    }


def run_ours(df: Any, labels: list[str], cfg: Any, steps: int, warmup: int, out: str) -> dict:
    from datasets import Dataset

    from finetune.training import hardware, trainer

    spec = cfg.train.model_copy(
        update={"max_steps": warmup + steps, "early_stopping_patience": None, "progress_bar": False}
    )
    precision = hardware.select_precision(spec.precision)
    model, tokenizer = trainer.build_model(cfg.model.name_or_path, labels, spec, cfg.model.pooling)
    train_ds = trainer.tokenize(df, tokenizer, int(cfg.model.max_length))
    val_ds = Dataset.from_dict(train_ds[:8])
    timer = _step_timer()
    ours = trainer.build_trainer(
        model, tokenizer, train_ds, val_ds, spec, precision, out, cfg.seed,
        callbacks=[timer], progress=False,
    )  # fmt: skip
    recorder = Recorder(ours.data_collator)
    ours.data_collator = recorder
    result = measure(ours, recorder, timer, warmup, model)
    attn = getattr(model.config, "_attn_implementation", "?")
    return {
        **result,
        "precision": precision,
        "recipe": f"dynamic padding, length-grouped, {precision}, {spec.optim}, {attn} attention",
    }


def run_tutorial(df: Any, labels: list[str], cfg: Any, steps: int, warmup: int, out: str) -> dict:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    from finetune.modeling.backbones import load_classifier
    from finetune.modeling.tokens import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = load_classifier(cfg.model.name_or_path, labels, "cls")
    ds = Dataset.from_dict({"text": df["text"].tolist(), "labels": df["label_id"].tolist()})
    ds = ds.map(
        lambda b: tokenizer(
            b["text"], padding="max_length", truncation=True, max_length=BASELINE_MAX_LENGTH
        ),
        batched=True,
        remove_columns=["text"],
    )
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=int(cfg.train.batch_size),
        learning_rate=float(cfg.train.learning_rate),
        max_steps=warmup + steps,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=cfg.seed,
    )
    timer = _step_timer()
    recorder = Recorder(default_data_collator)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
        data_collator=recorder,
        callbacks=[timer],
    )
    result = measure(trainer, recorder, timer, warmup, model)
    return {
        **result,
        "precision": "fp32",
        "recipe": f"padding=max_length {BASELINE_MAX_LENGTH}, fp32",
    }


def length_windows(table: Any, length: int, n: int) -> list[str]:
    """``n`` texts of at least ``length`` words, consecutive windows over the table's words."""
    words = " ".join(table["text"].astype(str)).split()
    if len(words) < length:
        raise SystemExit(f"the data has {len(words)} words: too few for texts of {length}")
    return [" ".join(words[(i * length) % (len(words) - length) :][:length]) for i in range(n)]


def train_tokens_per_s(
    cfg: Any, labels: list[str], texts: list[str], length: int, dropout: float | None, steps: int
) -> float:
    """Training tokens/s at exactly ``length`` tokens a text: forward, backward, fused AdamW."""
    import torch

    from finetune.training import hardware, trainer

    precision = hardware.select_precision(cfg.train.precision)
    model, tokenizer = trainer.build_model(
        cfg.model.name_or_path, labels, cfg.train, cfg.model.pooling, dropout
    )
    enc = tokenizer(texts, truncation=True, max_length=length, padding=True, return_tensors="pt")
    y = torch.arange(len(texts)) % len(labels)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    model.train()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(**enc, labels=y).loss
        loss.backward()
        optim.step()
        optim.zero_grad()

    step()  # warm-up
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * int(enc["attention_mask"].sum()) / (time.perf_counter() - began)


def infer_tokens_per_s(cfg: Any, labels: list[str], texts: list[str], length: int) -> float:
    """Inference tokens/s as evaluate scores a split (``predict_proba``: tokenisation, batches
    of ``evaluate.batch_size``, the model's own precision)."""
    from finetune.modeling.backbones import load_classifier
    from finetune.modeling.inference import predict_proba
    from finetune.modeling.tokens import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = load_classifier(cfg.model.name_or_path, labels, cfg.model.pooling)
    batch = int(cfg.evaluate.batch_size)
    predict_proba(model, tokenizer, texts[:batch], batch, length)  # warm-up
    began = time.perf_counter()
    predict_proba(model, tokenizer, texts, batch, length)
    return len(texts) * length / (time.perf_counter() - began)


def by_length(args: argparse.Namespace) -> None:
    import torch

    from finetune.modeling.backbones import backbone_attention_dropout
    from finetune.training.layers import resolve_attention_dropout

    cfg = _common.params()
    table, source = _common.load_table("train")
    labels = _common.labels_of(table)
    found = backbone_attention_dropout(cfg.model.name_or_path)
    own = found[1] if found else None
    rows = []
    for length in args.length:
        n = max(1, args.batch_tokens // length)
        texts = length_windows(table, length, n)
        _common.log.info("length %d: batches of %d texts", length, n)
        with_dropout = train_tokens_per_s(cfg, labels, texts, length, None, args.steps)
        without = train_tokens_per_s(cfg, labels, texts, length, 0.0, args.steps)
        auto = resolve_attention_dropout("auto", length, cfg.model.name_or_path)
        infer = infer_tokens_per_s(cfg, labels, length_windows(table, length, 4 * n), length)
        rows.append(
            {
                "length": length,
                "texts_per_batch": n,
                "train_backbone_dropout": with_dropout,
                "train_no_attention_dropout": without,
                "train_auto": without if auto == 0.0 else with_dropout,
                "auto_attention_dropout": own if auto is None else auto,
                "inference": infer,
            }
        )
    first = rows[0]
    for row in rows:
        for key in (
            "train_backbone_dropout",
            "train_no_attention_dropout",
            "train_auto",
            "inference",
        ):
            row[f"{key}_vs_{first['length']}"] = row[key] / first[key]
    print(f"\nmodel {cfg.model.name} ({cfg.model.name_or_path}), data: {source}, "
          f"{args.batch_tokens} tokens a batch, {torch.get_num_threads()} threads, "
          f"attention dropout of the backbone: {own}")  # fmt: skip
    header = (
        f"{'length':>6} {'texts':>5} {'train, dropout ' + str(own):>18} {'train, 0':>10} "
        f"{'train auto':>11} {'auto':>5} {'inference':>10}   "
        f"(tokens/s; per token vs {first['length']})"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = [
            f"{r[k]:>7.0f} {r[k + '_vs_' + str(first['length'])]:>4.2f}x"
            for k in (
                "train_backbone_dropout",
                "train_no_attention_dropout",
                "train_auto",
                "inference",
            )
        ]
        print(
            f"{r['length']:>6} {r['texts_per_batch']:>5} {cells[0]:>18} {cells[1]:>10} "
            f"{cells[2]:>11} {r['auto_attention_dropout']!s:>5} {cells[3]:>10}"
        )
    last = rows[-1]
    key = f"_vs_{first['length']}"
    print(
        f"at {last['length']} tokens, per token vs {first['length']}: training (auto) "
        f"{last['train_auto' + key]:.2f}, inference {last['inference' + key]:.2f}   (goal >= 0.70)"
    )
    summary = {
        "mode": "lengths",
        "data": source,
        "batch_tokens": args.batch_tokens,
        "threads": torch.get_num_threads(),
        "cpu": _common.cpu_flags(),
        "rows": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        ],
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: few examples/steps")
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--ours-steps", type=int, default=32, help="timed steps of ours")
    parser.add_argument("--tutorial-steps", type=int, default=6, help="timed tutorial steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps of each")
    parser.add_argument("--lengths", action="store_true", help="tokens/s by sequence length")
    parser.add_argument("--length", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--batch-tokens", type=int, default=8192, help="--lengths: per batch")
    parser.add_argument("--steps", type=int, default=3, help="--lengths: timed steps each")
    args = parser.parse_args()
    if args.lengths:
        _common.setup_logging()
        if args.quick:
            args.length, args.batch_tokens, args.steps = [32, 64], 512, 1
        by_length(args)
        return
    if args.quick:
        args.examples, args.ours_steps, args.tutorial_steps = 128, 4, 1
    _common.setup_logging()
    import torch

    cfg = _common.params()
    table, source = _common.load_table("train")
    df = table.sample(n=min(args.examples, len(table)), random_state=0).reset_index(drop=True)
    labels = _common.labels_of(table)
    warmup = 1 if args.quick else args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        _common.log.info("ours: %d timed steps after %d warm-up", args.ours_steps, warmup)
        ours = run_ours(df, labels, cfg, args.ours_steps, warmup, f"{tmp}/ours")
        _common.log.info("tutorial: %d timed steps after %d warm-up", args.tutorial_steps, warmup)
        base = run_tutorial(df, labels, cfg, args.tutorial_steps, warmup, f"{tmp}/tutorial")
    peaks = {p: _common.peak_matmul_flops(p) for p in sorted({ours["precision"], "fp32"})}
    ours["mfu"] = ours["flops_per_s"] / peaks[ours["precision"]]
    base["mfu"] = base["flops_per_s"] / peaks["fp32"]
    ratio = ours["samples_per_s"] / base["samples_per_s"]

    print(f"\nmodel {cfg.model.name} ({cfg.model.name_or_path}), data: {source}, "
          f"{len(df)} examples, batch {cfg.train.batch_size}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("peak matmul (2048^3, measured now): "
          + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()))  # fmt: skip
    header = (
        f"{'recipe':<62} {'steps':>5} {'samples/s':>10} {'tokens/s':>9} {'pad len':>7} {'MFU':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, r in (("ours", ours), ("tutorial", base)):
        print(
            f"{name + ': ' + r['recipe']:<62} {r['steps_timed']:>5} {r['samples_per_s']:>10.1f} "
            f"{r['tokens_per_s']:>9.0f} {r['mean_padded_length']:>7.1f} {r['mfu']:>6.1%}"
        )
    print(f"ratio (samples/s ours / tutorial): {ratio:.1f}x   (goal >= 40x)")
    print(f"MFU ours ({ours['precision']}): {ours['mfu']:.1%}   (goal >= 30% in bf16)")
    summary = {
        "data": source,
        "examples": len(df),
        "batch_size": int(cfg.train.batch_size),
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "peak_flops": {k: round(v) for k, v in peaks.items()},
        "ours": {k: round(v, 4) if isinstance(v, float) else v for k, v in ours.items()},
        "tutorial": {k: round(v, 4) if isinstance(v, float) else v for k, v in base.items()},
        "ratio": round(ratio, 2),
        "mfu": round(ours["mfu"], 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
