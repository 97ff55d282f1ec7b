"""export stage: the trained model as ONNX variants, each scored next to PyTorch on the test
split; the fastest variant within ``export.max_f1_drop`` macro-F1 becomes the deployment
artifact (``paths.export_dir``), logged to the model's MLflow run and registered.

When no variant passes, ``paths.export_dir`` holds only ``deployment.json`` naming the PyTorch
model as the artifact (``finetune predict -m models/onnx`` then runs it), and the stage succeeds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from finetune.core.artifacts import load_split
from finetune.core.io import StagedOutputs, write_json
from finetune.core.schema import ExportConfig, PipelineConfig
from finetune.core.validate import parse
from finetune.export import onnx_export as ox
from finetune.export.scoring import ExportDecision, choose, score
from finetune.modeling import decisions
from finetune.modeling.backbones import inference_max_length
from finetune.modeling.classifier import Classifier, open_classifier
from finetune.modeling.onnx_runtime import (
    CONFIG_FILE,
    DEPLOYMENT_FILE,
    ONNX_FILE,
    available_providers,
    load_onnx,
)
from finetune.reporting.markdown import md_table
from finetune.reporting.plots import tradeoff_figure
from finetune.tracking import runs as tracking

log = logging.getLogger(__name__)

# Files of the trained model's directory that go with the graph (tokenizer, label map).
BUNDLE_FILES = (
    CONFIG_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
TABLE_COLUMNS = (
    "variant",
    "status",
    "accuracy",
    "f1_macro",
    "f1_macro_batch1",
    "f1_drop",
    "ece",
    "agreement_with_pytorch",
    "size_mb",
    "load_seconds",
    "latency_ms_p50_batch1",
    "latency_ms_p95_batch1",
)


def dir_size(path: Path, pattern: str) -> int:
    return sum(f.stat().st_size for f in path.glob(pattern) if f.is_file())


def bundle(model_dir: Path, dest: Path) -> Path:
    """``dest`` with the tokenizer files and config of the trained model (no weights)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, dest / name)
    if not (dest / "tokenizer.json").is_file():
        raise ox.ExportError(
            f"{model_dir} has no tokenizer.json (a fast tokenizer): the ONNX model is served "
            "with the `tokenizers` library, which needs it"
        )
    return dest


def make_variants(
    raw: Path, work: Path, model_config: Any, spec: ExportConfig, gpu: bool
) -> dict[str, tuple[Path | None, dict[str, Any]]]:
    """variant -> (graph file or None when skipped, how it was made)."""
    flags = ox.cpu_flags()  # read once per process (core.machine)
    fp32 = work / "fp32.onnx"
    fusions = ox.optimize_graph(raw, fp32, model_config) if spec.optimize else {}
    if not spec.optimize:
        shutil.copy2(raw, fp32)
    made: dict[str, tuple[Path | None, dict[str, Any]]] = {}
    for name in spec.variants:
        if name == "fp32":
            made[name] = (fp32, {"quantization": "none (fp32)", "fusions": fusions})
        elif name in ("int8", "int8_per_channel"):
            dest = work / f"{name}.onnx"
            details = ox.quantize_int8(fp32, dest, name == "int8_per_channel", spec.int8, flags)
            made[name] = (dest, {**details, "cpu": ox.int8_isa(flags)})
        elif name == "fp16":
            if not gpu:
                made[name] = (None, {"reason": "no CUDA GPU with onnxruntime's CUDA provider"})
            else:
                dest = work / "fp16.onnx"
                made[name] = (dest, ox.to_fp16(fp32, dest))
    return made


def table(rows: list[dict[str, Any]], decision: ExportDecision) -> str:
    frame = pd.DataFrame(
        [{k: r.get(k, decision.f1_drops.get(r["variant"])) for k in TABLE_COLUMNS} for r in rows]
    )
    throughput = [k for r in rows for k in r if k.startswith("throughput_")]
    if throughput:
        frame[throughput[0]] = [r.get(throughput[0]) for r in rows]
    frame = frame.astype(object).where(frame.notna(), "-")
    return (
        "# Export: ONNX variants against PyTorch\n\n"
        + md_table(frame)
        + f"\n**Decision:** {decision.reason}.\n"
    )


