"""Image classification: Hugging Face vision models and torchvision backbones.

Data is a folder with one sub-folder per class, or a table of image path
and label. Every file is opened once up front: a corrupt or non-image file
fails the load with its path, or, with `data.bad_files: skip`, is left out
and counted. Images go through torchvision v2 transforms with the model's
own size and normalisation (optional random crops and flips for training).

torchvision backbones (`torchvision:resnet18`) keep their architecture and
have the final linear layer replaced; their pretrained weights come through
huggingface_hub (never torch.hub) from `model.weights`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.core.config import RunConfig
from engine.core.errors import DataError, ModelError
from engine.hub.client import TORCHVISION_WEIGHTS
from engine.tasks.base import Task, TaskData, evaluate_batches, load_auto_model, write_head_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PROBE_SIZE_LIMIT = 1024
"""Largest data.image_size checked by a trial forward pass before training."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageExamples:
    """One split's image files and class indices; `ImageCollator` decodes them per batch."""

    def __init__(self, paths: list[Path], labels: list[int]) -> None:
        self.paths, self.labels = paths, labels
        self.lengths = [1] * len(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, i: int):
        """Example `i`'s image, opened (a context manager, as `PIL.Image.open` returns)."""
        from PIL import Image

        return Image.open(self.paths[i])


def scan_images(root: Path) -> tuple[list[Path], list[str]]:
    """(paths, class names) of a folder-per-class tree; files are checked later."""
    if not root.is_dir():
        raise DataError(f"The image folder {root} does not exist; check data.train.")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class sub-folders; put each class's images in a "
                        "folder named after it (or give a CSV of path,label).")
    paths, labels, empty = [], [], []
    for name in classes:
        found = [f for f in sorted((root / name).rglob("*"))
                 if f.is_file() and not f.name.startswith(".")]
        if not found:
            empty.append(name)
        paths += found
        labels += [name] * len(found)
    if len(empty) == len(classes):
        raise DataError(f"{root} has class folders ({_listed(classes)}) but no files in them; "
                        "put each class's images in its folder.")
    if empty and len(classes) - len(empty) < 2:
        raise DataError(f"{root} has images only in {_listed(sorted(set(labels)))} "
                        f"({_listed(empty)} {'is' if len(empty) == 1 else 'are'} empty); "
                        "image classification needs images of at least two classes.")
    return paths, labels


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_images(paths: list[Path], labels: list[str], policy: str) -> tuple[list, list, int]:
    """Open every image once; a bad one fails the load or, with skip, is left out."""
    from PIL import Image, UnidentifiedImageError

    good_paths, good_labels, skipped = [], [], 0
    for path, label in zip(paths, labels, strict=True):
        try:
            with Image.open(path) as img:
                img.verify()
        except FileNotFoundError:
            problem = "does not exist"
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            problem = ("is a corrupt image" if path.suffix.lower() in IMAGE_SUFFIXES
                       else "is not an image")
        else:
            good_paths.append(path)
            good_labels.append(label)
            continue
        if policy == "fail":
            raise DataError(f"{path} {problem}; remove it, or set data.bad_files: skip to leave "
                            "such files out.")
        skipped += 1
    return good_paths, good_labels, skipped


