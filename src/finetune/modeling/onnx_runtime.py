"""Inference on ONNX Runtime: an exported classifier with its tokenizer, no torch needed.

A deployment directory (written by the export stage, ``paths.export_dir``) holds

- ``model.onnx``: the graph (inputs as the tokenizer gives them, output ``logits``);
- ``tokenizer.json`` (+ the other tokenizer files), read with the ``tokenizers`` library;
- ``config.json``: the model's transformers config, for the label map and the position limit;
- ``deployment.json``: which variant this is (fp32 / int8 ...), how it was made and scored.

So a served model needs onnxruntime, tokenizers, onnx (to read which operators the graph has) and
numpy, not torch or transformers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetune.core.errors import ModelNotFoundError
from finetune.modeling import decisions, truncation
from finetune.modeling.inference import Predictions

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
DEPLOYMENT_FILE = "deployment.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Operators that quantize activations at run time with a scale taken from the whole tensor
# (onnxruntime's quantize_dynamic): a batch's texts share it.
DYNAMIC_QUANTIZATION_OPS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul"})


def is_onnx_dir(path: str | Path) -> bool:
    return (Path(path) / ONNX_FILE).is_file()


def read_deployment(path: str | Path) -> dict[str, Any] | None:
    """``deployment.json`` of a deployment directory, None when there is none."""
    file = Path(path) / DEPLOYMENT_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def _labels(config: dict[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(id2label[str(i)]) for i in range(len(id2label))]


def _saved_max_length(model_dir: Path, limit: int) -> int:
    """The length the model was trained with (the tokenizer's ``model_max_length``, as the
    train stage saves it), capped at the model's position limit."""
    file = model_dir / TOKENIZER_CONFIG_FILE
    saved = json.loads(file.read_text()).get("model_max_length") if file.is_file() else None
    if isinstance(saved, int | float) and 0 < saved < 100_000:
        return min(int(saved), limit)
    return limit


@dataclass
class OnnxClassifier:
    """An ONNX Runtime session and its tokenizer; ``predict_proba`` mirrors the PyTorch one."""

    session: Any
    tokenizer: Any
    labels: list[str]
    input_names: list[str]
    max_positions: int
    max_length: int
    pad_id: int
    path: Path
    load_seconds: float
    long_text: truncation.LongText = truncation.HEAD_ONLY
    # Dynamically quantized (int8): the activations' scale comes from the whole batch, so a
    # text's probabilities would depend on the texts batched with it (up to 0.39 apart and
    # 0.5% of labels flipped on 100,000 sst2 sentences at batch 64, bench/batch_predict.py).
    # Such a graph scores one text per run, whatever the batch size asked: every path (a file,
    # Spark's tasks, a served request) gives a text the same output, and on CPU it is no
    # slower (176 vs 153 rows/s at batch 64 on 2 cores).
    per_text: bool = False
    # multi-label: a sigmoid per label and the thresholds saved with the model; None: softmax
    thresholds: decisions.Thresholds | None = None

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def encode(self, texts: list[str], max_length: int) -> tuple[dict[str, np.ndarray], list[int]]:
        """Token ids, attention mask (and token types) padded to the longest row, and the text
        of each row: a text over ``max_length`` cut as the model was trained (one row), or its
        windows for chunks (:mod:`finetune.modeling.truncation`)."""
        long_text = self.long_text
        if long_text.mode == truncation.HEAD:
            self.tokenizer.enable_truncation(max_length)
        else:
            self.tokenizer.no_truncation()
        rows, owner = [], []
        for text, enc in enumerate(self.tokenizer.encode_batch(texts)):
            columns = (enc.ids, enc.attention_mask, enc.type_ids)
            found = None
            if long_text.mode != truncation.HEAD:
                found = truncation.windows(enc.special_tokens_mask, max_length, long_text)
            for keep in found or [None]:
                rows.append(
                    columns if keep is None else tuple([c[i] for i in keep] for c in columns)
                )
                owner.append(text)
        return self._feeds(rows), owner

    def _feeds(self, rows: list[tuple[list[int], list[int], list[int]]]) -> dict[str, np.ndarray]:
        width = max((len(r[0]) for r in rows), default=0)
        shape = (len(rows), width)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        for row, (row_ids, row_mask, row_types) in enumerate(rows):
            n = len(row_ids)
            ids[row, :n], mask[row, :n], types[row, :n] = row_ids, row_mask, row_types
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: feeds[name] for name in self.input_names}

    def token_counts(self, texts: list[str]) -> list[int]:
        self.tokenizer.no_truncation()
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def logits(
        self, texts: list[str], max_length: int, batch_size: int | None = None
    ) -> np.ndarray:
        """One row of logits per text: its windows' pooled for chunks, run at most
        ``batch_size`` rows at a time (all at once when None)."""
        feeds, owner = self.encode(texts, max_length)
        step = batch_size or max(len(owner), 1)
        out = [
            self.session.run(["logits"], {k: v[i : i + step] for k, v in feeds.items()})[0]
            for i in range(0, len(owner), step)
        ]
        rows = np.concatenate(out) if out else np.zeros((0, len(self.labels)))
        return truncation.pool(rows, owner, len(texts), self.long_text.pool)

    def predict_proba(
        self, texts: list[str], batch_size: int = 64, max_length: int | None = None
    ) -> Predictions:
        """Class probabilities (multi-label: each label's) in input order; batches of texts of
        similar length, at most ``batch_size`` rows a run (one row per run for a dynamically
        quantized graph: :attr:`per_text`)."""
        length = min(max_length or self.max_length, self.max_positions)
        batch_size = 1 if self.per_text else batch_size
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        timings: list[float] = []
        order = np.argsort([len(t) for t in texts], kind="stable")
        began = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            logits = self.logits([texts[i] for i in idx], length, batch_size)
            multi = self.thresholds is not None
            probs[idx] = decisions.sigmoid(logits) if multi else decisions.softmax(logits)
            now = time.perf_counter()
            timings.append(now - began)
            began = now
        return Predictions(probs, timings)