def score_all(
    cfg: PipelineConfig,
    work: Path,
    made: dict[str, tuple[Path | None, dict[str, Any]]],
    loaded: tuple[Classifier, float],
    df: pd.DataFrame,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The PyTorch model (``loaded``: the classifier, seconds its load took) and every
    variant on the same split ``df``: (rows, PyTorch row)."""
    import torch

    paths, spec = cfg.paths, cfg.export
    threads = int(spec.num_threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    pytorch, torch_load = loaded
    labels = pytorch.labels
    texts = df["text"].tolist()
    y = (
        decisions.multi_hot(df["label_ids"].tolist(), len(labels)) > 0
        if pytorch.thresholds is not None
        else df["label_id"].to_numpy().astype(int)
    )
    max_length = inference_max_length(cfg.model.max_length, pytorch.tokenizer)
    common = {
        "latency_texts": spec.latency_texts,
        "batch_size": spec.throughput_batch_size,
        "max_length": max_length,
        "n_bins": cfg.evaluate.calibration_bins,
        "thresholds": pytorch.thresholds,
    }

    reference = score(
        "pytorch",
        pytorch.predict,
        texts,
        y,
        labels,
        None,
        size_bytes=dir_size(Path(paths.model_dir), "*.safetensors"),
        load_seconds=torch_load,
        details={"quantization": "none (fp32)", "runtime": f"torch {torch.__version__}"},
        **common,
    )
    reference_ids = reference.pop("_predicted")
    rows = [reference]
    for name, (graph, details) in made.items():
        if graph is None:
            rows.append({"variant": name, "status": "skipped", **details})
            log.info("variant %s skipped: %s", name, details["reason"])
            continue
        classifier = load_onnx(work, graph, threads, gpu=name == "fp16")
        row = score(
            name,
            classifier.predict_proba,
            texts,
            y,
            labels,
            reference_ids,
            size_bytes=graph.stat().st_size,
            load_seconds=classifier.load_seconds,
            details={**details, "providers": classifier.providers},
            **common,
        )
        row.pop("_predicted")
        rows.append(row)
        log.info(
            "%s: accuracy %.4f, macro-F1 %.4f (one text per call %.4f), agreement %.3f, "
            "%.1f MB, p50 %.2f ms",
            name,
            row["accuracy"],
            row["f1_macro"],
            row["f1_macro_batch1"],
            row["agreement_with_pytorch"],
            row["size_mb"],
            row["latency_ms_p50_batch1"],
        )
    return rows, reference


def dvc_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The export stage's DVC metrics (``paths.metrics_export``): the variant chosen and its
    median latency at batch 1 (ms), the figures `dvc exp show` lists per experiment. Every
    variant's figures and the decision stay in ``paths.export_metrics``."""
    chosen = metrics["chosen"]
    return {
        "chosen": chosen,
        "latency_ms": metrics["variants"][chosen]["latency_ms_p50_batch1"],
    }


def flat_metrics(rows: list[dict[str, Any]], decision: ExportDecision) -> dict[str, float]:
    """export_<variant>_<figure> for MLflow."""
    out: dict[str, float] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"export_{row['variant']}_{key}"] = float(value)
    for name, drop in decision.f1_drops.items():
        out[f"export_{name}_f1_drop"] = float(drop)
    return out


def write_deployment(
    dest: Path,
    work: Path,
    graph: Path | None,
    row: dict[str, Any] | None,
    cfg: PipelineConfig,
    decision: ExportDecision,
) -> dict[str, Any]:
    """Fill ``dest`` (the staged export dir): the chosen graph + bundle, or a pointer to the
    PyTorch model when no variant passed."""
    info: dict[str, Any] = {"decision": asdict(decision), "split": cfg.evaluate.split}
    if graph is None or row is None:
        # relative to the deployment directory: it holds wherever the repository is
        model_dir = os.path.relpath(
            Path(cfg.paths.model_dir).absolute(), Path(cfg.paths.export_dir).absolute()
        )
        info |= {"format": "pytorch", "model_dir": model_dir}
    else:
        for name in BUNDLE_FILES:
            if (work / name).is_file():
                shutil.copy2(work / name, dest / name)
        shutil.copy2(graph, dest / ONNX_FILE)
        info |= {
            "format": "onnx",
            "variant": row["variant"],
            "opset": cfg.export.opset,
            "figures": {k: v for k, v in row.items() if k not in ("providers",)},
        }
    write_json(dest / DEPLOYMENT_FILE, info)
    return info


def under_final_name(staged: Path, final: str | Path, into: Path) -> Path:
    """A copy of the staged output ``staged`` (a file or folder) named as its final path
    ``final``, in ``into``: MLflow logs a file or folder under its own name, and a staged one
    has a temp name (``.metrics.json.<random>.tmp``) until the stage succeeds."""
    into.mkdir(parents=True, exist_ok=True)
    named = into / Path(final).name
    if staged.is_dir():
        shutil.copytree(staged, named)
    else:
        shutil.copy2(staged, named)
    return named