def read_images(cfg: RunConfig, target: str, role: str, warnings: list[str] | None = None):
    """A table of path and label for a folder or a CSV of paths.

    A CSV's rows without a label are left out, reported in `warnings`, as for text. The
    table is `FileRows` (engine/data/file_rows.py): a file of paths is read through
    `datasets` into Arrow as every head's data is.
    """
    from engine.data.file_rows import FileRows, read_rows
    from engine.data.loading import drop_missing_labels, label_text, pick_column

    source = cfg.resolve(target)
    if source.is_dir():
        paths, labels = scan_images(source)
        empty = sorted(p.name for p in source.iterdir() if p.is_dir()
                       and not p.name.startswith(".") and p.name not in set(labels))
        if empty and warnings is not None:
            warnings.append(f"Class folder{'s' if len(empty) != 1 else ''} {_listed(empty)} of "
                            f"{source} {'are' if len(empty) != 1 else 'is'} empty; "
                            f"{'those classes are' if len(empty) != 1 else 'that class is'} "
                            "left out.")
        return FileRows({"path": paths, "label": labels})
    frame = read_rows(source, encoding=cfg.data.encoding, role=role)
    path_col = pick_column(frame, source, cfg.data.text_column, "text_column",
                           ("path", "image", "file", "filename"))
    label_col = pick_column(frame, source, cfg.data.label_column, "label_column", ("class",))
    frame = drop_missing_labels(frame, source, label_col, [] if warnings is None else warnings)
    base = source.parent
    return FileRows({
        "path": [p if (p := Path(str(v))).is_absolute() else base / p for v in frame[path_col]],
        "label": [label_text(v) for v in frame[label_col]],
    })


def image_splits(cfg: RunConfig, warnings: list[str]):
    """(training table, validation table, unreadable files left out): path and label
    columns, read, checked and split (seeded) as training reads them."""
    from engine.data.file_rows import FileRows
    from engine.data.loading import _split

    spec = cfg.data
    skipped = 0

    def checked(frame):
        nonlocal skipped
        paths, labels, bad = check_images(list(frame["path"]), list(frame["label"]),
                                          spec.bad_files)
        skipped += bad
        return FileRows({"path": paths, "label": labels})

    train = read_images(cfg, spec.train, "training", warnings)
    if spec.limit is not None and len(train) > spec.limit:
        train = train.sample(n=spec.limit, random_state=cfg.train.seed)
    train = checked(train)  # before the split, so it divides the usable images
    if spec.validation:
        val = checked(read_images(cfg, spec.validation, "validation", warnings))
    else:
        if spec.validation_split <= 0:
            raise DataError("Give data.validation or a data.validation_split above 0.")
        train, val = _split(train, "label", spec.validation_split, cfg.train.seed, False)
    return train, val, skipped


def image_table(path: Path, cfg, column: str | None):
    """(table with a `path` column and maybe `label`) of an image folder with one folder
    per class, a folder of images, or a CSV/TSV/JSONL/Parquet of paths (relative to it)."""
    import pandas as pd

    from engine.data.file_rows import read_rows
    from engine.data.loading import label_text, pick_column

    if path.is_dir():
        if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
            paths, labels = scan_images(path)
            return pd.DataFrame({"path": [str(p) for p in paths], "label": labels}), "label"
        paths = sorted(str(p) for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        return pd.DataFrame({"path": paths}), None
    table = read_rows(path, encoding=cfg.data.encoding, role="data").frame()
    path_col = pick_column(table, path, column or cfg.data.text_column, "--column",
                           ("path", "image", "file", "filename"))
    table = table.assign(**{path_col: [str(p if (p := Path(str(v))).is_absolute()
                                           else path.parent / p) for v in table[path_col]]})
    label_col = next((c for c in (cfg.data.label_column, "label", "class")
                      if c in table.columns and c != path_col), None)
    if label_col is not None:
        # A blank in a column of whole numbers is pandas' NA, whose truth is an error.
        table[label_col] = [None if v is None or v is pd.NA or v != v else label_text(v)
                            for v in table[label_col]]
    return table.rename(columns={path_col: "path"}), label_col


def image_transforms(size: int, mean, std, *, augment: bool):
    from torchvision.transforms import v2

    steps = [v2.ToImage()]
    if augment:
        steps += [v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
                  v2.RandomHorizontalFlip()]
    else:
        steps += [v2.Resize((size, size), antialias=True)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class ImageCollator:
    """Decodes and transforms a batch of `ImageExamples` (or `HubImageExamples`), in a
    data worker process when the run has them.

    A random augmentation is seeded per (run seed, epoch, example), not drawn from the
    process's running random state: the same image gets the same crop in whichever
    process decodes it and in a resumed run, and the training process's own random
    stream (dropout) is left alone."""

    def __init__(self, examples: ImageExamples, transform, seed: int | None = None) -> None:
        self.examples, self.transform = examples, transform
        self.seed = seed
        """None: a deterministic transform (evaluation, no augmentation)."""
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        pixels = []
        for i in indices:
            with self.examples.open(i) as img:
                rgb = img.convert("RGB")
            if self.seed is None:
                pixels.append(self.transform(rgb))
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + i)
                                  % (1 << 63))
                pixels.append(self.transform(rgb))
        return {"pixel_values": torch.stack(pixels),
                "labels": torch.tensor([self.examples.labels[i] for i in indices])}


