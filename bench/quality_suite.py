"""The quality suite: the README's own-data path, default settings, on every single-label dataset.

    python bench/quality_suite.py                        # every dataset and few-shot cut
    python bench/quality_suite.py --only clinc150        # one (repeatable; names below)
    python bench/quality_suite.py --only clinc150 --stages train,evaluate   # stop earlier
    python bench/quality_suite.py --list                 # what it would run
    python bench/quality_suite.py --only sst2 --set train.time_budget=60m   # not the defaults

For each dataset it makes a copy of this working tree (the files git would see: committed or
not, not ignored) in a temporary git repository, then runs exactly what docs/own-data.md
says: ``finetune init-data DIR``, ``finetune.core.config compose data=NAME`` (``make params``)
and ``dvc repro <stage>`` for each stage in order, timing each one. Nothing is changed from the
defaults. The few-shot cuts (``<dataset>-<k>shot``) are k training and k validation rows per
class, seeded, with the full test split.

Prints one table (rows, classes, what ``auto`` resolved, minutes per stage, accuracy and macro-F1
on test, the in-run TF-IDF baseline, and the published reference given in the dataset's
SOURCE.md) and a final JSON line. Datasets come from ``../shared/datasets`` (or
``--datasets DIR``); an absent one is skipped with a line saying so. For ``reuters``
(multi-label) acc is subset accuracy and F1 macro-F1 over labels; a second table gives its
micro-F1 and both F1s at a fixed 0.5 threshold next to the tuned thresholds.
"""

# ruff: noqa: T201  (a benchmark prints its table and JSON line)
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import pandas as pd

STAGES = ("preprocess", "augment", "train", "evaluate", "error_analysis", "export")
SINGLE_LABEL = ("sst2", "sms_spam", "clinc150", "germeval2018", "newsgroups", "imdb_subset", "atis")
MULTI_LABEL = ("reuters",)
FEW_SHOT = {"clinc150": (8, 64), "sms_spam": (8, 64)}
# The headline published figure each dataset's SOURCE.md gives ("Published results"), in %;
# none where SOURCE.md has none. They are for reading the table, not targets of the code.
REFERENCES = {
    "clinc150": "BERT-base in-scope acc 96.5",
    "germeval2018": "GBERT-base macro-F1 78.17",
    "imdb_subset": "BERT-base head+tail acc 94.58 (full 25k split)",
    "newsgroups": "BERT acc 85.3 (headers kept, other setting)",
    "reuters": "SVM micro-F1 86.0 (Yang & Liu 1999)",
}


def cases(root: Path) -> dict[str, tuple[str, int | None]]:
    """name -> (source dataset, k per class or None for the whole dataset)."""
    out: dict[str, tuple[str, int | None]] = {
        name: (name, None) for name in (*SINGLE_LABEL, *MULTI_LABEL)
    }
    for name, ks in FEW_SHOT.items():
        out.update({f"{name}-{k}shot": (name, k) for k in ks})
    return out


def read_csv(path: Path) -> pd.DataFrame:
    csv.field_size_limit(sys.maxsize)  # one newsgroups text is longer than the default limit
    return pd.read_csv(path, keep_default_na=False, engine="python")


def few_shot(source: Path, k: int | None, seed: int, dest: Path) -> Path:
    """k train and k validation rows per class (seeded, disjoint) and the whole test split."""
    dest.mkdir(parents=True)
    train = read_csv(source / "train.csv")
    if (source / "validation.csv").is_file():
        pool_val = read_csv(source / "validation.csv")
    else:
        pool_val = None
    assert k is not None
    shuffled = train.sample(frac=1.0, random_state=seed)
    picked = shuffled.groupby("label").head(k)  # k per class (fewer where a class has fewer)
    rest = shuffled.drop(picked.index)
    val_from = pool_val if pool_val is not None else rest
    val = val_from.sample(frac=1.0, random_state=seed).groupby("label").head(k)
    picked[["text", "label"]].to_csv(dest / "train.csv", index=False)
    val[["text", "label"]].to_csv(dest / "validation.csv", index=False)
    shutil.copy(source / "test.csv", dest / "test.csv")
    return dest


