"""The interface every task adapter implements, and the pieces they share."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from engine.core.config import MINIMISED_METRICS, RunConfig
from engine.core.errors import ModelError
from engine.modeling.heads import is_vision_config
from engine.modeling.loading import building_on_meta


class Examples(Protocol):
    """What the training loop, its samplers and `evaluate_batches` read of one split's examples,
    whatever the task keeps in them: `FieldExamples` (token, QA, seq2seq, LM),
    `SequenceExamples` and `ArrowSequenceExamples` (the sequence heads), `ImageExamples`
    and `HubImageExamples`.
    Only the task's own collator reads the rest."""

    lengths: Sequence[int]
    """Each example's length in tokens (1 per image): what batches are grouped by."""

    def __len__(self) -> int: ...


@dataclass
class FieldExamples:
    """One split, pre-processed: a dict of lists (one entry per example) per field, padded
    into batches by `FieldCollator`."""

    fields: dict[str, list]
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass
class TaskData:
    train: Examples
    validation: Examples
    labels: tuple[str, ...] = ()
    """Label names in class-index order (empty where the task has none)."""
    majority_class: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """What evaluation needs beyond the features: QA contexts, seq2seq references."""
    warnings: tuple[str, ...] = ()
    """Problems found in the data (left-out rows, look-alike labels): the run reports them."""


class Task:
    """A family of heads. Subclasses fill in each step for their task."""

    watch = "accuracy"
    """The main validation metric: what early stopping and 'best' follow by default."""
    metrics: tuple[str, ...] | None = None
    """Every metric `evaluate` reports, so a watched metric is checked before the run
    starts (None: not known in advance)."""
    vision = False

    def __init__(self, name: str) -> None:
        self.name = name

    # -- steps the loop calls, in order --------------------------------------

    def load_processor(self, cfg: RunConfig):
        """The tokenizer (or image processor) and the model's local folder."""
        from engine.modeling.loading import check_loadable, load_tokenizer, resolve_model_path

        path = resolve_model_path(cfg.model)
        check_loadable(path, cfg.model)
        check_fits(self, cfg, path)
        return load_tokenizer(cfg.model, path)

    def load_data(self, cfg: RunConfig, processor) -> TaskData:
        raise NotImplementedError

    def build(self, cfg: RunConfig, path: Path, data: TaskData) -> torch.nn.Module:
        raise NotImplementedError

    def collator(self, examples: Examples, processor, cfg: RunConfig, *,
                 train: bool) -> Callable:
        """What turns a list of example indices into the model's batch of tensors."""
        raise NotImplementedError

    def evaluate(self, model, data: TaskData, processor, cfg: RunConfig, device) -> dict:
        raise NotImplementedError

    def baseline(self, data: TaskData) -> dict:
        return {}

    def save(self, model, processor, data: TaskData, cfg: RunConfig, target: Path) -> Path:
        """Save a Hugging Face task model so transformers' Auto classes reload it."""
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target, safe_serialization=True)
        processor.save_pretrained(target)
        write_head_file(target, self.name, data.labels, cfg)
        return target

    minimise = MINIMISED_METRICS
    """Metrics where lower is better."""

    def pad_id(self, processor) -> int:
        pad = getattr(processor, "pad_token_id", None)
        return pad if pad is not None else 0


def write_head_file(target: Path, task: str, labels, cfg: RunConfig, **more) -> None:
    (Path(target) / "hubtune_head.json").write_text(
        json.dumps({"task": task, "labels": list(labels), "base_model": cfg.model.id,
                    **more}, indent=2),
        encoding="utf-8",
    )


def model_config(path: Path) -> dict:
    from engine.modeling.loading import config_json

    return config_json(Path(path), str(path))


def check_fits(task: Task, cfg: RunConfig, path: Path) -> None:
    """A head on a backbone of the wrong kind is refused before anything loads."""
    config = model_config(path)
    kind = config.get("model_type", "unknown")
    if task.vision and not is_vision_config(config):
        raise ModelError(
            f"head.task {task.name} needs a vision model, but {cfg.model.id} is a text model "
            f"({kind}); pick an image model (ViT, ResNet, torchvision:resnet18)."
        )
    if not task.vision and is_vision_config(config):
        raise ModelError(
            f"head.task {task.name} needs a text model, but {cfg.model.id} is a vision model "
            f"({kind}); use head.task image-classification or pick a text model."
        )
    if task.vision or config.get("auto_map"):
        return  # remote code may register any head; the load says whether it fits
    from engine.modeling.heads import heads_from_config

    # The heads the new-run form offers: a head outside them fails at the first batch
    # (T5's bare model wants decoder inputs) or trains nonsense (BERT as a causal LM
    # sees the tokens it should predict).
    heads = heads_from_config(config)
    if heads is not None and task.name not in heads:
        hint = MISFIT_HINTS.get(task.name, MISFIT_HINTS["text-classification"])
        fits = f"; heads that fit it: {', '.join(heads)}" if heads else ""
        raise ModelError(f"head.task {task.name} does not fit {cfg.model.id} ({kind}); "
                         f"{hint}{fits}.")


