"""Exports that load anywhere: a mean-pooled or MLP sequence head ships its own modeling
file (`auto_map`, trust_remote_code) and an embedding run becomes a sentence-transformers
folder; both load in a fresh interpreter where hubtune's packages cannot be imported, and
give what hubtune's own predictor gives. The card shows that snippet and nothing local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

from engine.core.config import RunConfig

TEXTS = ["the movie was good", "so very bad food", "it was a really lovely day and fun", "sad"]
SECRET_PATH_PART = "private-data-of-someone"

# A fresh interpreter: no site processing (so no editable-install finder for hubtune), only
# the environment's site-packages on sys.path, started outside the repository.
PROBE = """
import importlib.util, json, sys
sys.path = [p for p in sys.path if p] + [{site!r}]
for name in ("engine", "store", "tui"):
    assert importlib.util.find_spec(name) is None, name + " is importable"
results = []
for folder, kind, texts in json.loads(sys.argv[1]):
    if kind == "sequence":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained(folder,
                                                                   trust_remote_code=True)
        model.eval()
        tok = AutoTokenizer.from_pretrained(folder)
        with torch.no_grad():
            out = model(**tok(texts, padding=True, return_tensors="pt")).logits.tolist()
        info = {{"id2label": model.config.id2label, "class": type(model).__name__}}
    elif kind == "image":
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
        model.eval()
        processor = AutoImageProcessor.from_pretrained(folder)
        with torch.no_grad():
            out = [model(**processor(Image.open(p).convert("RGB"), return_tensors="pt"))
                   .logits[0].softmax(-1).tolist() for p in texts]
        info = {{"id2label": model.config.id2label, "class": type(model).__name__}}
    else:
        from sentence_transformers import SentenceTransformer
        out = SentenceTransformer(folder, device="cpu").encode(texts).tolist()
        info = {{}}
    results.append({{"out": out, "info": info}})
print(json.dumps({{"results": results, "modules": sorted(
    m for m in sys.modules if m.split(".")[0] in ("engine", "store", "tui"))}}))
