"""Saving a trained model: safetensors weights, tokenizer, and the head's description."""

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


def export_model(model_dir: Path, target: Path, *, config: dict, summary: dict,
                 run_name: str, force: bool = False,
                 protected: Path | None = None) -> tuple[Path, str]:
    """Write a run's final model to `target` with a model card; returns (folder, how to load).

    Heads built on transformers' task classes are copied as they are. A
    sequence head on BERT's pooler becomes `BertForSequenceClassification`;
    other sequence heads (mean pooling, MLP heads) keep hubtune's format,
    which `engine.predict.Predictor` loads. The folder is built beside `target`
    and moved in (engine.core.outputs.fill_folder): a non-empty `target` is refused
    unless `force`, and nothing inside `protected` (hubtune's data folder) is written.
    """
    import shutil

    from engine.core.outputs import fill_folder

    model_dir = Path(model_dir)
    head = json.loads((model_dir / "hubtune_head.json").read_text(encoding="utf-8"))
    loaders: list[str] = []

    def fill(folder: Path) -> None:
        loader = _convert_sequence(model_dir, folder, head)
        if loader is None:
            for item in model_dir.iterdir():
                if item.is_file():
                    shutil.copy2(item, folder / item.name)
            loader = AUTO_CLASSES.get(head["task"], "engine.predict.Predictor")
        (folder / "README.md").write_text(model_card(head, config, summary, run_name, loader),
                                          encoding="utf-8")
        loaders.append(loader)

    folder = fill_folder(target, fill, force=force, protected=protected)
    return folder, loaders[0]


AUTO_CLASSES = {
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "image-classification": "AutoModelForImageClassification",
}
PIPELINE_TAGS = {
    "text-classification": "text-classification", "text-pair-classification":
    "text-classification", "multi-label-classification": "text-classification",
    "regression": "text-classification", "token-classification": "token-classification",
    "question-answering": "question-answering", "masked-lm": "fill-mask",
    "causal-lm": "text-generation", "seq2seq": "text2text-generation",
    "image-classification": "image-classification", "feature-extraction": "feature-extraction",
}


def _convert_sequence(model_dir: Path, target: Path, head: dict) -> str | None:
    """BERT pooler + linear head -> BertForSequenceClassification, else None."""
    if head["task"] not in ("text-classification", "text-pair-classification",
                            "multi-label-classification", "regression"):
        return None
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
    problem = {"regression": "regression",
               "multi-label-classification": "multi_label_classification"}.get(
        head["task"], "single_label_classification")
    auto_config = AutoConfig.from_pretrained(model_dir)
    auto_config.architectures = ["BertForSequenceClassification"]
    auto_config.num_labels = len(labels) if labels else 1
    if labels:
        auto_config.id2label = dict(enumerate(labels))
        auto_config.label2id = {n: i for i, n in enumerate(labels)}
    auto_config.problem_type = problem
    auto_config.save_pretrained(target)
    save_file(converted, str(target / "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return "AutoModelForSequenceClassification"


def model_card(head: dict, config: dict, summary: dict, run_name: str, loader: str) -> str:
    """A README with hub front matter, how to load it, the data, metrics and the config.

    Built only from the run's config and summary, which never hold a token.
    """
    import yaml

    front = {"library_name": "transformers" if loader.startswith("Auto") else "hubtune",
             "base_model": head.get("base_model"), "pipeline_tag": PIPELINE_TAGS.get(
                 head["task"]), "tags": ["hubtune", head["task"]]}
    if not str(front["base_model"] or "").count("/") == 1 or Path(
            str(front["base_model"])).exists():
        front.pop("base_model")  # only hub ids belong there, not local paths
    metrics = {k.removeprefix("best_"): v for k, v in summary.items()
               if k.startswith("best_") and isinstance(v, (int, float)) and k != "best_step"}
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    data = config.get("data", {})
    load = (f"from transformers import {loader}\nmodel = {loader}.from_pretrained(\"PATH\")"
            if loader.startswith("Auto") else
            "from engine.predict import Predictor  # pip install hubtune\n"
            "predictor = Predictor(\"PATH\")\nprint(predictor.predict([\"some text\"]))")
    labels = ", ".join(head.get("labels") or []) or "-"
    validation = (Path(str(data["validation"])).name if data.get("validation") else
                  f"a {data.get('validation_split')} split of the training file (seeded)")
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# {run_name}\n\nFine-tuned with hubtune from `{head.get('base_model')}` for "
        f"{head['task']}.\n\n## Load it\n\n```python\n{load}\n```\n\n"
        f"## Data\n\n- training file: `{Path(str(data.get('train', '-'))).name}`\n"
        f"- validation: {validation}\n"
        f"- labels: {labels}\n\n"
        f"## Validation metrics (the exported weights, step {summary.get('model_step', '-')})"
        f"\n\n| metric | value |\n|---|---|\n{rows or '| - | - |'}\n\n"
        f"## Config\n\n```yaml\n{yaml.safe_dump(config, sort_keys=False)}```\n"
    )


def push_folder(folder: Path, repo: str, *, private: bool = True) -> str:
    """Upload an exported folder to a hub repo (created if needed); returns its URL."""
    from huggingface_hub import HfApi

    from engine.hub.client import hub_errors

    api = HfApi()
    with hub_errors(repo):
        api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo,
                          commit_message="Upload a hubtune fine-tune")
    return f"https://huggingface.co/{repo}"
