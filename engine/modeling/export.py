"""Saving a trained sequence model (safetensors weights, tokenizer, the head's
description), and the writers of each form `hubtune export` gives a folder that loads
without hubtune (a BERT conversion, remote-code sequence and torchvision folders, a
sentence-transformers folder), with a model card that holds no local path or user name.
Which form a run gets is its task adapter's (`Task.export`, called by
engine.trained.export); nothing here names a task. The shipped modeling files
(modeling_hubtune*.py beside this module) import only torch, torchvision and
transformers."""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.config import RunConfig


def save_model(model, tokenizer, labels, pooling: str, cfg: RunConfig, target: Path) -> Path:
    from safetensors.torch import save_model as save_safetensors

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, str(target / "model.safetensors"))
    tokenizer.save_pretrained(target)
    model.backbone.config.save_pretrained(target)
    (target / "hubtune_head.json").write_text(
        json.dumps({"task": cfg.head.task, "labels": list(labels), "pooling": pooling,
                    "base_model": cfg.model.id,
                    "custom_hidden": cfg.head.custom.hidden if cfg.head.custom else None},
                   indent=2),
        encoding="utf-8",
    )
    return target


# -- `hubtune export`: a self-contained folder for transformers users --------

AUTO_SEQUENCE_TYPES = ("bert",)
"""Backbones whose *ForSequenceClassification is exactly pooler -> dropout -> linear, so a
hubtune head with BERT's pooler converts to it weight for weight."""


REMOTE_CODE = "AutoModelForSequenceClassification+remote_code"
"""The loader name of a folder that ships `modeling_hubtune.py` (trust_remote_code=True)."""
SENTENCE_TRANSFORMERS = "SentenceTransformer"
REMOTE_VISION = "AutoModelForImageClassification+remote_code"
"""The loader name of a torchvision run's folder (`modeling_hubtune_vision.py`)."""
LOADER_WORDS = {
    REMOTE_VISION: "AutoModelForImageClassification, trust_remote_code=True; its code is "
                   "modeling_hubtune_vision.py in the folder (needs torchvision)",
    REMOTE_CODE: "AutoModelForSequenceClassification, trust_remote_code=True; its head's "
                 "code is modeling_hubtune.py in the folder",
    SENTENCE_TRANSFORMERS: "sentence-transformers' SentenceTransformer",
}
"""How `hubtune export` names a loader that is more than a transformers Auto class."""


def problem_type(kind: str) -> str:
    """transformers' `config.problem_type` for a sequence head's label kind (the
    `problem_type` of engine.modeling.loading.SequenceClassifier)."""
    from engine.modeling.loading import REGRESSION

    return REGRESSION if kind == REGRESSION else f"{kind}_classification"


def _label_config(auto_config, head: dict, kind: str) -> None:
    from engine.modeling.loading import REGRESSION

    labels = head["labels"]
    scalar = kind == REGRESSION
    auto_config.num_labels = len(labels) if labels and not scalar else 1
    if labels and not scalar:
        auto_config.id2label = dict(enumerate(labels))
        auto_config.label2id = {n: i for i, n in enumerate(labels)}
    auto_config.problem_type = problem_type(kind)


def portable_sequence(model_dir: Path, target: Path, head: dict, kind: str) -> str:
    """A sequence head of label kind `kind`: its weights as they are, `modeling_hubtune.py`
    beside them and an `auto_map` naming it, so `AutoModelForSequenceClassification` loads
    it with `trust_remote_code=True`."""
    import shutil

    from transformers import AutoConfig, AutoTokenizer

    auto_config = AutoConfig.from_pretrained(model_dir)
    _label_config(auto_config, head, kind)
    auto_config.architectures = ["HubtuneForSequenceClassification"]
    auto_config.auto_map = {"AutoModelForSequenceClassification":
                            "modeling_hubtune.HubtuneForSequenceClassification"}
    auto_config.hubtune_pooling = head.get("pooling") or "cls"
    auto_config.hubtune_head_hidden = head.get("custom_hidden")
    auto_config.save_pretrained(target)
    shutil.copy2(Path(__file__).with_name("modeling_hubtune.py"), target / "modeling_hubtune.py")
    shutil.copy2(model_dir / "model.safetensors", target / "model.safetensors")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return REMOTE_CODE