"""


def _load_elsewhere(folders: list[tuple], tmp_path: Path) -> list[dict]:
    """Each (folder, kind[, inputs]) loaded by a fresh interpreter without hubtune, its
    outputs for the inputs (default TEXTS); one process for all, as importing
    transformers is most of the cost."""
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf-elsewhere"), "PYTHONNOUSERSITE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE.format(site=site),
         json.dumps([(str(f[0]), f[1], f[2] if len(f) > 2 else TEXTS) for f in folders])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    return result["results"]


def _saved_run(tmp_path: Path, tiny_bert: Path, task: str, pooling: str,
               hidden: int | None, labels: tuple[str, ...]) -> tuple[Path, RunConfig]:
    """A hubtune model folder as a run saves it (random head weights: no training needed
    to compare two loaders)."""
    from engine.modeling.export import save_model
    from engine.modeling.loading import build_model

    data = tmp_path / SECRET_PATH_PART / "train.csv"
    head = {"task": task, "pooling": pooling}
    if hidden:
        head["custom"] = {"hidden": hidden}
    cfg = RunConfig.from_dict({"name": "portable", "model": {"id": str(tiny_bert)},
                               "head": head, "data": {"train": str(data)},
                               "base_dir": str(tmp_path / SECRET_PATH_PART)})
    torch.manual_seed(0)
    built = build_model(cfg.model, cfg.head, max(1, len(labels)))
    for p in built.model.head.parameters():
        torch.nn.init.normal_(p, std=0.5)  # a head far from zero, so a mismatch shows
    target = save_model(built.model.eval(), built.tokenizer, labels, built.pooling, cfg,
                        tmp_path / "run" / "model")
    return target, cfg


def _check_card(folder: Path, tmp_path: Path, snippet: str) -> str:
    import getpass

    card = (folder / "README.md").read_text(encoding="utf-8")
    local = (str(tmp_path), SECRET_PATH_PART, f"pytest-of-{getpass.getuser()}", "base_dir")
    assert snippet in card and "engine.trained.predict" not in card and "hubtune import" not in card
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not [x for x in local if x in text], path
    return card


SEQUENCE_CASES = [
    ("text-classification", "mean", 16, ("negative", "neutral", "positive")),
    ("regression", "cls", None, ()),
]
EMBEDDING_POOLINGS = ("mean", "pooler")


def test_exports_load_without_hubtune_and_predict_as_hubtune_does(tmp_path, tiny_bert):
    from engine.modeling.export import REMOTE_CODE, SENTENCE_TRANSFORMERS
    from engine.trained.export import export_model
    from engine.trained.predict import Predictor

    exported, ours = [], []
    for n, (task, pooling, hidden, labels) in enumerate(SEQUENCE_CASES):
        model_dir, cfg = _saved_run(tmp_path / f"s{n}", tiny_bert, task, pooling, hidden,
                                    labels)
        folder, loader = export_model(model_dir, tmp_path / f"exported-{n}",
                                      config=cfg.to_dict(),
                                      summary={"best_accuracy": 0.5, "model_step": 3},
                                      run_name="portable")
        assert loader == REMOTE_CODE
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == {"AutoModelForSequenceClassification":
                                      "modeling_hubtune.HubtuneForSequenceClassification"}
        assert (folder / "modeling_hubtune.py").is_file()
        assert not (folder / "hubtune_head.json").exists()
        card = _check_card(folder, tmp_path, "trust_remote_code=True")
        assert "library_name: transformers" in card and "| accuracy | 0.5000 |" in card
        assert "train.csv" in card  # the file's name stays; its folder does not
        exported.append((folder, "sequence"))
        ours.append(Predictor(model_dir).score_batches(TEXTS, batch_size=2))

    for pooling in EMBEDDING_POOLINGS:
        model_dir, cfg = _saved_run(tmp_path / pooling, tiny_bert, "feature-extraction",
                                    pooling, None, ())
        folder, loader = export_model(model_dir, tmp_path / f"st-{pooling}",
                                      config=cfg.to_dict(), summary={}, run_name="embed")
        assert loader == SENTENCE_TRANSFORMERS
        assert (folder / "2_Dense").is_dir() == (pooling == "pooler")
        card = _check_card(folder, tmp_path, 'SentenceTransformer("PATH")')
        assert "library_name: sentence-transformers" in card
        exported.append((folder, "embedding"))
        ours.append(torch.tensor([[p.scores[f"dim{i}"] for i in range(len(p.scores))]
                                  for p in Predictor(model_dir).predict(TEXTS)]))

    tv_folder, images, tv_ours = _torchvision_export(tmp_path / "tv")
    *loaded, tv_theirs = _load_elsewhere([*exported, (tv_folder, "image", images)], tmp_path)
    for (task, _, _, labels), theirs, mine in zip(SEQUENCE_CASES, loaded, ours, strict=False):
        assert theirs["info"]["class"] == "HubtuneForSequenceClassification"
        logits = torch.tensor(theirs["out"])
        if task == "regression":
            assert logits.shape == (4, 1) and torch.allclose(logits, mine, atol=1e-5)
        else:
            assert theirs["info"]["id2label"] == {str(i): n for i, n in enumerate(labels)}
            assert torch.allclose(torch.softmax(logits, -1), mine, atol=1e-5)
    # The embedding folders: sentence-transformers' vectors are hubtune's pooled vectors.
    for theirs, mine in zip(loaded[len(SEQUENCE_CASES):], ours[len(SEQUENCE_CASES):],
                            strict=True):
        assert torch.allclose(torch.tensor(theirs["out"]), mine, atol=1e-5)
    # The torchvision folder: the same network, and the processor resizes and normalises
    # as the run did.
    assert tv_theirs["info"] == {"id2label": {"0": "cat", "1": "dog", "2": "owl"},
                                 "class": "HubtuneForImageClassification"}
    assert torch.allclose(torch.tensor(tv_theirs["out"]), tv_ours, atol=1e-3)


def _torchvision_export(tmp_path: Path) -> tuple[Path, list[str], torch.Tensor]:
    """(exported folder, image files, hubtune's probabilities for them) of a torchvision
    run: torchvision backbones have no transformers class, so the folder ships one, with an
    image processor holding the run's size and normalisation."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import save_model

    from engine.modeling.export import REMOTE_VISION
    from engine.tasks.base import write_head_file
    from engine.tasks.image import IMAGENET_MEAN, IMAGENET_STD, TorchvisionClassifier
    from engine.trained.export import export_model
    from engine.trained.predict import Predictor

    cfg = RunConfig.from_dict({"name": "tv", "model": {"id": "torchvision:mobilenet_v3_small"},
                               "head": {"task": "image-classification"},
                               "data": {"train": str(tmp_path / SECRET_PATH_PART / "imgs")},
                               "base_dir": str(tmp_path / SECRET_PATH_PART)})
    torch.manual_seed(0)
    model = TorchvisionClassifier("mobilenet_v3_small", 3)
    # Fresh batch-norm statistics scale features to near zero; a few batches give it
    # statistics (and a strong head) so that different images get different answers.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        for _ in range(3):
            model.backbone(torch.rand(8, 3, 64, 64))
    model.eval()
    torch.nn.init.normal_(model.head.weight, std=5.0)
    model_dir = tmp_path / "run" / "model"
    model_dir.mkdir(parents=True)
    save_model(model, str(model_dir / "model.safetensors"))
    write_head_file(model_dir, "image-classification", ("cat", "dog", "owl"), cfg,
                    arch="mobilenet_v3_small",
                    image={"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": 64})
    folder, loader = export_model(model_dir, tmp_path / "tv", config=cfg.to_dict(),
                                  summary={}, run_name="tv")
    assert loader == REMOTE_VISION
    _check_card(folder, tmp_path, "AutoModelForImageClassification.from_pretrained")
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        images.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(images[-1])
    ours = torch.tensor([[p.scores[n] for n in ("cat", "dog", "owl")]
                         for p in Predictor(model_dir).predict(images)])
    assert (ours.max(0).values - ours.min(0).values).max() > 0.05  # answers that differ
    return folder, images, ours
