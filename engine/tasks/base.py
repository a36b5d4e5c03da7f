"""The interface every task adapter implements, and the pieces they share.

A `Task` covers a run's whole life: reading its data, building, batching, evaluating and
saving its model, then using the trained run (loading it for prediction, one input or a
whole file, re-reading its validation examples for review, exporting it). Torch-free at
import (torch is imported where a step runs), so a registration's adapter can be asked
what it is before any model loads."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.core.config import MINIMISED_METRICS, RunConfig
from engine.core.errors import DataError, ModelError
from engine.modeling.heads import is_vision_config

if TYPE_CHECKING:
    import torch

    from engine.tasks.predictions import ExampleInput, FilePredictions, Prediction


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

    watch: str
    """The main validation metric: what early stopping and 'best' follow by default (its
    registration's `metric`, given by `engine.tasks.task_for`; the TUI reads it there
    without loading the adapter)."""
    metrics: tuple[str, ...] | None = None
    """Every metric `evaluate` reports, so a watched metric is checked before the run
    starts (None: not known in advance)."""
    vision = False
    trains = True
    """False: the run computes its output once instead (an embedding run's vectors)."""
    length_keys: tuple[str, ...] = ("data.max_length",)
    """The token lengths a run clamps to the model's positions before it starts."""

    def __init__(self, name: str, watch: str = "accuracy") -> None:
        self.name = name
        self.watch = watch

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

    def check_data(self, cfg: RunConfig) -> list[str]:
        """Every check `load_data` makes of local data files, without a tokenizer or a
        model; returns its warnings (where its registration is `prechecked`)."""
        return []

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

    # -- using a trained run (engine/trained/) ---------------------------------

    auto_class: str | None = None
    """The transformers Auto class its saved model loads with (None: hubtune's own model,
    which `load_trained` builds)."""
    pipeline_tag: str | None = None
    """The hub pipeline tag of an exported model (its model card's front matter)."""
    input_kind = "text"
    """What one input is, for the message refusing an empty one."""
    reviewed = True
    """Whether its evaluations record per-example results that review joins to inputs."""

    def load_trained(self, predictor) -> None:
        """Put a saved model (and its tokenizer or transforms) on `predictor`."""
        import transformers

        from engine.modeling.loading import MASTER_DTYPE

        predictor.model = getattr(transformers, self.auto_class).from_pretrained(
            predictor.dir, dtype=MASTER_DTYPE)
        predictor.tokenizer = transformers.AutoTokenizer.from_pretrained(predictor.dir)

    def predict(self, predictor, inputs: list[str]) -> list[Prediction]:
        """One prediction per non-empty input, in order (called under no_grad and the
        predictor's autocast)."""
        raise NotImplementedError

    def predict_file(self, predictor, cfg: RunConfig, path: Path, column: str | None,
                     batch_size: int, progress) -> FilePredictions:
        """Every row of a file predicted as training read its data, with the run's main
        metric when the file carries labels."""
        raise DataError(f"Batch prediction over a file is not available for head.task "
                        f"{self.name}; `hubtune predict ID INPUT...` predicts single inputs.")

    def review_inputs(self, cfg: RunConfig) -> list[ExampleInput]:
        """Every validation example of a run in the order its evaluations saw them."""
        from engine.core.config import is_hub_data

        if is_hub_data(cfg.data.train):
            return self.hub_review_inputs(cfg)
        return self.file_review_inputs(cfg)

    def file_review_inputs(self, cfg: RunConfig) -> list[ExampleInput]:
        raise NotImplementedError

    def hub_review_inputs(self, cfg: RunConfig) -> list[ExampleInput]:
        from engine.core.errors import HubtuneError

        raise HubtuneError(f"Per-example review of a head.task {self.name} run trained on "
                           "hub data (hf:) is not available yet; it covers the sequence heads "
                           "(classification, pairs, multi-label, regression) on hub data, and "
                           "every head on files.")

    def export(self, model_dir: Path, target: Path, head: dict, config: dict) -> str | None:
        """Write a form of a saved model into `target` that loads without hubtune and return
        its loader's name; None: the saved files are copied as they are."""
        return None

    @property
    def loader(self) -> str:
        """What loads a saved model copied as it is."""
        return self.auto_class or "engine.trained.predict.Predictor"


def refuse_folder(path: Path) -> None:
    """A file to predict must exist and be a data file, not a folder."""
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a data file.")


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
    from engine.tasks.fit import heads_from_config, misfit_hint

    # The heads the new-run form offers: a head outside them fails at the first batch
    # (T5's bare model wants decoder inputs) or trains nonsense (BERT as a causal LM
    # sees the tokens it should predict).
    heads = heads_from_config(config)
    if heads is not None and task.name not in heads:
        hint = misfit_hint(task.name)
        fits = f"; heads that fit it: {', '.join(heads)}" if heads else ""
        raise ModelError(f"head.task {task.name} does not fit {cfg.model.id} ({kind}); "
                         f"{hint}{fits}.")


def load_auto_model(auto_class: str, task: Task, cfg: RunConfig, path: Path, hint: str,
                    **kwargs) -> torch.nn.Module:
    """`transformers.<auto_class>.from_pretrained`, with misfits and load errors explained."""
    import transformers
    from safetensors import SafetensorError

    from engine.modeling.loading import (
        MASTER_DTYPE,
        _first_line,
        building_on_meta,
        quiet_transformers,
    )

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
        import torch

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


def evaluate_batches(model, examples: Examples, collate: Callable, batch_size: int, device,
                     digest: Callable | None = None) -> tuple[float, list]:
    """The example-weighted mean loss over a split, in length-sorted batches, and
    `digest(indices, batch, output)` of every batch in that order: what the task keeps
    of a batch, small (predictions, per-example scores), never the full logits. In a
    data-parallel run each rank evaluates its share of the batches and every rank gets
    the same result (engine.tasks.eval_shards)."""
    import torch

    from engine.data.loading import sorted_batches
    from engine.tasks.eval_shards import gather, my_share

    was_training = model.training
    model.eval()
    pieces = {}
    with torch.no_grad():
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