def splits_only(source: Path, k: int | None, seed: int, dest: Path) -> Path:
    """A folder with links to the dataset's train/validation/test files only: extra files
    (clinc150's oos_test.csv) are another task, and init-data pools a folder whose files are
    not all split files."""
    dest.mkdir(parents=True)
    for name in ("train.csv", "validation.csv", "test.csv"):
        if (source / name).is_file():
            (dest / name).symlink_to((source / name).resolve())
    return dest


def workspace(dest: Path) -> Path:
    """A git repository holding this working tree as git sees it (committed or not)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=_common.REPO, capture_output=True, check=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        src = _common.REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "quality suite workspace"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True)
    return dest


def sh(cmd: list[str], cwd: Path, log_path: Path) -> float:
    """Run ``cmd`` in the workspace ``cwd`` with its own copy of the code first on the path (an
    edit of this tree while the suite runs cannot reach a running case), its output appended
    to ``log_path``; seconds taken. Fails loudly."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(cwd / "src"),
    }
    began = time.perf_counter()
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        tail = log_path.read_text().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n" + "\n".join(tail))
    return time.perf_counter() - began


def run_case(name: str, source: Path, k: int | None, seed: int, stages: list[str],
             keep: Path | None, overrides: list[str]) -> dict[str, Any]:  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=f"quality-{name}-"))
    try:
        repo = workspace(tmp / "repo")
        data = (few_shot if k else splits_only)(source, k, seed, tmp / "data" / name)
        log_path = tmp / "run.log"
        config = name.replace("-", "_")
        # --force: the workspace is this run's own copy of the project, and a preset the
        # project ships for the dataset (conf/data/sst2.yaml) is not what a user's own data
        # gets: init-data writes the config the own-data path gives
        sh(["finetune", "init-data", str(data), "--name", config, "--repo", str(repo),
            "--force"], repo, log_path)  # fmt: skip
        sh([sys.executable, "-m", "finetune.core.config", "compose", f"data={config}",
            *overrides], repo, log_path)  # fmt: skip
        minutes = {}
        for stage in stages:
            minutes[stage] = round(sh(["dvc", "repro", stage], repo, log_path) / 60, 2)
            _common.log.info("%s: %s in %.1f min", name, stage, minutes[stage])
        return {"dataset": name, **collect(repo, name), "minutes": minutes}
    finally:
        if keep is not None:
            shutil.copytree(tmp, keep / name, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def collect(repo: Path, name: str) -> dict[str, Any]:
    """The figures the table shows, from the stages' own report files."""
    data = _json(repo / "reports/preprocess/data_report.json")
    train = _json(repo / "reports/train/metrics.json")
    ev = _json(repo / "reports/evaluate/metrics.json")
    base = ev.get("baseline", {})
    source = name.split("-")[0]
    return {
        "rows": data.get("rows", {}),
        "classes": len(_json(repo / "data/processed/label_map.json").get("labels", [])) or None,
        "epochs": train.get("epochs"),
        "stop_reason": train.get("stop_reason"),
        "max_length": train.get("max_length"),
        "train_seconds": train.get("train_seconds"),
        "accuracy": ev.get("accuracy"),
        "f1_macro": ev.get("f1_macro"),
        "baseline_accuracy": base.get("accuracy"),
        "baseline_f1_macro": base.get("f1_macro"),
        "beats_baseline": ev.get("beats_baseline"),
        "reference": REFERENCES.get(source, ""),
        **(
            {
                "task": "multi_label",
                "f1_micro": ev.get("f1_micro"),
                "f1_micro_at_0_5": ev.get("f1_micro_at_0_5"),
                "f1_macro_at_0_5": ev.get("f1_macro_at_0_5"),
                "accuracy_at_0_5": ev.get("accuracy_at_0_5"),
                "baseline_f1_micro": base.get("f1_micro"),
                "thresholds_fallback": ev.get("thresholds_fallback"),
            }
            if ev.get("task") == "multi_label"
            else {}
        ),
    }


def _fmt(value: Any, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def table(rows: list[dict[str, Any]], stages: list[str]) -> None:
    short = {"preprocess": "prep", "augment": "aug", "train": "train", "evaluate": "eval",
             "error_analysis": "errors", "export": "export"}  # fmt: skip
    head = (f"{'dataset':<18} {'train':>6} {'cls':>4} {'epochs':>6} {'stop':<11} {'len':>4} "
            + " ".join(f"{short[s]:>6}" for s in stages)
            + f" {'acc':>6} {'F1':>6} {'tfidf':>6} {'tf-F1':>6}  reference")  # fmt: skip
    print("\n" + head)
    for r in rows:
        if "error" in r:
            print(f"{r['dataset']:<18} FAILED: {r['error'].splitlines()[0][:120]}")
            continue
        train_rows = r["rows"].get("train")
        print(
            f"{r['dataset']:<18} {_fmt(train_rows, 'd'):>6} {_fmt(r['classes'], 'd'):>4} "
            f"{_fmt(r['epochs'], '.2f'):>6} {r['stop_reason'] or '-':<11} "
            f"{_fmt(r['max_length'], 'd'):>4} "
            + " ".join(f"{_fmt(r['minutes'].get(s), '.1f'):>6}" for s in stages)
            + f" {_fmt(r['accuracy']):>6} {_fmt(r['f1_macro']):>6} "
            f"{_fmt(r['baseline_accuracy']):>6} {_fmt(r['baseline_f1_macro']):>6}  {r['reference']}"
        )
    multi = [r for r in rows if r.get("task") == "multi_label"]
    if multi:
        print(f"\n{'multi-label':<18} {'microF1':>7} {'@0.5':>6} {'macroF1':>7} {'@0.5':>6} "
              f"{'subset':>6} {'@0.5':>6} {'tf-mic':>6} {'tf-mac':>6} {'fallbk':>6}")  # fmt: skip
        for r in multi:
            print(
                f"{r['dataset']:<18} {_fmt(r['f1_micro']):>7} {_fmt(r['f1_micro_at_0_5']):>6} "
                f"{_fmt(r['f1_macro']):>7} {_fmt(r['f1_macro_at_0_5']):>6} "
                f"{_fmt(r['accuracy']):>6} {_fmt(r['accuracy_at_0_5']):>6} "
                f"{_fmt(r['baseline_f1_micro']):>6} {_fmt(r['baseline_f1_macro']):>6} "
                f"{_fmt(r['thresholds_fallback'], 'd'):>6}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=_common.REPO.parent / "shared/datasets")
    parser.add_argument("--only", action="append", default=[], help="a dataset (repeatable)")
    parser.add_argument("--stages", default=",".join(STAGES), help="run up to these stages")
    parser.add_argument("--seed", type=int, default=42, help="for the few-shot cuts")
    parser.add_argument("--keep", type=Path, help="copy each workspace here (logs, reports)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a Hydra override for every run (repeatable): then not the defaults",
    )  # fmt: skip
    args = parser.parse_args()

    # the commit the runs copy (the working tree at the start; "+" when it has changes)
    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=_common.REPO, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    commit += "+" if git("status", "--porcelain", "--untracked-files=no") else ""
    _common.setup_logging()
    known = cases(args.datasets)
    unknown = sorted(set(args.only) - set(known))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {sorted(known)}")
    chosen = {n: known[n] for n in (args.only or known)}
    if args.list:
        print(
            "\n".join(f"{n}: {s}{f' ({k} per class)' if k else ''}" for n, (s, k) in chosen.items())
        )
        return 0
    taken = sorted(n for n in chosen if (args.keep / n).exists()) if args.keep else []
    if taken:
        parser.error(f"--keep {args.keep} already holds {taken}: choose another directory")
    stages = [s for s in args.stages.split(",") if s]
    bad = sorted(set(stages) - set(STAGES))
    if bad:
        parser.error(f"unknown stage(s) {bad}; the stages are {', '.join(STAGES)}")
    rows: list[dict[str, Any]] = []
    for name, (source_name, k) in chosen.items():
        source = args.datasets / source_name
        if not (source / "train.csv").is_file():
            _common.log.warning("%s: %s not found, skipped", name, source)
            continue
        try:
            rows.append(run_case(name, source, k, args.seed, stages, args.keep, args.set))
        except RuntimeError as exc:
            _common.log.error("%s failed: %s", name, exc)
            rows.append({"dataset": name, "error": str(exc)})
        _common.log.info("%s: %s", name, json.dumps(rows[-1]))
    table(rows, stages)
    cpu = _common.cpu_flags()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}")
    print(json.dumps({"commit": commit, "cpu": cpu, "stages": stages, "overrides": args.set,
                      "runs": rows}))  # fmt: skip
    failed = [r["dataset"] for r in rows if "error" in r]
    if failed:
        _common.log.error("failed: %s (the table and the JSON line say why)", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