def log_to_mlflow(
    rows: list[dict[str, Any]],
    decision: ExportDecision,
    cfg: PipelineConfig,
    files: dict[str, Path],
    deployed: Path | None,
    example: list[str],
) -> None:
    import mlflow

    from finetune.export.registration import log_onnx_model, source_version

    mlflow.log_metrics(flat_metrics(rows, decision))
    chosen = next((r for r in rows if r["variant"] == decision.chosen), None)
    mlflow.set_tags(
        {
            "export.chosen": decision.chosen or "pytorch",
            "export.decision": decision.reason[:4000],
            "export.accepted": ",".join(decision.accepted) or "none",
        }
    )
    for key, path in files.items():
        if key != "headline":  # its figures are the run's metrics already
            mlflow.log_artifact(str(path), "export")
    if deployed is None or chosen is None or not cfg.tracking.log_model:
        return
    name = cfg.export.registered_model_name if cfg.tracking.registered_model_name else None
    run_id = mlflow.active_run().info.run_id
    source = source_version(cfg.tracking.registered_model_name, run_id)
    tags = {
        "format": "onnx",
        "variant": str(chosen["variant"]),
        "quantization": str(chosen.get("quantization")),
        "per_channel": str(chosen.get("per_channel", False)),
        "reduce_range": str(chosen.get("reduce_range", False)),
        "opset": str(cfg.export.opset),
        "source_model": source,
        "source_run_id": run_id,
        "f1_drop": f"{decision.f1_drops[decision.chosen]:.4f}" if decision.chosen else "",
    }
    spec = cfg.monitor
    settings = {
        "log_flush_rows": spec.log_flush_rows,
        "log_flush_seconds": spec.log_flush_seconds,
        "log_retention_days": spec.log_retention_days,
    }
    version = log_onnx_model(str(deployed), example, name, tags, settings)
    if version:
        mlflow.set_tag("export.registered", f"{name} v{version}")


def run(cfg: PipelineConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Stage entry: models/model -> ONNX variants scored -> models/onnx + reports/export."""
    import matplotlib.pyplot as plt
    import torch

    cfg = parse(cfg)
    paths, spec = cfg.paths, cfg.export
    gpu = torch.cuda.is_available() and "CUDAExecutionProvider" in available_providers(True)
    with tempfile.TemporaryDirectory(prefix="finetune-export-") as tmp:
        work = bundle(Path(paths.model_dir), Path(tmp))
        began = time.perf_counter()
        pytorch = open_classifier(paths.model_dir)
        loaded = (pytorch, time.perf_counter() - began)
        model, tokenizer = pytorch.model, pytorch.tokenizer
        attention = model.config._attn_implementation
        model.set_attn_implementation("eager")  # plain ops: the graph onnxruntime fuses
        raw = work / "raw.onnx"
        began = time.perf_counter()
        ox.export_onnx(model, tokenizer, raw, spec.opset)
        model.set_attn_implementation(attention)  # PyTorch is scored as it runs elsewhere
        made = make_variants(raw, work, model.config, spec, gpu)
        log.info(
            "exported and made %d variant(s) in %.1f s", len(made), time.perf_counter() - began
        )
        df = load_split(paths.processed_dir, cfg.evaluate.split)
        rows, reference = score_all(cfg, work, made, loaded, df)
        decision = choose(rows[1:], reference, spec.max_f1_drop)
        (log.info if decision.chosen else log.warning)("export gate: %s", decision.reason)
        chosen = next((r for r in rows if r["variant"] == decision.chosen), None)
        graph = made[decision.chosen][0] if decision.chosen else None
        metrics = {
            "split": cfg.evaluate.split,
            "chosen": decision.chosen or "pytorch",
            "decision": asdict(decision),
            "max_f1_drop": spec.max_f1_drop,
            "cpu": ox.int8_isa(ox.cpu_flags()),
            "threads": int(spec.num_threads or os.cpu_count() or 1),
            "variants": {r["variant"]: r for r in rows},
        }
        scored = [r for r in rows if r["status"] == "scored"]
        figure = tradeoff_figure(scored, decision.chosen)
        with (
            tracking.train_run(paths.run_info, cfg.tracking, stage="export"),
            StagedOutputs() as out,
        ):
            deployed = out.dir(paths.export_dir)
            deployed.mkdir(parents=True, exist_ok=True)
            write_deployment(deployed, work, graph, chosen, cfg, decision)
            finals = {
                "metrics": paths.export_metrics,
                "headline": paths.metrics_export,
                "report": paths.export_report,
                "plot": paths.export_plot,
                "image": paths.export_image,
            }
            files = {key: out.file(final) for key, final in finals.items()}
            write_json(files["metrics"], metrics)
            write_json(files["headline"], dvc_metrics(metrics))
            files["report"].write_text(table(rows, decision), encoding="utf-8")
            pd.DataFrame(
                [
                    {
                        "variant": r["variant"],
                        "latency_ms_p50_batch1": r["latency_ms_p50_batch1"],
                        "accuracy": r["accuracy"],
                        "f1_macro": r["f1_macro"],
                        "size_mb": r["size_mb"],
                    }
                    for r in scored
                ]
            ).to_csv(files["plot"], index=False)
            figure.savefig(files["image"], format="png", dpi=110)
            plt.close(figure)
            example = df["text"].head(2).tolist()
            # logged while still staged (a failure to log leaves no outputs), under final names
            named = Path(tmp) / "logged"
            logged = {k: under_final_name(files[k], finals[k], named / k) for k in files}
            model = (
                under_final_name(deployed, paths.export_dir, named / "model")
                if graph is not None
                else None
            )
            log_to_mlflow(rows, decision, cfg, logged, model, example)
    return metrics
