"""An exported model folder also as ONNX, checked against PyTorch before it is kept.

The folder `hubtune export` wrote loads with a transformers Auto class (the `loader` the
export names); that model is exported with torch's ONNX exporter (`torch.onnx.export`,
the dynamo path, falling back to TorchScript where a graph will not trace), then run in
ONNX Runtime on the same inputs as PyTorch: the largest difference of their outputs must
stay within TOLERANCE, or nothing is kept. Optionally a dynamically quantised int8 copy
(`onnxruntime.quantization`) with how often its predictions agree with fp32.

An embedding run's sentence-transformers folder goes as one graph from token ids to the
pooled vector: the transformer, then the pooling (and BERT's pooler as a Dense layer) that
the folder's own module files declare, as `SentenceEmbedder`; a folder with other modules
than those hubtune writes is refused. Refused, with a sentence: models that generate
(seq2seq, causal and masked language models: their decoding loop is not one graph).
Needs the `onnx` extra (onnx, onnxruntime, onnxscript).
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
EMBEDDING_LOADERS = ("SentenceTransformer",)
EXTERNAL_BYTES = 1_500_000_000
"""Weights larger than this go to a side file (`model.onnx.data`)."""
COSINE = 0.99
"""An int8 embedding agrees with fp32's when their cosine similarity is at least this."""
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
FUSED_FILE = "model.ort.onnx"
"""The same graph with ONNX Runtime's fused kernels (attention, skip layer norm, bias
GELU: com.microsoft operators), which only ONNX Runtime runs; checked like model.onnx."""


class OnnxError(HubtuneError):
    """An ONNX export that cannot be made or does not match; one sentence."""


@dataclass(frozen=True)
class OnnxReport:
    path: Path
    max_abs_diff: float
    examples: int
    int8_path: Path | None = None
    int8_agreement: float | None = None
    """Share of examples whose predicted class the int8 model keeps (for embeddings: whose
    vector keeps a cosine similarity of at least COSINE to fp32's)."""
    vectors: bool = False
    """Whether the model gives embeddings rather than class scores."""
    fused_path: Path | None = None
    """FUSED_FILE when asked for, made and within TOLERANCE of PyTorch too."""

    def card_section(self) -> str:
        """What the model card says of the ONNX files."""
        lines = ["## ONNX", "",
                 f"`{self.path.name}` (ONNX Runtime) matches the PyTorch model on "
                 f"{self.examples} examples to within {self.max_abs_diff:.2e} "
                 f"(tolerance {TOLERANCE:g})."]
        if self.int8_path is not None and self.int8_agreement is not None:
            kept = (f"gives a vector within cosine similarity {COSINE} of fp32's"
                    if self.vectors else "predicts the same class as fp32")
            lines.append(f"`{self.int8_path.name}` (dynamic int8) {kept} on "
                         f"{self.int8_agreement:.1%} of them.")
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
                quantize: bool = False, trust_remote_code: bool = False,
                fuse: bool = False) -> OnnxReport:
    """Write `folder`/model.onnx (and with `quantize` model.int8.onnx) for the model the
    folder holds, checked on `texts` (or made-up inputs) against PyTorch. Code in the
    folder runs only with `trust_remote_code` (the run's own model.trust_remote_code).
    `fuse`: also FUSED_FILE for ONNX Runtime, kept only where it matches PyTorch too."""
    onnxruntime, quantize_dynamic, quant_type = _libraries()
    model, inputs = _model_and_inputs(folder, loader, texts, trust_remote_code)
    target = folder / ONNX_FILE
    _export(model, inputs, target)
    try:  # ONNX Runtime's own failures too: one sentence, and nothing half-kept
        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        reference = _torch_outputs(model, inputs)
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        if len(got) != len(reference):
            raise ValueError(f"{len(got)} outputs against PyTorch's {len(reference)}")
        diff = max(float(abs(g - r).max()) for g, r in zip(got, reference, strict=True))
    except Exception as exc:
        _remove(folder, ONNX_FILE)
        raise OnnxError(f"The ONNX model could not be checked against PyTorch "
                        f"({type(exc).__name__}: {_first_line(exc)}); nothing was kept.") from None
    if not diff <= TOLERANCE:
        _remove(folder, ONNX_FILE)
        raise OnnxError(f"The ONNX model's outputs differ from PyTorch's by {diff:.2e} "
                        f"(more than {TOLERANCE:g}); nothing was kept.")
    vectors = loader in EMBEDDING_LOADERS
    fused = _fused(folder, inputs, reference, onnxruntime) if fuse else None
    report = OnnxReport(target, diff, int(next(iter(inputs.values())).shape[0]),
                        vectors=vectors, fused_path=fused)
    if not quantize:
        return report
    int8 = folder / INT8_FILE
    try:
        quantize_dynamic(str(target), str(int8), weight_type=quant_type.QInt8)
        small = onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
        quantised = small.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
        agree = _agreement(quantised, got[0], vectors)
    except Exception as exc:
        _remove(folder, INT8_FILE)
        raise OnnxError(f"The int8 copy could not be made ({type(exc).__name__}: "
                        f"{_first_line(exc)}); {ONNX_FILE} is kept, checked.") from None
    return OnnxReport(target, diff, report.examples, int8, agree, vectors, fused)


