"""A run's sequence classifier run by ONNX Runtime on the CPU (`predict --file F --out O
--runtime onnx [--quantize]`).

The ONNX model is made once per run from its exported folder (engine.trained.export,
then engine.modeling.onnx_export, which checks it against PyTorch) and kept in the run's
folder (`onnx/`); `OnnxSequenceModel` then stands in for the torch model where the task
adapter calls it, so reading the file, batching and writing the predictions are the
same as with PyTorch. fp32 predicts with the fused copy (`model.ort.onnx`: ONNX Runtime's
attention and layer-norm kernels) where the export could make one that matches PyTorch,
else with model.onnx; the session uses as many threads as torch does, so the two
runtimes are compared on the same cores.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.errors import HubtuneError
from engine.modeling.onnx_export import FUSED_FILE, INT8_FILE, ONNX_FILE, export_onnx

REPORT = "onnx-report.json"


class OnnxSequenceModel:
    """Called like a hubtune sequence classifier (input_ids, attention_mask,
    token_type_ids) -> (None, logits), on an ONNX Runtime session."""

    def __init__(self, path: Path) -> None:
        import torch

        from engine.modeling.onnx_export import _libraries

        onnxruntime = _libraries()[0]  # or one sentence naming the onnx extra
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        self.names = {i.name for i in self.session.get_inputs()}

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        import torch

        feed = {"input_ids": input_ids.cpu().numpy(),
                "attention_mask": attention_mask.cpu().numpy()}
        if "token_type_ids" in self.names:
            types = token_type_ids if token_type_ids is not None else input_ids * 0
            feed["token_type_ids"] = types.cpu().numpy()
        return None, torch.from_numpy(self.session.run(None, feed)[0])


def onnx_model(run_dir: Path, *, config: dict, summary: dict, run_name: str,
               quantize: bool = False) -> tuple[OnnxSequenceModel, str]:
    """The run's ONNX model (made on first use), and a sentence on how it was checked."""
    from engine.trained.export import export_model

    folder = run_dir / "onnx"
    model = folder / (INT8_FILE if quantize else ONNX_FILE)
    report_file = folder / REPORT
    if not model.is_file():
        exported, loader = export_model(run_dir / "model", folder, config=config,
                                        summary=summary, run_name=run_name, force=True)
        if loader.partition("+")[0] != "AutoModelForSequenceClassification":
            raise HubtuneError("--runtime onnx predicts with sequence classification runs; "
                               f"this run's model loads with {loader} (use the default "
                               "runtime).")
        trust = bool((config.get("model") or {}).get("trust_remote_code"))
        report = export_onnx(exported, loader, quantize=quantize, trust_remote_code=trust,
                             fuse=True)
        report_file.write_text(json.dumps({"max_abs_diff": report.max_abs_diff,
                                           "int8_agreement": report.int8_agreement}))
    found = json.loads(report_file.read_text()) if report_file.is_file() else {}
    note = f"ONNX Runtime (CPU), within {found.get('max_abs_diff', 0):.1e} of PyTorch"
    if quantize and found.get("int8_agreement") is not None:
        note += f"; int8, the same class as fp32 on {found['int8_agreement']:.1%} of checks"
    if not quantize and (folder / FUSED_FILE).is_file():
        model = folder / FUSED_FILE
        note += " (its fused kernels)"
    return OnnxSequenceModel(model), note + "."