MISFIT_HINTS = {
    "text-classification": "it needs an encoder such as BERT, RoBERTa or DistilBERT (an "
                           "encoder-decoder trains with head.task seq2seq)",
    "token-classification": "it needs an encoder such as BERT, RoBERTa or DistilBERT",
    "question-answering": "it needs an encoder such as BERT, RoBERTa or DistilBERT",
    "masked-lm": "it needs an encoder with a masked-LM head, such as BERT",
    "causal-lm": "it needs a decoder such as GPT-2 or a Llama-style model",
    "seq2seq": "it needs an encoder-decoder such as T5, BART or Marian",
}
"""What a head needs, for the message refusing a model it does not fit (the sequence
heads share the text-classification line)."""


def load_auto_model(auto_class: str, task: Task, cfg: RunConfig, path: Path, hint: str,
                    **kwargs) -> torch.nn.Module:
    """`transformers.<auto_class>.from_pretrained`, with misfits and load errors explained."""
    import transformers
    from safetensors import SafetensorError

    from engine.modeling.loading import MASTER_DTYPE, _first_line, quiet_transformers

    quiet_transformers()
    cls = getattr(transformers, auto_class)
    try:
        if building_on_meta():
            config = transformers.AutoConfig.from_pretrained(
                path, trust_remote_code=cfg.model.trust_remote_code,
                **{k: v for k, v in kwargs.items() if k != "ignore_mismatched_sizes"})
            return cls.from_config(config, trust_remote_code=cfg.model.trust_remote_code,
                                   dtype=MASTER_DTYPE)
        from engine.modeling.loading import check_weights

        check_weights(path, cfg.model.id)
        return cls.from_pretrained(
            path, trust_remote_code=cfg.model.trust_remote_code,
            use_safetensors=not cfg.model.allow_pickle or None, dtype=MASTER_DTYPE, **kwargs,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            kind = model_config(path).get("model_type", "unknown")
            raise ModelError(
                f"head.task {task.name} does not fit {cfg.model.id} ({kind}); {hint}"
            ) from None
        raise ModelError(f"Cannot load model {cfg.model.id}: {_first_line(exc)}") from None
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"Cannot load model {cfg.model.id}: {_first_line(exc)}") from None


class FieldCollator:
    """Pads every list field of a `FieldExamples` batch to the batch's longest (dynamic
    padding).

    `pads` gives the fill value per field (labels get -100, which the losses
    ignore); scalar fields become a 1-d tensor. An attention mask follows
    `input_ids`.
    """

    def __init__(self, examples: FieldExamples, pads: dict[str, int]) -> None:
        self.examples = examples
        self.pads = pads

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = {}
        for key in self.examples.fields:
            values = [self.examples.fields[key][i] for i in indices]
            if isinstance(values[0], list):
                width = max(len(v) for v in values)
                out = torch.full((len(values), width), self.pads.get(key, 0), dtype=torch.long)
                for row, v in enumerate(values):
                    out[row, : len(v)] = torch.tensor(v, dtype=torch.long)
                batch[key] = out
                if key == "input_ids":
                    mask = torch.zeros((len(values), width), dtype=torch.long)
                    for row, v in enumerate(values):
                        mask[row, : len(v)] = 1
                    batch["attention_mask"] = mask
            else:
                batch[key] = torch.tensor(values)
        return batch


@torch.no_grad()
def evaluate_batches(model, examples: Examples, collate: Callable, batch_size: int, device,
                     digest: Callable | None = None) -> tuple[float, list]:
    """The example-weighted mean loss over a split, in length-sorted batches, and
    `digest(indices, batch, output)` of every batch in that order: what the task keeps
    of a batch, small (predictions, per-example scores), never the full logits. In a
    data-parallel run each rank evaluates its share of the batches and every rank gets
    the same result (engine.tasks.eval_shards)."""
    from engine.data.loading import sorted_batches
    from engine.tasks.eval_shards import gather, my_share

    was_training = model.training
    model.eval()
    pieces = {}
    for k, indices in my_share(sorted_batches(examples.lengths, batch_size)):
        batch = {key: v.to(device, non_blocking=True) for key, v in collate(indices).items()}
        out = model(**batch)
        pieces[k] = (out[0].double() * len(indices),
                     digest(indices, batch, out) if digest is not None else None)
    model.train(was_training)
    found = gather(pieces)
    # fsum rounds once, whatever the order: the same mean on one rank or several.
    total = math.fsum(torch.stack([loss for loss, _ in found]).tolist()) if found else 0.0
    return total / max(1, len(examples)), [piece for _, piece in found]
