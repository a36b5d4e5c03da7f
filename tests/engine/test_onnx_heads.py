"""ONNX parity per head that `export --onnx` allows (#36): token classification, image
classification (a transformers ViT and a torchvision backbone), embeddings and extractive
QA, beside the sequence classifier of test_onnx_export. Each head trains one step of a
tiny model in this process (once for the module), is exported as `hubtune export` does,
then as ONNX (checked at export), and ONNX Runtime is compared with PyTorch again on
inputs of other shapes than the export saw."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from engine.core.config import RunConfig
from engine.modeling.onnx_export import TOLERANCE, export_onnx

pytestmark = pytest.mark.slow  # torch's exporter takes seconds per model

TEXTS = ["the movie was good", "so very bad food", "it was a really lovely day and fun",
         "sad", "the show"]


def _trained(root, name: str, model, task: str, data, **more) -> tuple:
    """(exported folder, loader) of a one-step run of `task`."""
    from engine.trained.export import export_model
    from engine.training.loop import train

    model_cfg = {"id": str(model)}
    if str(model).startswith("torchvision:"):
        model_cfg["weights"] = "none"
    head = {"task": task, **more.pop("head", {})}
    cfg = RunConfig.from_dict({
        "name": task, "model": model_cfg, "head": head,
        "data": {"train": str(data), "validation_split": 0.25, "max_length": 32,
                 "doc_stride": 8, **more},
        "train": {"epochs": 1, "max_steps": 1, "batch_size": 8, "learning_rate": 3e-3,
                  "seed": 0, "warmup_ratio": 0.0},
        "base_dir": str(root)})
    out = root / f"run-{name}"
    outcome = train(cfg, lambda e: None, threading.Event(), out_dir=out)
    assert outcome.status == "completed", outcome.error
    return export_model(out / "model", root / f"exported-{name}", config=cfg.to_dict(),
                        summary=outcome.summary or {}, run_name=task)


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """name -> (exported folder, loader) of one tiny run per head, each trained once for
    the module when a test first asks for it."""
    from tests.support import task_data as td
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("onnx-heads")
    bert = make_tiny_family("bert", root / "bert")
    vit = make_tiny_family("vit", root / "vit")
    texts = td.write_text_csv(root / "texts.csv", rows=20)
    digits = td.write_digits_folder(root / "digits", per_class=4, classes=range(3))
    recipes = {
        "token": lambda: (bert, "token-classification",
                          td.write_token_jsonl(root / "ner.jsonl", rows=20), {}),
        "qa": lambda: (bert, "question-answering",
                       td.write_qa_jsonl(root / "qa.jsonl", rows=20), {}),
        "embedding-mean": lambda: (bert, "feature-extraction", texts,
                                   {"head": {"pooling": "mean"}}),
        "embedding-pooler": lambda: (bert, "feature-extraction", texts,
                                     {"head": {"pooling": "pooler"}}),
        "vit": lambda: (vit, "image-classification", digits, {}),
        "torchvision": lambda: ("torchvision:mobilenet_v3_small", "image-classification",
                                digits, {"image_size": 32}),
    }
    made: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in made:
            model, task, data, more = recipes[name]()
            made[name] = _trained(root, name, model, task, data, **more)
        return made[name]

    return get


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _text_batch(folder, texts, pairs=None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return tokenizer(texts, pairs, padding=True, truncation=True, max_length=32,
                     return_tensors="np")


def _onnx(report, batch: dict) -> list:
    session = _session(report.path)
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in batch.items() if k in names})


def _close(got, want) -> None:
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE


def test_token_classification_matches_pytorch(heads):
    from transformers import AutoModelForTokenClassification

    folder, loader = heads("token")
    assert loader == "AutoModelForTokenClassification"
    report = export_onnx(folder, loader, texts=TEXTS[:3], quantize=True)
    assert report.max_abs_diff <= TOLERANCE and report.examples == 3
    assert 0.0 <= report.int8_agreement <= 1.0
    batch = _text_batch(folder, TEXTS)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        want = model(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    got = _onnx(report, batch)[0]
    assert got.shape[:2] == batch["input_ids"].shape and got.shape[2] == model.num_labels
    _close(got, want)


def test_question_answering_matches_pytorch_on_question_context_pairs(heads):
    from transformers import AutoModelForQuestionAnswering

    folder, loader = heads("qa")
    assert loader == "AutoModelForQuestionAnswering"
    report = export_onnx(folder, loader, texts=TEXTS[:4])
    batch = _text_batch(folder, ["what was good ?", "what was bad ?"],
                        ["the film was good . the day was bad .",
                         "the book was bad . it was a really lovely song ."])
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in batch.items()})
    start, end = _onnx(report, batch)
    _close(start, out.start_logits.numpy())
    _close(end, out.end_logits.numpy())


@pytest.mark.parametrize("pooling", ["mean", "pooler"])
def test_embeddings_match_sentence_transformers(heads, pooling):
    from sentence_transformers import SentenceTransformer

    folder, loader = heads(f"embedding-{pooling}")
    assert loader == "SentenceTransformer"
    report = export_onnx(folder, loader, texts=TEXTS[:2], quantize=True)
    assert report.max_abs_diff <= TOLERANCE and 0.0 <= report.int8_agreement <= 1.0
    assert "the same class" not in report.card_section()  # vectors have no class
    want = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    got = _onnx(report, _text_batch(folder, TEXTS))
    assert len(got) == 1
    _close(got[0], want)


@pytest.mark.parametrize("kind", ["vit", "torchvision"])
def test_image_classification_matches_pytorch(heads, kind):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    folder, loader = heads(kind)
    report = export_onnx(folder, loader, quantize=kind == "vit")
    model = AutoModelForImageClassification.from_pretrained(
        folder, trust_remote_code=loader.endswith("+remote_code")).eval()
    size = AutoImageProcessor.from_pretrained(folder).size["height"]
    pixels = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(pixel_values=pixels).logits.numpy()
    got = _onnx(report, {"pixel_values": pixels.numpy()})[0]
    assert got.shape == (3, len(model.config.id2label))
    _close(got, want)