def portable_torchvision(model_dir: Path, target: Path, head: dict) -> str | None:
    """A torchvision image run: its weights, `modeling_hubtune_vision.py`, a config.json
    whose `auto_map` names it, and an image processor with the run's size and
    normalisation; None for a run on a transformers image model."""
    import shutil

    if not head.get("arch"):
        return None
    labels, image = head["labels"], head["image"]
    module = "modeling_hubtune_vision"
    (target / "config.json").write_text(json.dumps({
        "model_type": "hubtune_torchvision", "arch": head["arch"], "num_channels": 3,
        "architectures": ["HubtuneForImageClassification"],
        "auto_map": {"AutoConfig": f"{module}.HubtuneTorchvisionConfig",
                     "AutoModelForImageClassification":
                     f"{module}.HubtuneForImageClassification"},
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: i for i, n in enumerate(labels)},
    }, indent=2), encoding="utf-8")
    size = int(image["size"])
    (target / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True,
        "size": {"height": size, "width": size}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(image["mean"]),
        "image_std": list(image["std"]),
    }, indent=2), encoding="utf-8")
    shutil.copy2(Path(__file__).with_name(f"{module}.py"), target / f"{module}.py")
    shutil.copy2(model_dir / "model.safetensors", target / "model.safetensors")
    return REMOTE_VISION


def sentence_transformers_folder(model_dir: Path, target: Path, head: dict,
                                 config: dict) -> str | None:
    """An embedding run as a sentence-transformers folder (the backbone's weights,
    modules.json, 1_Pooling; BERT's pooler as a tanh 2_Dense over the first token); None
    for a pooler of another shape."""
    pooler = ("backbone.pooler.dense.weight", "backbone.pooler.dense.bias")
    if head.get("pooling") not in ("mean", "cls", "pooler"):
        return None
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoTokenizer

    weights = load_file(str(model_dir / "model.safetensors"))
    if head["pooling"] == "pooler" and not all(k in weights for k in pooler):
        return None
    backbone = {k.removeprefix("backbone."): v for k, v in weights.items()
                if k.startswith("backbone.")}
    save_file(backbone, str(target / "model.safetensors"), metadata={"format": "pt"})
    auto_config = AutoConfig.from_pretrained(model_dir)
    auto_config.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    pooling, hidden = head["pooling"], auto_config.hidden_size
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling != "mean", "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2), encoding="utf-8")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}]
    if pooling == "pooler":  # BERT's pooler: tanh(W h_cls + b)
        (target / "2_Dense").mkdir()
        (target / "2_Dense" / "config.json").write_text(json.dumps({
            "in_features": hidden, "out_features": hidden, "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh"}), encoding="utf-8")
        save_file({"linear.weight": weights[pooler[0]], "linear.bias": weights[pooler[1]]},
                  str(target / "2_Dense" / "model.safetensors"), metadata={"format": "pt"})
        modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense"})
    (target / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    max_length = int((config.get("data") or {}).get("max_length") or 512)
    (target / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_length, "do_lower_case": False}), encoding="utf-8")
    return SENTENCE_TRANSFORMERS


PATH_KEYS = ("_name_or_path", "name_or_path", "base_model", "base_model_name_or_path")
"""Keys of a saved model's small JSON files that may hold a folder on this machine."""


def scrub_folder(folder: Path) -> None:
    """Local paths out of the small JSON files (`_name_or_path`, hubtune_head.json's
    `base_model` when it is a folder on this machine). Only those keys: a vocabulary's
    tokens may look like paths ('/', './')."""
    for path in folder.rglob("*.json"):
        if path.stat().st_size > 1_000_000:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        local = {k: Path(v).name for k, v in data.items()
                 if k in PATH_KEYS and isinstance(v, str) and _is_local_path(v)}
        if local:
            path.write_text(json.dumps({**data, **local}, indent=2, ensure_ascii=False),
                            encoding="utf-8")


def portable_config(value, key: str = ""):
    """A run config (or any JSON value) with nothing local: `base_dir` dropped, every path
    on this machine cut to its file name (hub ids, `hf:` datasets and relative names stay)."""
    if isinstance(value, dict):
        return {k: portable_config(v, str(k)) for k, v in value.items()
                if k not in ("base_dir", "output_dir")}
    if isinstance(value, list):
        return [portable_config(v, key) for v in value]
    if isinstance(value, str) and _is_local_path(value):
        return Path(value).name
    return value


def _is_local_path(text: str) -> bool:
    import os

    if not text or "\n" in text or text.startswith(("hf:", "pkg:", "run:", "torchvision:")):
        return False
    if text.startswith(("/", "~", "./", "../")) or (len(text) > 2 and text[1:3] in (":\\", ":/")):
        return True
    home = os.path.expanduser("~")
    return home not in ("", "/") and home in text


