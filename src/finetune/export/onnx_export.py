"""PyTorch -> ONNX, then the variants: optimised fp32, dynamic int8, fp16.

Why not Optimum: ``optimum-onnx`` (0.1.0, the newest release) requires ``transformers<4.58``
and this project runs transformers 5, so ``ORTModelForSequenceClassification``/``ORTOptimizer``/
``ORTQuantizer`` cannot be installed beside it. Those classes are thin layers over what is used
here directly: ``torch.onnx.export`` (TorchScript exporter, dynamic batch and sequence axes),
``onnxruntime.transformers.optimizer.optimize_model`` (the attention/LayerNorm/GELU fusions
Optimum's ORTOptimizer calls) and ``onnxruntime.quantization.quantize_dynamic`` (what
ORTQuantizer's dynamic configs call). The graph the export gives is the same one Optimum's
exporter writes for BERT-like encoders: inputs ``input_ids``, ``attention_mask``
(``token_type_ids`` when the model takes them), output ``logits``.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finetune.core.errors import PipelineError
from finetune.core.machine import cpu_flags  # noqa: F401  (callers use ox.cpu_flags)
from finetune.core.schema import Int8Config

log = logging.getLogger(__name__)

INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
# model_type -> the fusion pattern set of onnxruntime's transformer optimizer.
FUSION_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "electra": "bert",
    "distilbert": "bert",
    "mpnet": "bert",
}
# CPU flags under which onnxruntime's u8s8 int8 kernels do not saturate (VNNI / AMX dot products).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


class ExportError(PipelineError):
    """The model cannot be exported or a variant cannot be made."""


def int8_isa(flags: frozenset[str] | set[str]) -> dict[str, bool]:
    """What the CPU offers int8 inference (recorded next to every int8 figure)."""
    return {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "amx_int8": "amx_int8" in flags,
    }


def resolve_reduce_range(setting: bool | str, flags: frozenset[str] | set[str]) -> bool:
    """``auto``: 7-bit weights only where the CPU lacks VNNI/AMX (onnxruntime's advice for
    u8s8 on AVX2/AVX-512 without VNNI, whose 16-bit intermediate sums can saturate)."""
    if setting == "auto":
        return not any(f in flags for f in VNNI_FLAGS)
    return bool(setting)


def model_inputs(model: Any, tokenizer: Any) -> list[str]:
    """The inputs the graph takes: what the tokenizer gives and the model's forward accepts."""
    accepted = set(inspect.signature(model.forward).parameters)
    given = set(getattr(tokenizer, "model_input_names", INPUT_ORDER))
    names = [n for n in INPUT_ORDER if n in accepted and n in given]
    if "input_ids" not in names or "attention_mask" not in names:
        raise ExportError(
            f"{type(model).__name__} does not take input_ids and attention_mask: only "
            "text classifiers with a transformers tokenizer can be exported"
        )
    return names


def quiet_routine_export_warnings(tracer_warning: type[Warning]) -> None:
    """Ignore, by exact message, the warnings every export of a transformers encoder gives,
    each of which was checked and comes from a library (call inside ``catch_warnings``):

    - torch's notice that the TorchScript exporter is the legacy one: chosen on purpose (see
      the module docstring), with ``dynamo=False``; and its internal "The feature will be
      removed" from the same exporter;
    - the tracer's "Converting a tensor to a Python boolean" in transformers' masking_utils:
      ``prepare_padding_mask`` asks whether the mask needs padding to the key length, which
      for an encoder is always the mask's own length, so the constant the trace records
      (no padding) holds for every input;
    - "Exporting aten::index operator of advanced indexing": the padding mask is indexed
      with position ranges, never negative, the case that warning is about.

    The exported graph is checked against PyTorch on every export (export's scoring) and in
    tests/test_export.py; any other warning still shows."""
    warnings.filterwarnings(
        "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
    )
    warnings.filterwarnings(
        "ignore", "The feature will be removed", DeprecationWarning, r"torch\.onnx"
    )
    warnings.filterwarnings(
        "ignore",
        "Converting a tensor to a Python boolean might cause the trace to be incorrect",
        tracer_warning,
        r"transformers\.masking_utils",
    )
    warnings.filterwarnings(
        "ignore", "Exporting aten::index operator of advanced indexing", UserWarning
    )


