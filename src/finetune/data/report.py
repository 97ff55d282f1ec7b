"""The data report: what preprocess (and augment) did to the data, for DVC, MLflow and people.

Files (all paths from ``paths`` in params.yaml):

- ``preprocess_report``: JSON, a DVC metrics file (rows per class per split, token lengths,
  truncation rate, duplicates/conflicts/leakage removed, rows changed by each cleaning step);
- ``token_length_plot``: CSV histogram of token lengths (DVC plot), ``token_length_image`` the
  same per split as a PNG (renders offline);
- ``preprocess_report_md``: the readable Markdown report.

MLflow design: preprocess and augment run before the train stage opens the model's MLflow run,
and their outputs are that run's inputs. So instead of a run of their own they leave files, and
the train stage logs them into the model's run with one call, inside its active run
(:func:`finetune.tracking.inputs.log_to_mlflow`), which logs the numeric data metrics
(``data.*`` and ``augment.*``) and every report file as artifacts under ``data/``. Data, report
and model then sit in one run, tagged with the data version from dvc.lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.core.artifacts import SPLITS
from finetune.core.io import StagedOutputs, write_json
from finetune.core.schema import PathsConfig
from finetune.modeling import tokens
from finetune.reporting.markdown import md_cell
from finetune.reporting.plots import token_lengths_plot

if TYPE_CHECKING:
    from finetune.data.preprocess import Preprocessed

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 40


def length_stats(lengths: np.ndarray, max_length: int) -> dict[str, float]:
    if len(lengths) == 0:
        return {}
    return {
        "mean": round(float(lengths.mean()), 2),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "p99": float(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
        "truncated": int((lengths > max_length).sum()),
        "truncation_rate": round(float((lengths > max_length).mean()), 4),
        # the share of all tokens past max_length: what the model never reads (long_text: head)
        "tokens_cut_rate": round(
            float(np.clip(lengths - max_length, 0, None).sum() / max(1, lengths.sum())), 4
        ),
    }


def build(
    result: Preprocessed,
    tokenizer: Any | None,
    max_length: int | str,
    sample: int,
    seed: int,
) -> dict[str, Any]:
    """The preprocess report plus token lengths of up to ``sample`` texts per split, and the
    truncation rate at ``max_length`` (``auto``: what the train stage will choose from these
    lengths, :func:`finetune.modeling.tokens.max_length`)."""
    report = dict(result.report)
    report["labels"] = list(result.labels)
    if tokenizer is None:
        return report
    rng = np.random.default_rng(seed)
    lengths: dict[str, np.ndarray] = {}
    measured: dict[str, int] = {}
    for name in SPLITS:
        texts = result.splits[name]["text"]
        if sample and len(texts) > sample:
            texts = texts.iloc[np.sort(rng.choice(len(texts), sample, replace=False))]
        lengths[name] = tokens.token_counts(tokenizer, texts.tolist())
        measured[name] = len(texts)
    report["max_length_setting"] = max_length
    max_length = tokens.max_length(max_length, lengths["train"], tokens.position_limit(tokenizer))
    report["max_length"] = max_length
    report["tokenizer"] = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    report["token_lengths_measured"] = measured
    report["token_lengths"] = {s: length_stats(v, max_length) for s, v in lengths.items()}
    report["_lengths"] = lengths  # raw arrays for the plots; not written to JSON
    return report


def histogram(
    lengths: Mapping[str, np.ndarray], bins: int = HISTOGRAM_BINS
) -> list[dict[str, Any]]:
    """Rows ``{tokens, train, validation, test}``: texts per split per length bin (upper edge)."""
    everything = np.concatenate([v for v in lengths.values() if len(v)] or [np.zeros(1)])
    edges = np.histogram_bin_edges(everything, bins=min(bins, max(1, int(everything.max()))))
    counts = {s: np.histogram(v, bins=edges)[0] for s, v in lengths.items()}
    return [
        {"tokens": int(np.ceil(edges[i + 1])), **{s: int(c[i]) for s, c in counts.items()}}
        for i in range(len(edges) - 1)
    ]


def markdown(report: Mapping[str, Any], conflicts: list[dict[str, Any]]) -> str:
    labels = report["labels"]
    lines = [
        "# Data report",
        "",
        f"{report['rows_read']} rows read from {report['files']} file(s)/split(s); "
        f"{report['rows_kept']} kept. Splits: "
        + (
            "the source's own (missing ones carved by the split method)"
            if report["predefined_splits"]
            else "carved by the split method"
        )
        + ".",
        "",
        "## Rows per class per split",
        "",
        "| label | " + " | ".join(SPLITS) + " |",
        "|---|" + "---:|" * len(SPLITS),
    ]
    counts = report["class_counts"]
    for label in sorted(labels, key=lambda name: -counts["train"][name]):  # largest first
        lines.append(
            f"| {md_cell(label)} | " + " | ".join(str(counts[s][label]) for s in SPLITS) + " |"
        )
    lines.append("| **total** | " + " | ".join(str(report["rows"][s]) for s in SPLITS) + " |")
    if report.get("task") == "multi_label":
        lines += [
            "",
            f"Multi-label ({report['task_reason']}): a row counts once for each of its labels.",
            "",
            "| | " + " | ".join(SPLITS) + " |",
            "|---|" + "---:|" * len(SPLITS),
            "| labels per row (mean) | "
            + " | ".join(str(report["labels_per_row"][s]) for s in SPLITS)
            + " |",
            "| rows with no label | "
            + " | ".join(str(report["rows_without_label"][s]) for s in SPLITS)
            + " |",
            "| labels with no row | "
            + " | ".join(str(len(report["labels_missing"][s])) for s in SPLITS)
            + " |",
        ]
        for s in SPLITS:
            if report["labels_missing"][s]:
                missing = ", ".join(report["labels_missing"][s])
                lines.append(f"\nLabels with no {s} row: {md_cell(missing)}.")
    lines += [
        "",
        "## Cleaning",
        "",
        "| step | rows |",
        "|---|---:|",
        *(f"| {k} (changed) | {v} |" for k, v in report["cleaning"].items()),
        f"| empty texts dropped | {report['empty_texts_dropped']} |",
        f"| exact duplicates dropped | {report['exact_duplicates_dropped']} |",
        f"| normalised duplicates dropped | {report['normalized_duplicates_dropped']} |",
        f"| texts with conflicting labels | {report['conflicting_label_texts']} "
        f"({report['conflicting_label_rows']} rows) |",
        f"| rows dropped to resolve conflicts | {report['conflict_rows_dropped']} |",
        *(
            f"| also in another split: removed from {s} | {n} |"
            for s, n in report["leakage_removed"].items()
        ),
        *(
            f"| label never in train: removed from {s} | {n} |"
            for s, n in report.get("unseen_label_rows_dropped", {}).items()
        ),
    ]
    if "token_lengths" in report:
        lines += [
            "",
            f"## Token lengths ({report['tokenizer']}, max_length {report['max_length']})",
            "",
            "| split | measured | mean | p50 | p95 | p99 | max | texts cut | rate | tokens cut |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in SPLITS:
            st = report["token_lengths"][s]
            if st:
                lines.append(
                    f"| {s} | {report['token_lengths_measured'][s]} | {st['mean']} | "
                    f"{st['p50']:g} | {st['p95']:g} | {st['p99']:g} | {st['max']} | "
                    f"{st['truncated']} | {st['truncation_rate']:.2%} | "
                    f"{st['tokens_cut_rate']:.2%} |"
                )
        lines += ["", "![token lengths](token_lengths.png)"]
    if conflicts:
        lines += ["", "## Texts with conflicting labels (first 20)", ""]
        lines += [f"- {c['text'][:200]!r}: {c['labels']}" for c in conflicts]
    return "\n".join(lines) + "\n"


def write(
    report: dict[str, Any], result: Preprocessed, paths: PathsConfig, out: StagedOutputs
) -> None:
    lengths = report.pop("_lengths", None)
    out.file(paths.preprocess_report_md).write_text(markdown(report, result.conflicts))
    # Rows per class in a file of their own; the DVC metrics file keeps the headline figures.
    write_json(out.file(paths.preprocess_class_counts), report["class_counts"])
    headline = {k: v for k, v in report.items() if k not in ("class_counts", "labels_missing")}
    train_counts = report["class_counts"]["train"].values()
    headline["smallest_class_train_rows"] = min(train_counts, default=0)
    headline["largest_class_train_rows"] = max(train_counts, default=0)
    write_json(out.file(paths.preprocess_report), headline)
    if lengths is not None:
        import csv

        rows = histogram(lengths)
        with out.file(paths.token_length_plot).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        token_lengths_plot(lengths, int(report["max_length"]), out.file(paths.token_length_image))
