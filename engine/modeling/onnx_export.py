"""An exported model folder also as ONNX, checked against PyTorch before it is kept.

The folder `hubtune export` wrote loads with a transformers Auto class (the `loader` the
export names); that model is exported with torch's ONNX exporter (`torch.onnx.export`,
the dynamo path, falling back to TorchScript where a graph will not trace), then run in
ONNX Runtime on the same inputs as PyTorch: the largest difference of their outputs must
stay within TOLERANCE, or nothing is kept. Optionally a dynamically quantised int8 copy
(`onnxruntime.quantization`) with how often its predictions agree with fp32.

Refused, with a sentence: models that generate (seq2seq, causal and masked language
models: their decoding loop is not one graph) and sentence-transformers folders (their
pooling lives outside the transformer). Needs the `onnx` extra (onnx, onnxruntime,
onnxscript).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import HubtuneError

TOLERANCE = 1e-3
"""Largest absolute difference allowed between ONNX Runtime's and PyTorch's outputs."""
TEXT_LOADERS = ("AutoModelForSequenceClassification", "AutoModelForTokenClassification",
                "AutoModelForQuestionAnswering")
IMAGE_LOADERS = ("AutoModelForImageClassification",)
EXTERNAL_BYTES = 1_500_000_000
"""Weights larger than this go to a side file (`model.onnx.data`)."""
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


class OnnxError(HubtuneError):
    """An ONNX export that cannot be made or does not match; one sentence."""


@dataclass(frozen=True)
class OnnxReport:
    path: Path
    max_abs_diff: float
    examples: int
    int8_path: Path | None = None
    int8_agreement: float | None = None
    """Share of examples whose predicted class the int8 model keeps."""

    def card_section(self) -> str:
        """What the model card says of the ONNX files."""
        lines = ["## ONNX", "",
                 f"`{self.path.name}` (ONNX Runtime) matches the PyTorch model on "
                 f"{self.examples} examples to within {self.max_abs_diff:.2e} "
                 f"(tolerance {TOLERANCE:g})."]
        if self.int8_path is not None and self.int8_agreement is not None:
            lines.append(f"`{self.int8_path.name}` (dynamic int8) predicts the same class "
                         f"as fp32 on {self.int8_agreement:.1%} of them.")
        return "\n".join(lines) + "\n"


def _libraries():
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise OnnxError("ONNX export needs the onnx extra: pip install 'hubtune[onnx]' "
                        "(onnx, onnxruntime, onnxscript).") from None
    return onnxruntime, quantize_dynamic, QuantType


def export_onnx(folder: Path, loader: str, *, texts: list[str] | None = None,
                quantize: bool = False) -> OnnxReport:
    """Write `folder`/model.onnx (and with `quantize` model.int8.onnx) for the model the
    folder holds, checked on `texts` (or made-up inputs) against PyTorch."""
    onnxruntime, quantize_dynamic, quant_type = _libraries()
    model, inputs = _model_and_inputs(folder, loader, texts)
    target = folder / ONNX_FILE
    _export(model, inputs, target)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    reference = _torch_outputs(model, inputs)
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    diff = max(float(abs(g - r).max()) for g, r in zip(got, reference, strict=True))
    if not diff <= TOLERANCE:
        target.unlink(missing_ok=True)
        raise OnnxError(f"The ONNX model's outputs differ from PyTorch's by {diff:.2e} "
                        f"(more than {TOLERANCE:g}); nothing was kept.")
    report = OnnxReport(target, diff, int(next(iter(inputs.values())).shape[0]))
    if not quantize:
        return report
    int8 = folder / INT8_FILE
    quantize_dynamic(str(target), str(int8), weight_type=quant_type.QInt8)
    small = onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    quantised = small.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    agree = float((quantised.argmax(-1) == got[0].argmax(-1)).mean())
    return OnnxReport(target, diff, report.examples, int8, agree)


def _model_and_inputs(folder: Path, loader: str, texts: list[str] | None):
    import torch
    import transformers

    if loader not in (*TEXT_LOADERS, *IMAGE_LOADERS):
        raise OnnxError(f"hubtune exports ONNX for classification, token classification, "
                        f"QA and image models; this run's model ({loader}) is refused: "
                        "models that generate text, and sentence-transformers folders, "
                        "keep their PyTorch form.")
    model = getattr(transformers, loader).from_pretrained(folder, trust_remote_code=True)
    model.eval()
    if loader in IMAGE_LOADERS:
        size = getattr(model.config, "image_size", 224)
        size = size if isinstance(size, int) else 224
        generator = torch.Generator().manual_seed(0)
        return model, {"pixel_values": torch.randn(4, 3, size, size, generator=generator)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    texts = texts or ["an example sentence", "another one, a little longer than the first",
                      "short", "the fourth and last of the made-up inputs"]
    encoded = tokenizer(texts[:64], padding=True, truncation=True, max_length=128,
                        return_tensors="pt")
    names = [n for n in tokenizer.model_input_names if n in encoded]
    return model, {n: encoded[n] for n in names}


def _torch_outputs(model, inputs) -> list:
    import torch

    with torch.no_grad():
        out = model(**inputs)
    return [t.numpy() for t in out.values() if isinstance(t, torch.Tensor)]


def _export(model, inputs: dict, target: Path) -> None:
    """The dynamo exporter first; where its graph capture fails, the TorchScript one."""
    import torch

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    external = weights > EXTERNAL_BYTES  # protobuf's 2 GB limit: weights in a side file
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    shapes = {name: ({0: batch} if name == "pixel_values" else {0: batch, 1: length})
              for name in inputs}
    axes = {name: ({0: "batch"} if name == "pixel_values" else {0: "batch", 1: "length"})
            for name in inputs}
    try:
        torch.onnx.export(model, (), str(target), kwargs=inputs, input_names=list(inputs),
                          dynamic_shapes=shapes, dynamo=True, external_data=external)
        return
    except Exception:
        target.unlink(missing_ok=True)
    try:
        torch.onnx.export(model, tuple(inputs.values()), str(target),
                          input_names=list(inputs), dynamic_axes=axes, dynamo=False,
                          opset_version=17)
    except Exception as exc:  # the exporter's own failure, as one sentence
        target.unlink(missing_ok=True)
        raise OnnxError(f"The model could not be exported to ONNX ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}).") from None
