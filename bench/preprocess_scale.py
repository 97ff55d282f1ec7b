"""Scale benchmark for preprocess: a generated 1,000,000-row CSV through the whole stage logic.

    python bench/preprocess_scale.py [--rows 1000000] [--keep DIR]

Generates the CSV in a temporary directory (id, text, label, channel; ~6% exact or normalised
duplicates, some conflicting labels, messy whitespace), then runs, in a fresh child process,
exactly what the preprocess stage runs: read (Arrow CSV reader), validate, clean, de-duplicate,
resolve conflicts, the configured split (data.split.method, hash by default), leakage check,
token-length report with the default model's tokenizer (sampled, ``data.report.token_sample``)
and writing the Parquet splits and reports.
The last line printed is JSON: rows, seconds, rows_per_s, peak_rss_mb (the child's peak
resident memory; CSV generation is not counted).
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = (
    "refund charged invoice payment card price parcel delivery tracking courier arrived address "
    "password login locked email reset username app crash screen update slow error battery "
    "order cancel return exchange broken damaged missing late wrong size colour quality great "
    "terrible love hate please help thanks again today yesterday week month my the is was not "
    "never no a an it this that and but with for from to of on in at by"
).split()
LABELS = ["billing", "shipping", "account", "technical", "feedback", "returns"]


def generate(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """Write the CSV in chunks (constant memory)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    with pacsv.CSVWriter(
        path,
        pa.schema(
            [
                ("id", pa.string()),
                ("text", pa.string()),
                ("label", pa.string()),
                ("channel", pa.string()),
            ]
        ),
    ) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            lengths = rng.integers(4, 40, n)
            label_idx = rng.choice(len(LABELS), n, p=[0.3, 0.25, 0.2, 0.12, 0.08, 0.05])
            texts = [
                " ".join(words[rng.integers(0, len(words), k)]) + f" #{start + i}"
                for i, k in enumerate(lengths)
            ]
            # ~3% exact repeats, ~3% normalised repeats (case/spacing), a few conflicts.
            dup = rng.random(n)
            for i in np.flatnonzero(dup < 0.06):
                j = int(rng.integers(0, max(1, i)))
                texts[i] = texts[j] if dup[i] < 0.03 else "  " + texts[j].upper() + "!"
                if dup[i] < 0.002:
                    label_idx[i] = (label_idx[j] + 1) % len(LABELS)
                else:
                    label_idx[i] = label_idx[j]
            table = pa.table(
                {
                    "id": [f"r{start + i}" for i in range(n)],
                    "text": texts,
                    "label": [LABELS[k] for k in label_idx],
                    "channel": rng.choice(["email", "chat", "phone"], n).tolist(),
                }
            )
            writer.write_table(table)


def run_preprocess(csv: Path, workdir: Path) -> dict[str, float]:
    """The preprocess stage's run() on ``csv`` with the committed params (default model)."""
    import yaml

    from finetune.data import preprocess

    repo = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "params.yaml").read_text())
    cfg["paths"] = {k: str(workdir / v) for k, v in cfg["paths"].items()}
    cfg["data"].update({"path": str(csv), "watch": str(csv)})
    began = time.perf_counter()
    result = preprocess.run(cfg)
    seconds = time.perf_counter() - began
    return {"rows_kept": result.report["rows_kept"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the CSV/outputs here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.child:  # the measured process
        out = run_preprocess(args.child / "data.csv", args.child)
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory(prefix="preprocess-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        csv = work / "data.csv"
        began = time.perf_counter()
        generate(csv, args.rows)
        logging.info(
            "generated %d rows (%.0f MB) in %.1f s",
            args.rows,
            csv.stat().st_size / 2**20,
            time.perf_counter() - began,
        )
        began = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(work)],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - began
        sys.stderr.write(child.stderr[-3000:])
        inner = json.loads(child.stdout.strip().splitlines()[-1])
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "rows": args.rows,
                "rows_kept": inner["rows_kept"],
                "seconds": round(inner["seconds"], 2),
                "seconds_with_startup": round(wall, 2),
                "rows_per_s": round(args.rows / inner["seconds"]),
                "peak_rss_mb": round(peak_kb / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