def convert_sequence(model_dir: Path, target: Path, head: dict, kind: str) -> str | None:
    """A sequence head of label kind `kind` with BERT's pooler and a linear head ->
    BertForSequenceClassification, else None."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if (head.get("pooling") != "pooler" or head.get("custom_hidden")
            or config.get("model_type") not in AUTO_SEQUENCE_TYPES):
        return None
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoTokenizer

    weights = load_file(str(model_dir / "model.safetensors"))
    converted = {}
    for name, tensor in weights.items():
        if name.startswith("backbone."):
            converted["bert." + name.removeprefix("backbone.")] = tensor
        elif name.startswith("head.1."):
            converted["classifier." + name.removeprefix("head.1.")] = tensor
    labels = head["labels"]
    auto_config = AutoConfig.from_pretrained(model_dir)
    auto_config.architectures = ["BertForSequenceClassification"]
    auto_config.num_labels = len(labels) if labels else 1
    if labels:
        auto_config.id2label = dict(enumerate(labels))
        auto_config.label2id = {n: i for i, n in enumerate(labels)}
    auto_config.problem_type = problem_type(kind)
    auto_config.save_pretrained(target)
    save_file(converted, str(target / "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return "AutoModelForSequenceClassification"


LOAD_SNIPPETS = {
    REMOTE_CODE: (
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        "# The head's code ships in this folder (modeling_hubtune.py); read it, then allow it.\n"
        "model = AutoModelForSequenceClassification.from_pretrained(\"PATH\", "
        "trust_remote_code=True)\ntokenizer = AutoTokenizer.from_pretrained(\"PATH\")\n"
        "logits = model(**tokenizer([\"some text\"], return_tensors=\"pt\")).logits"),
    REMOTE_VISION: (
        "from PIL import Image\n"
        "from transformers import AutoImageProcessor, AutoModelForImageClassification\n\n"
        "# The network's code ships in this folder (modeling_hubtune_vision.py; it needs "
        "torchvision).\n"
        "model = AutoModelForImageClassification.from_pretrained(\"PATH\", "
        "trust_remote_code=True)\nprocessor = AutoImageProcessor.from_pretrained(\"PATH\")\n"
        "logits = model(**processor(Image.open(\"some.png\").convert(\"RGB\"), "
        "return_tensors=\"pt\")).logits"),
    SENTENCE_TRANSFORMERS: (
        "from sentence_transformers import SentenceTransformer\n\n"
        "model = SentenceTransformer(\"PATH\")\nvectors = model.encode([\"some text\"])"),
}


def _load_snippet(loader: str) -> str:
    if loader in LOAD_SNIPPETS:
        return LOAD_SNIPPETS[loader]
    if loader.startswith("Auto"):
        return f"from transformers import {loader}\nmodel = {loader}.from_pretrained(\"PATH\")"
    return ("from engine.trained.predict import Predictor  # pip install hubtune\n"
            "predictor = Predictor(\"PATH\")\nprint(predictor.predict([\"some text\"]))")


def model_card(head: dict, config: dict, summary: dict, run_name: str, loader: str,
               pipeline_tag: str | None = None) -> str:
    """A README with hub front matter (`pipeline_tag`: the task's, from its adapter), how to
    load it, the data, metrics and the config.

    Built only from the run's config and summary, which never hold a token; local paths
    (`base_dir`, data files, a base model on disk) are cut to their names.
    """
    import yaml

    library = ("sentence-transformers" if loader == SENTENCE_TRANSFORMERS else
               "transformers" if loader.startswith("Auto") else "hubtune")
    base = portable_config(str(head.get("base_model") or ""))
    front = {"library_name": library, "base_model": base,
             "pipeline_tag": pipeline_tag, "tags": ["hubtune", head["task"]]}
    if base.count("/") != 1 or Path(base).exists() or base != head.get("base_model"):
        front.pop("base_model")  # only hub ids belong there, not local paths
    from store.records import kept_metrics

    metrics = kept_metrics(summary)[1]  # of the evaluation whose weights these are
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    config = portable_config(config)
    data = config.get("data", {})
    labels = ", ".join(head.get("labels") or []) or "-"
    validation = (Path(str(data["validation"])).name if data.get("validation") else
                  f"a {data.get('validation_split')} split of the training file (seeded)")
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# {run_name}\n\nFine-tuned with hubtune from `{base or '-'}` for "
        f"{head['task']}.\n\n## Load it\n\n```python\n{_load_snippet(loader)}\n```\n\n"
        f"## Data\n\n- training file: `{Path(str(data.get('train', '-'))).name}`\n"
        f"- validation: {validation}\n"
        f"- labels: {labels}\n\n"
        f"## Validation metrics (the exported weights, step {summary.get('model_step', '-')})"
        f"\n\n| metric | value |\n|---|---|\n{rows or '| - | - |'}\n\n"
        f"## Config\n\n```yaml\n{yaml.safe_dump(config, sort_keys=False)}```\n"
    )


def push_folder(folder: Path, repo: str, *, private: bool = True) -> str:
    """Upload an exported folder to a hub repo (created if needed); returns the commit's
    URL (engine.hub.push)."""
    from engine.hub.push import push_folder as push

    return push(folder, repo, private=private)
