"""export stage: ONNX variants of the tiny model scored against PyTorch, the gate, the deployment
directory, the registered ONNX version and `finetune predict` on ONNX Runtime."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from finetune import cli
from finetune.core.schema import Int8Config
from finetune.export import export
from finetune.export import onnx_export as ox
from finetune.export.scoring import choose
from finetune.modeling.backbones import load_trained
from finetune.modeling.classifier import open_classifier
from finetune.modeling.onnx_pyfunc import as_texts, predictions_table
from finetune.modeling.onnx_runtime import load_onnx, read_deployment
from tests.conftest import make_stage_cfg, make_texts, train_tiny

LABELS = ["account", "billing", "shipping"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    cfg = make_stage_cfg(tmp_path_factory.mktemp("export"), tiny_model_dir, make_texts())
    cfg["export"]["latency_texts"] = 10
    return train_tiny(cfg)


@pytest.fixture(scope="module")
def exported(trained: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(trained)
    cfg["export"]["max_f1_drop"] = 1.0  # the tiny model: any variant that runs is accepted
    metrics = export.run(cfg)
    return {"cfg": cfg, "metrics": metrics}


def test_every_variant_scored_next_to_pytorch(exported: dict[str, Any]) -> None:
    metrics, paths = exported["metrics"], exported["cfg"]["paths"]
    on_disk = json.loads(Path(paths["export_metrics"]).read_text())
    assert on_disk["chosen"] == metrics["chosen"]
    headline = json.loads(Path(paths["metrics_export"]).read_text())  # the DVC metrics file
    chosen = on_disk["variants"][metrics["chosen"]]
    assert headline == {"chosen": metrics["chosen"], "latency_ms": chosen["latency_ms_p50_batch1"]}
    variants = on_disk["variants"]
    assert set(variants) == {"pytorch", "fp32", "int8", "int8_per_channel", "fp16"}
    if not torch.cuda.is_available():
        assert variants["fp16"]["status"] == "skipped"
        assert "CUDA" in variants["fp16"]["reason"]
    for name in ("pytorch", "fp32", "int8", "int8_per_channel"):
        row = variants[name]
        for key in (
            "accuracy",
            "f1_macro",
            "ece",
            "size_mb",
            "load_seconds",
            "latency_ms_p50_batch1",
            "latency_ms_p95_batch1",
            "throughput_samples_per_s_batch32",
            "f1_macro_batch1",
            "accuracy_batch1",
        ):
            assert isinstance(row[key], float | int), (name, key)
        assert row["latency_ms_p95_batch1"] >= row["latency_ms_p50_batch1"] > 0
    # the optimised fp32 graph computes what PyTorch computes
    assert variants["fp32"]["agreement_with_pytorch"] == 1.0
    assert variants["fp32"]["agreement_with_pytorch_batch1"] == 1.0
    assert variants["pytorch"]["batch1_texts"] == variants["fp32"]["batch1_texts"] == 10
    assert variants["fp32"]["accuracy"] == pytest.approx(variants["pytorch"]["accuracy"])
    assert variants["int8"]["size_mb"] < 0.6 * variants["fp32"]["size_mb"]
    assert variants["int8_per_channel"]["per_channel"] is True
    assert variants["int8"]["reduce_range"] == ox.resolve_reduce_range("auto", ox.cpu_flags())
    plot = pd.read_csv(paths["export_plot"])
    assert set(plot["variant"]) == {"pytorch", "fp32", "int8", "int8_per_channel"}
    assert Path(paths["export_image"]).read_bytes()[:4] == b"\x89PNG"
    report = Path(paths["export_report"]).read_text()
    assert "| int8 |" in report and "**Decision:**" in report


def test_fastest_accepted_variant_is_deployed(exported: dict[str, Any]) -> None:
    metrics, paths = exported["metrics"], exported["cfg"]["paths"]
    variants = metrics["variants"]
    onnx = [v for v in variants.values() if v["variant"] != "pytorch" and v["status"] == "scored"]
    fastest = min(onnx, key=lambda v: (v["latency_ms_p50_batch1"], v["size_mb"]))
    assert metrics["chosen"] == fastest["variant"]
    deployment = read_deployment(paths["export_dir"])
    assert deployment["format"] == "onnx" and deployment["variant"] == metrics["chosen"]
    for name in ("model.onnx", "tokenizer.json", "config.json"):
        assert (Path(paths["export_dir"]) / name).is_file()
    classifier = load_onnx(paths["export_dir"])
    assert classifier.labels == LABELS
    assert classifier.max_length == 32  # the length the model was trained with


def test_registered_as_onnx_version_with_tags(exported: dict[str, Any]) -> None:
    cfg = exported["cfg"]
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    client = mlflow.MlflowClient()
    name = f"{cfg['tracking']['registered_model_name']}-onnx"
    versions = client.search_model_versions(f"name='{name}'")
    assert len(versions) == 1
    tags = versions[0].tags
    assert tags["format"] == "onnx"
    assert tags["variant"] == exported["metrics"]["chosen"]
    assert "int8" in tags["quantization"] or tags["variant"] == "fp32"
    assert tags["source_model"] == f"{cfg['tracking']['registered_model_name']} v1"
    run = client.get_run(versions[0].run_id)
    assert run.data.tags["export.chosen"] == exported["metrics"]["chosen"]
    assert "export_int8_latency_ms_p50_batch1" in run.data.metrics
    assert "export_pytorch_accuracy" in run.data.metrics


def test_logged_artifacts_carry_the_final_names(exported: dict[str, Any], tmp_path: Path) -> None:
    """The run's export files and the ONNX model's folder are logged under their own names, not
    the staged temp names (``.metrics.json.<random>.tmp``)."""
    cfg, paths = exported["cfg"], exported["cfg"]["paths"]
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    client = mlflow.MlflowClient()
    name = f"{cfg['tracking']['registered_model_name']}-onnx"
    (version,) = client.search_model_versions(f"name='{name}'")
    logged = {Path(a.path).name for a in client.list_artifacts(version.run_id, "export")}
    # the DVC headline (paths.metrics_export) is not logged: its figures are the run's metrics
    finals = ("export_metrics", "export_report", "export_plot", "export_image")
    assert logged == {Path(paths[key]).name for key in finals}
    model = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{version.version}", dst_path=str(tmp_path)
        )
    )
    stored = [p.relative_to(model).as_posix() for p in model.rglob("*")]
    assert not [p for p in stored if ".tmp" in p], stored
    deployed = model / "artifacts" / Path(paths["export_dir"]).name
    assert (deployed / "model.onnx").is_file(), stored


def test_predict_on_onnx_matches_pytorch(exported: dict[str, Any], tmp_path: Path) -> None:
    cfg = exported["cfg"]
    texts = ["my card was charged twice refund please", "", "parcel not arrived", "reset email"]
    src = tmp_path / "in.jsonl"
    pd.DataFrame({"text": texts}).to_json(src, orient="records", lines=True)
    outputs = {}
    name = f"{cfg['tracking']['registered_model_name']}-onnx"
    for key, model in {
        "onnx_dir": cfg["paths"]["export_dir"],
        "onnx_uri": f"models:/{name}/1",
        "pytorch": cfg["paths"]["model_dir"],
    }.items():
        out = tmp_path / f"{key}.jsonl"
        code = cli.main(
            [
                "predict",
                "-m",
                model,
                "-i",
                str(src),
                "-o",
                str(out),
                "--tracking-uri",
                cfg["tracking"]["uri"],
            ]
        )
        assert code == 0, key
        outputs[key] = pd.read_json(out, lines=True)
    assert outputs["onnx_dir"]["status"].tolist() == ["ok", "empty", "ok", "ok"]
    pd.testing.assert_frame_equal(outputs["onnx_dir"], outputs["onnx_uri"])
    columns = [f"prob_{label}" for label in LABELS]
    ok = outputs["pytorch"]["status"] == "ok"
    tolerance = 0.05 if exported["metrics"]["chosen"] != "fp32" else 1e-4
    np.testing.assert_allclose(
        outputs["onnx_dir"].loc[ok, columns].to_numpy(),
        outputs["pytorch"].loc[ok, columns].to_numpy(),
        atol=tolerance,
    )


def test_one_classifier_object_from_every_model_reference(exported: dict[str, Any]) -> None:
    """models/model, models/onnx, models:/<name>/N (PyTorch) and models:/<name>-onnx/N give the
    same kind of object: labels, lengths, token counts, probabilities; the PyTorch ones also
    embeddings, model and tokenizer (monitoring, explanations), the ONNX ones say they have none."""
    cfg = exported["cfg"]
    uri, name = cfg["tracking"]["uri"], cfg["tracking"]["registered_model_name"]
    texts = ["my card was charged twice refund please", "parcel not arrived"]
    opened = {
        "dir": open_classifier(cfg["paths"]["model_dir"]),
        "onnx_dir": open_classifier(cfg["paths"]["export_dir"]),
        "uri": open_classifier(f"models:/{name}/1", uri),
        "onnx_uri": open_classifier(f"models:/{name}-onnx/1", uri),
    }
    assert {k: c.backend for k, c in opened.items()} == {
        "dir": "pytorch", "onnx_dir": "onnx", "uri": "pytorch", "onnx_uri": "onnx"
    }  # fmt: skip
    for key, classifier in opened.items():
        assert classifier.labels == LABELS, key
        assert classifier.saved_max_length == opened["dir"].saved_max_length, key
        assert classifier.token_counts(texts) == opened["dir"].token_counts(texts), key
        probs = classifier.predict(texts, 2, 32).probabilities
        assert probs.shape == (2, len(LABELS)), key
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        if classifier.backend == "pytorch":
            embeddings, same = classifier.embed_and_predict(texts, 2, 32)
            assert embeddings.shape[0] == 2 and classifier.model is not None
            np.testing.assert_allclose(same, probs, atol=1e-5)
        else:
            assert classifier.embed_and_predict is None and classifier.model is None


def test_failing_gate_keeps_pytorch_deployed(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = copy.deepcopy(trained)
    cfg["export"].update({"variants": ["fp32"], "max_f1_drop": -0.5})  # must beat PyTorch
    cfg["paths"]["export_dir"] = str(tmp_path / "onnx")
    metrics = export.run(cfg)
    assert metrics["chosen"] == "pytorch"
    assert "PyTorch model stays the deployment artifact" in metrics["decision"]["reason"]
    deployment = read_deployment(cfg["paths"]["export_dir"])
    assert deployment["format"] == "pytorch"
    assert not (tmp_path / "onnx" / "model.onnx").exists()
    model_dir = str(Path(cfg["paths"]["model_dir"]).resolve())
    # the pointer is relative to the deployment directory: it holds from any working directory
    assert not Path(deployment["model_dir"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    loaded = open_classifier(str(tmp_path / "onnx"))  # follows the pointer
    assert loaded.backend == "pytorch" and loaded.source == model_dir
    # one written before (relative to the repository) still opens from there
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "deployment.json").write_text(
        json.dumps({"format": "pytorch", "model_dir": os.path.relpath(model_dir, tmp_path)})
    )
    assert open_classifier(str(tmp_path / "old")).source == os.path.relpath(model_dir, tmp_path)


def test_choose_fastest_within_drop() -> None:
    rows = [
        {
            "variant": "fp32",
            "status": "scored",
            "f1_macro": 0.90,
            "latency_ms_p50_batch1": 9.0,
            "size_mb": 90.0,
        },
        {
            "variant": "int8",
            "status": "scored",
            "f1_macro": 0.87,
            "latency_ms_p50_batch1": 4.0,
            "size_mb": 23.0,
        },
        {
            "variant": "int8_per_channel",
            "status": "scored",
            "f1_macro": 0.895,
            "latency_ms_p50_batch1": 4.5,
            "size_mb": 23.0,
        },
        {"variant": "fp16", "status": "skipped"},
    ]
    decision = choose(rows, {"f1_macro": 0.90}, max_f1_drop=0.01)
    assert decision.chosen == "int8_per_channel"
    assert decision.accepted == ["fp32", "int8_per_channel"]
    assert decision.f1_drops["int8"] == pytest.approx(0.03)
    none = choose(rows, {"f1_macro": 0.95}, max_f1_drop=0.01)
    assert none.chosen is None and "PyTorch model stays" in none.reason
    # one text per call counts too: int8_per_channel loses 3 points there
    rows[2] |= {"f1_macro_batch1": 0.87}
    batch1 = choose(rows, {"f1_macro": 0.90, "f1_macro_batch1": 0.90}, max_f1_drop=0.01)
    assert batch1.chosen == "fp32" and batch1.f1_drops["int8_per_channel"] == pytest.approx(0.03)


def test_reduce_range_follows_the_cpu() -> None:
    assert ox.resolve_reduce_range("auto", {"avx2", "fma"}) is True
    assert ox.resolve_reduce_range("auto", {"avx2", "avx512f", "avx512_vnni"}) is False
    assert ox.resolve_reduce_range("auto", {"avx2", "amx_int8"}) is False
    assert ox.resolve_reduce_range(False, {"avx2"}) is False


class HistogramClassifier(torch.nn.Module):
    """A classifier with an op the ONNX exporter has no conversion for (aten::histc)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
        out.logits = out.logits + torch.histc(out.logits, bins=3).sum() * 0
        return out