def session_options(num_threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def available_providers(gpu: bool) -> list[str]:
    """CUDA first when asked for and present, CPU always."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if gpu and "CUDAExecutionProvider" in have else []
    return [*wanted, "CPUExecutionProvider"]


def quantizes_per_batch(graph: str | Path) -> bool:
    """Whether the ONNX graph quantizes activations at run time (onnxruntime's dynamic int8),
    from its operators. The file is parsed a second time beside onnxruntime's own load,
    embedded weights included (35 ms for the 23 MB int8 MiniLM)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return any(node.op_type in DYNAMIC_QUANTIZATION_OPS for node in model.graph.node)


def load_onnx(
    model_dir: str | Path,
    onnx_file: str | Path | None = None,
    num_threads: int | None = None,
    gpu: bool = False,
) -> OnnxClassifier:
    """The ONNX classifier in ``model_dir`` (``onnx_file``: another graph next to the same
    tokenizer and config, as the export stage scores its variants)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    graph = Path(onnx_file) if onnx_file else model_dir / ONNX_FILE
    for needed in (graph, model_dir / TOKENIZER_FILE, model_dir / CONFIG_FILE):
        if not needed.is_file():
            raise ModelNotFoundError(
                f"{model_dir} is not an ONNX model directory ({needed.name} missing): "
                "run `dvc repro export`, or pass the directory it writes (models/onnx)"
            )
    began = time.perf_counter()
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    session = ort.InferenceSession(
        str(graph), session_options(num_threads), providers=available_providers(gpu)
    )
    seconds = time.perf_counter() - began
    limit = int(
        config.get("max_position_embeddings")
        or config.get("encoder", {}).get("max_position_embeddings", 512)
    )
    pad_id = config.get("pad_token_id")
    if pad_id is None:
        pad_id = config.get("encoder", {}).get("pad_token_id") or 0
    return OnnxClassifier(
        session=session,
        tokenizer=tokenizer,
        labels=_labels(config),
        input_names=[i.name for i in session.get_inputs()],
        max_positions=limit,
        max_length=_saved_max_length(model_dir, limit),
        pad_id=int(pad_id),
        path=graph,
        load_seconds=seconds,
        long_text=truncation.settings(config),
        per_text=quantizes_per_batch(graph),
        thresholds=decisions.from_config(config) if decisions.is_multi_label(config) else None,
    )