def export_onnx(model: Any, tokenizer: Any, dest: Path, opset: int) -> list[str]:
    """Write ``model`` (fp32, eval mode) as ONNX to ``dest``; the graph's input names."""
    import torch
    from torch.onnx.errors import OnnxExporterError

    model = model.float().eval().cpu()
    names = model_inputs(model, tokenizer)
    sample = tokenizer(
        ["an example text to trace the graph", "and a second"], padding=True, return_tensors="pt"
    )
    args = tuple(sample[n] for n in names)

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    wrapped = LogitsOnly().eval()
    with torch.inference_mode():
        probe = model(**dict(zip(names, args, strict=True)))
    if getattr(probe, "logits", None) is None:
        raise ExportError(f"{type(model).__name__} returns no logits: not a text classifier")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    try:
        with warnings.catch_warnings():
            quiet_routine_export_warnings(torch.jit.TracerWarning)
            torch.onnx.export(
                wrapped,
                args,
                str(dest),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,  # the TorchScript exporter: dynamic axes, graphs ORT's fusions know
            )
    except (OnnxExporterError, torch.jit.Error) as exc:  # type: ignore[attr-defined]
        architecture = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ExportError(
            f"cannot export {type(model).__name__} (model_type {architecture!r}) to ONNX "
            f"opset {opset}: {str(exc).splitlines()[0]}. Try a higher export.opset, or leave "
            "the `export` stage out (the PyTorch model in models/model stays usable)"
        ) from exc
    return names


def encoder_shape(config: Any) -> tuple[str, int, int]:
    """(model_type, attention heads, hidden size) of the encoder (a mean-pooling model's too)."""
    encoder = getattr(config, "encoder", None) or config
    heads = getattr(encoder, "num_attention_heads", None) or getattr(encoder, "n_heads", 0)
    hidden = getattr(encoder, "hidden_size", None) or getattr(encoder, "dim", 0)
    return str(encoder.model_type), int(heads), int(hidden)


def optimize_graph(src: Path, dest: Path, config: Any) -> dict[str, int]:
    """onnxruntime's transformer fusions on ``src`` (fp32 stays fp32); the fused op counts.

    An encoder type onnxruntime has no fusions for is saved with its generic graph
    optimisations only (applied when the session loads), and that is logged."""
    from onnxruntime.transformers.optimizer import optimize_model

    model_type, heads, hidden = encoder_shape(config)
    fusion = FUSION_TYPES.get(model_type)
    if fusion is None:
        log.warning(
            "onnxruntime has no transformer fusions for model_type %r: the fp32 graph gets "
            "its generic optimisations only",
            model_type,
        )
        dest.write_bytes(src.read_bytes())
        return {}
    with quiet_onnxruntime_tools():
        optimized = optimize_model(str(src), model_type=fusion, num_heads=heads, hidden_size=hidden)
    optimized.save_model_to_file(str(dest))
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    log.info("onnxruntime fusions (%s): %s", model_type, stats)
    return stats


@contextmanager
def quiet_onnxruntime_tools(level: int = logging.INFO) -> Iterator[None]:
    """onnxruntime's optimizer and quantizer log every fusion and tensor (and, for a graph
    with fused ops, an advice to pre-process that does not apply): our own lines say what
    was done instead. Records up to ``level`` are dropped while the tool runs."""
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_int8(
    src: Path, dest: Path, per_channel: bool, spec: Int8Config, flags: frozenset[str] | set[str]
) -> dict[str, Any]:
    """Dynamic int8 quantization of ``src`` (weights int8 once, activations per batch)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = resolve_reduce_range(spec.reduce_range, flags)
    with quiet_onnxruntime_tools(logging.WARNING):
        quantize_dynamic(
            str(src),
            str(dest),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=list(spec.operators) if spec.operators else None,
            # the fused com.microsoft ops (Attention, BiasGelu) have no ONNX shape inference:
            # their outputs are fp32, which is what this tells the quantizer
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {
        "quantization": "dynamic int8 (weights QInt8, activations uint8 at run time)",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "operators": list(spec.operators) if spec.operators else "onnxruntime default",
    }


def to_fp16(src: Path, dest: Path) -> dict[str, Any]:
    """fp16 weights and compute, fp32 inputs/outputs kept (for the CUDA execution provider)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dest))
    return {"quantization": "fp16 weights and activations (inputs/outputs fp32)"}