class TorchvisionClassifier(nn.Module):
    """A torchvision classification network whose last linear layer is replaced."""

    def __init__(self, arch: str, num_labels: int) -> None:
        super().__init__()
        from torchvision.models import get_model

        self.arch = arch
        self.weights_file: Path | None = None
        """The .safetensors file its pretrained weights were read from (None: random)."""
        self.backbone = get_model(arch, weights=None)
        parent, name, last = _final_linear(self.backbone)
        setattr(parent, name, nn.Identity())
        self.head = nn.Linear(last.in_features, num_labels)

    def forward(self, pixel_values, labels=None):
        logits = self.head(self.backbone(pixel_values))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return loss, logits


def _final_linear(model: nn.Module):
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ModelError(f"{type(model).__name__} has no final linear layer to replace.")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, child, getattr(parent, child)


def torchvision_weights(cfg: RunConfig, arch: str) -> Path | None:
    """The .safetensors file of a torchvision architecture's pretrained weights (fetched
    through huggingface_hub when model.weights names a hub repo), or None for a random
    start."""
    ref = cfg.model.weights or TORCHVISION_WEIGHTS.get(arch)
    if ref == "none":
        return None
    if ref is None:
        raise ModelError(
            f"torchvision:{arch} has no default pretrained weights; set model.weights to a hub "
            "repo, folder or .safetensors file holding its state dict (or 'none' to start "
            "from random weights)."
        )
    local = Path(ref).expanduser()
    if local.is_dir():
        files = sorted(local.glob("*.safetensors"))
        if not files:
            raise ModelError(f"model.weights {ref} holds no .safetensors file.")
        local = files[0]
    if not local.is_file():
        from huggingface_hub import hf_hub_download

        from engine.hub.client import hub_errors
        from engine.hub.names import check_revision

        check_revision(cfg.model.revision)  # it names a file under the cache's refs/
        with hub_errors(ref, cfg.model.revision):
            local = Path(hf_hub_download(ref, "model.safetensors", revision=cfg.model.revision))
    from engine.modeling.loading import safetensors_problem

    problem = safetensors_problem(local)
    if problem is not None:
        raise ModelError(f"model.weights {local} is damaged ({problem}); give a whole "
                         ".safetensors file of the architecture's state dict.")
    return local


def check_image_size(model: nn.Module, cfg: RunConfig) -> None:
    """One blank image of data.image_size through the model, so a size it cannot take
    (a ViT's patch grid is fixed) is a ConfigError now, not an error at the first step."""
    size = cfg.data.image_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(pixel_values=torch.zeros(1, 3, size, size))
    except (ValueError, RuntimeError, AssertionError) as exc:
        from engine.core.errors import ConfigError
        from engine.modeling.loading import _first_line

        raise ConfigError(f"data.image_size {size} does not fit {cfg.model.id} "
                          f"({_first_line(exc)}); leave data.image_size unset to use the "
                          "model's own size.") from None
    finally:
        model.train(was_training)