def test_unexportable_model_stops_with_a_clear_message(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    model, tokenizer = load_trained(trained["paths"]["model_dir"])
    with pytest.raises(ox.ExportError, match=r"cannot export HistogramClassifier .*aten::histc"):
        ox.export_onnx(HistogramClassifier(model), tokenizer, tmp_path / "x.onnx", 17)


def test_non_classifier_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    _, tokenizer = load_trained(trained["paths"]["model_dir"])
    with pytest.raises(ox.ExportError, match="does not take input_ids and attention_mask"):
        ox.export_onnx(torch.nn.Linear(2, 2), tokenizer, tmp_path / "x.onnx", 17)


def test_pyfunc_input_shapes_and_output_table() -> None:
    assert as_texts(pd.DataFrame({"text": ["a", None]})) == ["a", ""]
    assert as_texts(pd.DataFrame({0: ["b"]})) == ["b"]
    assert as_texts(["c", float("nan")]) == ["c", ""]
    assert as_texts("d") == ["d"]
    table = predictions_table(np.array([[0.2, 0.8], [0.6, 0.4]]), ["neg", "pos"])
    assert table.columns.tolist() == ["label", "score", "prob_neg", "prob_pos"]
    assert table["label"].tolist() == ["pos", "neg"]
    assert table["score"].tolist() == [0.8, 0.6]


def fp32_graph(model_dir: str, dest: Path) -> Path:
    """The trained model exported to ONNX and optimised as the export stage does (fp32)."""
    model, tokenizer = load_trained(model_dir)
    model.set_attn_implementation("eager")
    ox.export_onnx(model, tokenizer, dest / "raw.onnx", 17)
    ox.optimize_graph(dest / "raw.onnx", dest / "fp32.onnx", model.config)
    return dest / "fp32.onnx"


def test_int8_config_operators_restrict_quantization(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """Only MatMul quantized: the graph keeps its fused fp32 Attention ops; and the fp16
    conversion keeps fp32 inputs/outputs."""
    import onnx

    cfg = exported["cfg"]
    fp32, q = fp32_graph(cfg["paths"]["model_dir"], tmp_path), tmp_path / "q.onnx"
    spec = Int8Config(reduce_range=False, operators=["MatMul"])
    details = ox.quantize_int8(fp32, q, False, spec, set())
    assert details["operators"] == ["MatMul"]
    ops = {node.op_type for node in onnx.load(str(q)).graph.node}
    assert "Attention" in ops and "MatMulInteger" in ops
    # fp16 (run only where a CUDA GPU is: here the conversion itself is checked)
    half = tmp_path / "fp16.onnx"
    ox.to_fp16(fp32, half)
    graph = onnx.load(str(half)).graph
    assert {i.data_type for i in graph.initializer if i.dims} >= {onnx.TensorProto.FLOAT16}
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # io kept fp32


def test_a_dynamically_quantized_graph_scores_each_text_alone(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """int8 activations are scaled per batch: loaded, such a graph scores one text per run, so a
    text's probabilities never depend on the texts batched with it (any batch size, any order);
    the fp32 graph keeps its batches."""
    cfg = exported["cfg"]
    fp32, q = fp32_graph(cfg["paths"]["model_dir"], tmp_path), tmp_path / "q.onnx"
    ox.quantize_int8(fp32, q, False, Int8Config(reduce_range=False, operators=None), set())
    export_dir = cfg["paths"]["export_dir"]
    assert not load_onnx(export_dir, fp32).per_text
    int8 = load_onnx(export_dir, q)
    assert int8.per_text
    texts = [" ".join(["refund"] * n + ["parcel", "password"][: n % 3]) for n in range(1, 25)]
    alone = np.vstack([int8.predict_proba([t]).probabilities for t in texts])
    for batch_size in (4, 64):
        together = int8.predict_proba(texts, batch_size=batch_size).probabilities
        np.testing.assert_array_equal(together, alone)
    reordered = int8.predict_proba(texts[::-1], batch_size=64).probabilities
    np.testing.assert_array_equal(reordered[::-1], alone)


def test_batch1_rows_are_a_seeded_sample_across_the_split() -> None:
    from finetune.export.scoring import batch1_rows

    rows = batch1_rows(4500, 1000)
    assert len(rows) == len(set(rows)) == 1000 and (rows == batch1_rows(4500, 1000)).all()
    assert (rows == sorted(rows)).all() and rows.max() > 4000, "not just the first rows"
    assert (batch1_rows(10, None) == range(10)).all() and len(batch1_rows(10, 50)) == 10
