"""ONNX beside an exported folder (engine/modeling/onnx_export.py, #36): the model ONNX
Runtime runs matches PyTorch's within the stated tolerance on other shapes than the
export's, the int8 copy's agreement is reported, and what cannot go is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from engine.modeling.onnx_export import TOLERANCE, OnnxError, export_onnx

pytestmark = pytest.mark.slow  # torch's exporter takes seconds per model


@pytest.fixture
def classifier(tmp_path, tiny_bert):
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "exported"
    shutil.copytree(tiny_bert, folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
    model.save_pretrained(folder)
    return folder


def test_the_onnx_model_matches_pytorch_and_its_int8_copy_is_measured(classifier):
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    report = export_onnx(classifier, "AutoModelForSequenceClassification",
                         texts=["good film", "bad plot and worse acting", "fine"],
                         quantize=True, fuse=True)
    assert report.path.is_file() and report.max_abs_diff <= TOLERANCE and report.examples == 3
    assert report.fused_path.name == "model.ort.onnx"  # attention fused for ONNX Runtime
    assert report.int8_path.is_file() and 0.0 <= report.int8_agreement <= 1.0
    assert f"tolerance {TOLERANCE:g}" in report.card_section()
    # Other batch sizes and lengths than the export saw: the axes are dynamic.
    tokenizer = AutoTokenizer.from_pretrained(classifier)
    batch = tokenizer(["one", "two words", "three words here", "four words are here now",
                       "five"], padding=True, return_tensors="np")
    model = AutoModelForSequenceClassification.from_pretrained(classifier).eval()
    with torch.no_grad():
        want = model(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    for path in (report.path, report.fused_path):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        got = session.run(None, {k: v for k, v in batch.items() if k in names})[0]
        assert got.shape == (5, 3) and np.abs(got - want).max() <= TOLERANCE


def test_models_that_generate_are_refused_in_one_sentence(classifier):
    with pytest.raises(OnnxError, match="models that generate text") as err:
        export_onnx(classifier, "AutoModelForCausalLM")
    assert "\n" not in str(err.value)
    assert not (classifier / "model.onnx").exists()


def test_the_export_command_checks_on_the_runs_texts_and_extends_the_card(
        classifier, sentiment_csv, capsys):
    from tui.cli.models import _add_onnx, _validation_texts

    config = {"model": {"id": "x"}, "data": {"train": str(sentiment_csv)}}
    texts = _validation_texts(config)
    assert texts and len(texts) <= 64 and all(isinstance(t, str) and t for t in texts)
    (classifier / "README.md").write_text("---\nlibrary_name: transformers\n---\n# card\n")
    _add_onnx(classifier, "AutoModelForSequenceClassification", config, quantize=False)
    card = (classifier / "README.md").read_text()
    assert card.startswith("---\nlibrary_name") and "## ONNX" in card
    assert f"on {len(texts)} examples to within" in card
    assert "Wrote model.onnx: ONNX Runtime matches PyTorch" in capsys.readouterr().out
    assert _validation_texts({"model": {"id": "x"}, "data": {"train": "hf:a/b"}}) is None


def test_code_in_the_folder_runs_only_when_the_run_trusted_it(tmp_path):
    import json

    folder = tmp_path / "exported"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil", "auto_map": {
            "AutoConfig": "evil.EvilConfig",
            "AutoModelForSequenceClassification": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                    "from transformers import PretrainedConfig\n"
                                    "class EvilConfig(PretrainedConfig):\n"
                                    "    model_type = 'evil'\n")
    with pytest.raises(OnnxError, match="model.trust_remote_code: true") as err:
        export_onnx(folder, "AutoModelForSequenceClassification")
    assert "\n" not in str(err.value) and not marker.exists()
    assert not (folder / "model.onnx").exists()


def test_predict_with_onnx_runtime_agrees_with_pytorch(tmp_path, tiny_bert, sentiment_csv,
                                                       store):
    import csv

    from tests.support.cli_runner import hubtune, ok
    from tests.support.tests_helpers import config_for, train_in_process

    run_id = train_in_process(config_for(tmp_path, tiny_bert, sentiment_csv, epochs=2))
    torch_out, onnx_out = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    ok("predict", str(run_id), "--file", str(sentiment_csv), "--out", str(torch_out))
    made = ok("predict", str(run_id), "--file", str(sentiment_csv), "--out", str(onnx_out),
              "--runtime", "onnx")
    assert "Predicting with ONNX Runtime (CPU), within" in made.stderr
    assert "(its fused kernels)" in made.stderr

    def rows(path):
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    a, b = rows(torch_out), rows(onnx_out)
    assert len(a) == len(b) > 100 and a[0].keys() == b[0].keys()
    assert [r["predicted"] for r in a] == [r["predicted"] for r in b]
    assert max(abs(float(x["p_positive"]) - float(y["p_positive"]))
               for x, y in zip(a, b, strict=True)) < 1e-3
    int8 = hubtune("predict", str(run_id), "--file", str(sentiment_csv), "--out",
                   str(tmp_path / "int8.csv"), "--runtime", "onnx", "--quantize")
    assert int8.returncode == 0 and "int8, the same class as fp32" in int8.stderr
    lone = hubtune("predict", str(run_id), "some text", "--runtime", "onnx")
    assert lone.returncode == 1 and "predict whole files" in lone.stderr