class ImageTask(Task):
    vision = True
    metrics = ("loss", "accuracy", "macro_f1")
    auto_class = "AutoModelForImageClassification"
    pipeline_tag = "image-classification"
    input_kind = "the path of an image"

    # -- using a trained run ------------------------------------------------------

    def load_trained(self, predictor) -> None:
        """A torchvision backbone from model.safetensors, else transformers' model."""
        image = predictor.head["image"]
        predictor.transform = image_transforms(image["size"], image["mean"], image["std"],
                                               augment=False)
        if predictor.head.get("arch"):
            from safetensors.torch import load_model

            predictor.model = TorchvisionClassifier(predictor.head["arch"], len(predictor.labels))
            load_model(predictor.model, str(predictor.dir / "model.safetensors"))
        else:
            from transformers import AutoModelForImageClassification

            from engine.modeling.loading import MASTER_DTYPE

            predictor.model = AutoModelForImageClassification.from_pretrained(
                predictor.dir, dtype=MASTER_DTYPE)

    def predict(self, predictor, inputs):
        from engine.tasks.image_use import classify_image

        return [classify_image(predictor, path) for path in inputs]

    def predict_file(self, predictor, cfg: RunConfig, path: Path, column, batch_size: int,
                     progress):
        from engine.tasks.image_use import predict_images

        if not path.exists():
            raise DataError(f"{path} does not exist.")
        table, label_col = image_table(path, cfg, column)
        return predict_images(predictor, table, label_col, batch_size, progress)

    def file_review_inputs(self, cfg: RunConfig):
        """The validation images (their paths) and classes, in the order the run saw them."""
        from engine.tasks.predictions import ExampleInput

        _, val, _ = image_splits(cfg, [])
        return [ExampleInput(str(p), None, str(label))
                for p, label in zip(val["path"], val["label"], strict=True)]

    def export(self, model_dir: Path, target: Path, head: dict, config: dict) -> str | None:
        from engine.modeling.export import portable_torchvision

        return portable_torchvision(model_dir, target, head)

    # -- training -----------------------------------------------------------------

    def load_processor(self, cfg: RunConfig):
        """(mean, std, size), and the model folder (None for torchvision)."""
        ref = cfg.model.id
        if ref.startswith("torchvision:"):
            from engine.hub.client import HubError, backbone_arch

            try:
                arch = backbone_arch(ref)
            except HubError as exc:  # a model choice, reported as one
                raise ModelError(str(exc)) from None
            return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                    "size": cfg.data.image_size or 224, "arch": arch}, None
        from engine.modeling.loading import check_loadable, resolve_model_path
        from engine.tasks.base import check_fits

        path = resolve_model_path(cfg.model)
        check_loadable(path, cfg.model)
        check_fits(self, cfg, path)
        from transformers import AutoImageProcessor

        try:
            proc = AutoImageProcessor.from_pretrained(path)
        except (OSError, ValueError):
            proc = None
        size = cfg.data.image_size
        if size is None:
            raw = getattr(proc, "size", None) or {}
            size = raw.get("height") or raw.get("shortest_edge") or 224
        return {"mean": tuple(getattr(proc, "image_mean", None) or IMAGENET_MEAN),
                "std": tuple(getattr(proc, "image_std", None) or IMAGENET_STD),
                "size": int(size), "arch": None, "processor": proc}, path

    def load_data(self, cfg: RunConfig, processor) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import _natural

        if is_hub_data(cfg.data.train):
            from engine.tasks.hub_images import load_hub_images

            return load_hub_images(cfg)
        spec = cfg.data
        warnings: list[str] = []
        train, val, skipped = image_splits(cfg, warnings)
        splits = [(list(f["path"]), list(f["label"])) for f in (train, val)]
        names = tuple(sorted(set(splits[0][1]), key=_natural))
        if len(names) < 2:
            raise DataError(f"{spec.train} has only one class ({', '.join(names)}); image "
                            "classification needs at least two.")
        index = {n: i for i, n in enumerate(names)}
        unseen = sorted(set(splits[1][1]) - set(index))
        if unseen:
            raise DataError(f"Validation classes {', '.join(unseen)} never appear in the "
                            f"training data ({', '.join(names)}).")
        train_ex = ImageExamples(splits[0][0], [index[x] for x in splits[0][1]])
        val_ex = ImageExamples(splits[1][0], [index[x] for x in splits[1][1]])
        counts = torch.bincount(torch.tensor(train_ex.labels), minlength=len(names))
        return TaskData(train_ex, val_ex, names, int(counts.argmax()),
                        extra={"skipped_files": skipped}, warnings=tuple(warnings))

    def build(self, cfg: RunConfig, path: Path | None, data: TaskData):
        model = self._build(cfg, path, data)
        from engine.modeling.loading import building_on_meta

        # Above PROBE_SIZE_LIMIT the probe itself would cost seconds and gigabytes.
        if (cfg.data.image_size is not None and cfg.data.image_size <= PROBE_SIZE_LIMIT
                and not building_on_meta()):
            check_image_size(model, cfg)
        return model

    def _build(self, cfg: RunConfig, path: Path | None, data: TaskData):
        labels = list(data.labels)
        if path is None:
            arch = cfg.model.id.removeprefix("torchvision:")
            from engine.modeling.loading import building_on_meta

            model = TorchvisionClassifier(arch, len(labels))
            model.weights_file = None if building_on_meta() else torchvision_weights(cfg, arch)
            if model.weights_file is not None:
                from safetensors.torch import load_file

                state = load_file(str(model.weights_file))
                state = {k: v for k, v in state.items()
                         if k in model.backbone.state_dict()
                         and v.shape == model.backbone.state_dict()[k].shape}
                missing = model.backbone.load_state_dict(state, strict=False).missing_keys
                if missing:
                    raise ModelError(f"model.weights do not fit {arch}: {len(missing)} tensors "
                                     f"are missing, e.g. {missing[0]}.")
            return model
        return load_auto_model(
            "AutoModelForImageClassification", self, cfg, path,
            "it needs a vision backbone such as ViT, ResNet or ConvNeXT.",
            num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)}, ignore_mismatched_sizes=True,
        )

    def collator(self, examples, processor, cfg: RunConfig, *, train: bool):
        augment = train and cfg.data.augment
        transform = image_transforms(processor["size"], processor["mean"], processor["std"],
                                     augment=augment)
        return ImageCollator(examples, transform, cfg.train.seed if augment else None)

    def evaluate(self, model, data: TaskData, processor, cfg: RunConfig, device) -> dict:
        from engine.tasks.evaluate import fold_label_pieces, label_piece

        collate = self.collator(data.validation, processor, cfg, train=False)
        loss, pieces = evaluate_batches(
            model, data.validation, collate, cfg.train.batch_size * 2, device,
            lambda indices, batch, out: label_piece("single_label", indices, out[1],
                                                    out[1].argmax(-1), batch["labels"]))
        metrics, collector = fold_label_pieces(pieces, "single_label", loss, len(data.labels))
        metrics["examples"] = collector.results()
        return metrics

    def baseline(self, data: TaskData) -> dict:
        from engine.tasks.evaluate import majority_baseline

        return majority_baseline(data.validation, data.majority_class, len(data.labels))

    def pad_id(self, processor) -> int:
        return 0

    def save(self, model, processor, data: TaskData, cfg: RunConfig, target: Path) -> Path:
        target = Path(target)
        if isinstance(model, TorchvisionClassifier):
            from safetensors.torch import save_model

            target.mkdir(parents=True, exist_ok=True)
            save_model(model, str(target / "model.safetensors"))
            write_head_file(target, self.name, data.labels, cfg, arch=model.arch,
                            image={k: processor[k] for k in ("mean", "std", "size")})
            return target
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target, safe_serialization=True)
        if processor.get("processor") is not None:
            processor["processor"].save_pretrained(target)
        write_head_file(target, self.name, data.labels, cfg,
                        image={k: processor[k] for k in ("mean", "std", "size")})
        return target