def _fused(folder: Path, inputs: dict, reference: list, onnxruntime) -> Path | None:
    """FUSED_FILE: model.onnx through onnxscript's ONNX Runtime fusions (the dynamo graph
    keeps attention as plain MatMul and Softmax, which ONNX Runtime's own optimiser does
    not fuse); None, and nothing kept, where that fails or strays beyond TOLERANCE."""
    target = folder / FUSED_FILE
    try:
        import onnx_ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort

        fused, _ = optimize_for_ort(onnx_ir.load(str(folder / ONNX_FILE)))
        onnx_ir.save(fused, str(target))
        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        diff = max(float(abs(g - r).max()) for g, r in zip(got, reference, strict=True))
    except Exception:  # the fusions are a speed-up, never a reason to fail the export
        diff = float("inf")
    if diff <= TOLERANCE:
        return target
    _remove(folder, FUSED_FILE)
    return None


def _agreement(quantised, fp32, vectors: bool) -> float:
    """Share of predictions (a sequence's class, each token's tag, each answer start) the
    int8 model keeps; for embeddings, of vectors within cosine COSINE of fp32's."""
    import numpy as np

    if vectors:
        norms = np.linalg.norm(quantised, axis=-1) * np.linalg.norm(fp32, axis=-1)
        cosine = (quantised * fp32).sum(-1) / np.maximum(norms, 1e-12)
        return float((cosine >= COSINE).mean())
    return float((quantised.argmax(-1) == fp32.argmax(-1)).mean())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _remove(folder: Path, name: str) -> None:
    """An ONNX file and its side file of weights, if any."""
    for path in (folder / name, folder / f"{name}.data"):
        path.unlink(missing_ok=True)


def _model_and_inputs(folder: Path, loader: str, texts: list[str] | None,
                      trust_remote_code: bool = False):
    import torch
    import transformers

    loader, _, shipped = loader.partition("+")  # "+remote_code": the export ships code
    if shipped and _own_code_only(folder):
        trust_remote_code = True  # hubtune's own modeling files, byte for byte
    if loader not in (*TEXT_LOADERS, *IMAGE_LOADERS, *EMBEDDING_LOADERS):
        raise OnnxError(f"hubtune exports ONNX for classification, token classification, "
                        f"QA, embedding and image models; this run's model ({loader}) is "
                        "refused: models that generate text keep their PyTorch form.")
    try:
        if loader in EMBEDDING_LOADERS:
            from engine.modeling.onnx_embedder import SentenceEmbedder

            model = SentenceEmbedder.from_folder(folder)
        else:
            model = getattr(transformers, loader).from_pretrained(
                folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:  # its own code, refused; or a folder it cannot read
        todo = ("a model with code of its own needs the run's model.trust_remote_code: true"
                if "trust_remote_code" in str(exc) else "export the run again")
        raise OnnxError(f"The exported model in {folder} cannot be loaded for ONNX "
                        f"({_first_line(exc)}); {todo}.") from None
    model.eval()
    if loader in IMAGE_LOADERS:
        size = _image_size(folder, model.config)
        generator = torch.Generator().manual_seed(0)
        return model, {"pixel_values": torch.randn(4, 3, size, size, generator=generator)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    texts = texts or ["an example sentence", "another one, a little longer than the first",
                      "short", "the fourth and last of the made-up inputs"]
    encoded = tokenizer(texts[:64], padding=True, truncation=True, max_length=128,
                        return_tensors="pt")
    names = [n for n in tokenizer.model_input_names if n in encoded]
    return model, {n: encoded[n] for n in names}


def _image_size(folder: Path, config) -> int:
    """The side the folder's image processor resizes to (else the config's, else 224)."""
    import json

    try:
        size = json.loads((folder / "preprocessor_config.json").read_text())["size"]
        size = size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else size
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        size = None
    size = size or getattr(config, "image_size", None)
    return size if isinstance(size, int) and size > 0 else 224


def _own_code_only(folder: Path) -> bool:
    """Whether every Python file in `folder` is one hubtune ships (modeling_hubtune.py,
    modeling_hubtune_vision.py) unchanged: then loading it runs only hubtune's code."""
    own = Path(__file__).parent
    files = list(folder.glob("*.py"))
    return bool(files) and all((own / f.name).is_file()
                               and (own / f.name).read_bytes() == f.read_bytes()
                               for f in files)


def _torch_outputs(model, inputs) -> list:
    import torch

    with torch.no_grad():
        out = model(**inputs)
    if isinstance(out, torch.Tensor):  # an embedder's one output
        return [out.numpy()]
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
                          dynamic_shapes=shapes, dynamo=True, external_data=external,
                          verbose=False)  # its progress lines would go to stdout, over a TUI
        return
    except Exception:
        _remove(target.parent, target.name)
    try:
        torch.onnx.export(model, tuple(inputs.values()), str(target),
                          input_names=list(inputs), dynamic_axes=axes, dynamo=False,
                          opset_version=17)
    except Exception as exc:  # the exporter's own failure, as one sentence
        _remove(target.parent, target.name)
        raise OnnxError(f"The model could not be exported to ONNX ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}).") from None
