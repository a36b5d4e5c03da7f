"""Weight soups: the weights of several runs of one model and head averaged into one model.

Runs fine-tuned from the same base model with different settings (a sweep's) often sit
in one basin, where their average predicts as well as the best of them or better
(Wortsman et al., 2022). A uniform soup averages them all; a greedy soup goes from the
best run down and keeps a run only when adding it improves the validation accuracy.

Every `*.safetensors` file the ingredients' model folders share is averaged tensor by
tensor (a LoRA run's adapter file as much as a full model's weights); everything else
(config, head file, tokenizer) is the best ingredient's. The soup is scored on the
validation examples the runs were scored on (the task adapter's `review_inputs`), so
its accuracy stands beside theirs. Reads run folders and configs, never the store: the
caller records the soup as a run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.errors import HubtuneError

MAX_INGREDIENTS = 32


@dataclass(frozen=True)
class Ingredient:
    run_id: int
    model_dir: Path
    config: dict


@dataclass(frozen=True)
class Soup:
    folder: Path
    members: tuple[int, ...]
    """The runs averaged, best first."""
    accuracy: float
    tried: dict[int, float]
    """Run id -> the validation accuracy of that run alone (on the same examples)."""
    method: str


def check_ingredients(items: list[Ingredient]) -> None:
    """Runs of one base model and one head, each with its trained model: else a sentence
    saying which run differs."""
    if len(items) < 2:
        raise HubtuneError("A soup needs two or more completed runs of one model and head.")
    if len(items) > MAX_INGREDIENTS:
        raise HubtuneError(f"A soup takes at most {MAX_INGREDIENTS} runs; use --top K.")
    for item in items:
        if not (item.model_dir / "hubtune_head.json").is_file():
            raise HubtuneError(f"Run {item.run_id} has no trained model (only completed runs "
                               "can go into a soup).")
    first = items[0]
    head = _head(first)
    for item in items:
        if item.config.get("model", {}).get("id") != first.config.get("model", {}).get("id"):
            raise HubtuneError(f"Run {item.run_id} fine-tuned another model than run "
                               f"{first.run_id}; a soup averages runs of one base model.")
        theirs = _head(item)
        if (theirs.get("task"), theirs.get("labels")) != (head.get("task"),
                                                          head.get("labels")):
            raise HubtuneError(f"Run {item.run_id} has another head (task or labels) than "
                               f"run {first.run_id}; a soup averages runs of one head.")
        if sorted(_weight_files(item)) != sorted(_weight_files(first)):
            raise HubtuneError(f"Run {item.run_id}'s model files differ from run "
                               f"{first.run_id}'s (LoRA and full fine-tuning do not mix).")
        _check_shapes(first, item)


def _check_shapes(first: Ingredient, item: Ingredient) -> None:
    """The same weights in the same shapes (read from the files' headers): a sweep over a
    size such as head.custom.hidden makes runs that cannot be averaged."""
    from safetensors import safe_open

    def shapes(i: Ingredient) -> dict[str, list[int]]:
        found = {}
        for name in sorted(_weight_files(i)):
            with safe_open(str(i.model_dir / name), framework="pt") as f:
                found.update({k: list(f.get_slice(k).get_shape()) for k in f.keys()})
        return found

    mine, theirs = shapes(first), shapes(item)
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        key = differ[0]
        raise HubtuneError(
            f"Run {item.run_id}'s weights are shaped unlike run {first.run_id}'s ({key}: "
            f"{theirs.get(key, 'missing')} against {mine.get(key, 'missing')}); a soup "
            "averages runs of one architecture, so leave out runs whose sizes (such as "
            "head.custom.hidden) differ.")


def make_soup(items: list[Ingredient], target: Path, *, greedy: bool = False,
              progress=None) -> Soup:
    """Average `items` (best first when `greedy`) into `target`; returns what was kept
    and how each scored. `progress(message)` hears each step."""
    check_ingredients(items)
    score = _scorer(items[0])
    tried = {}
    for item in items:
        tried[item.run_id] = score(item.model_dir)
        if progress:
            progress(f"run {item.run_id} alone: accuracy {tried[item.run_id]:.4f}")
    ranked = sorted(items, key=lambda i: -tried[i.run_id])
    shutil.copytree(ranked[0].model_dir, target)
    if not greedy:
        _average(ranked, target)
        return Soup(target, tuple(i.run_id for i in ranked), score(target), tried, "uniform")
    members, best = [ranked[0]], tried[ranked[0].run_id]
    for candidate in ranked[1:]:
        _average([*members, candidate], target)
        accuracy = score(target)
        if progress:
            progress(f"with run {candidate.run_id}: accuracy {accuracy:.4f}")
        if accuracy > best:
            members, best = [*members, candidate], accuracy
    _average(members, target)
    return Soup(target, tuple(i.run_id for i in members), best, tried, "greedy")


def _head(item: Ingredient) -> dict:
    return json.loads((item.model_dir / "hubtune_head.json").read_text(encoding="utf-8"))


def _weight_files(item: Ingredient) -> list[str]:
    return [p.name for p in item.model_dir.glob("*.safetensors")]


def _average(items: list[Ingredient], target: Path) -> None:
    """Each shared weights file of `target` replaced by the mean of `items`' (floating
    tensors; others as the first item has them)."""
    from safetensors.torch import load_file, save_file

    for name in _weight_files(items[0]):
        tensors = [load_file(str(i.model_dir / name)) for i in items]
        mean = {}
        for key, first in tensors[0].items():
            if first.is_floating_point():
                total = sum(t[key].double() for t in tensors)
                mean[key] = (total / len(tensors)).to(first.dtype).contiguous()
            else:
                mean[key] = first.contiguous()
        save_file(mean, str(target / name), metadata={"format": "pt"})


def _scorer(item: Ingredient):
    """The validation accuracy of a model folder, on the examples the runs were scored
    on; refused for heads other than single-label classification."""
    from engine.tasks import task_for
    from engine.trained.predict import Predictor

    cfg = RunConfig.from_dict(item.config)
    adapter = task_for(cfg.head.task)
    if getattr(adapter, "label_kind", None) != "single_label":
        raise HubtuneError(f"Soups are made of single-label classification runs for now; "
                           f"runs of head.task {cfg.head.task} are not averaged.")
    examples = adapter.review_inputs(cfg)
    if not examples:
        raise HubtuneError("The runs' validation data has no examples to score a soup on.")
    texts = [e.text.split(" ||| ", 1) for e in examples]
    paired = all(len(t) == 2 for t in texts)

    def score(folder: Path) -> float:
        predictor = Predictor(folder)
        outputs = predictor.score_batches(
            [t[0] for t in texts], [t[1] for t in texts] if paired else None,
            max_length=cfg.data.max_length)
        predicted, _ = predictor.readable(outputs)
        return sum(p == e.label for p, e in zip(predicted, examples, strict=True)) / len(examples)

    return score
