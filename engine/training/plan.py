"""The pre-launch plan: what trains, what is frozen, and how much memory it needs.

The model is built on the meta device (no weights read) and fed one batch shaped
as the run's longest: the task's own collator pads the longest examples read,
and the batch dimension is widened to train.batch_size. Memory is counted from
that forward pass for every stage of the schedule (`engine.training.memory`).

The plan also carries notices: what the run will change or leave out, found
by the same checks the run makes (a max_length clamped to the model's
positions, rows without a label, look-alike labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.modeling.freeze import FreezePlan
from engine.training.compat import config_attention
from engine.training.memory import MemoryEstimate, estimate_memory

__all__ = ["MemoryEstimate", "Plan", "StagePlan", "estimate_memory", "make_plan"]


@dataclass(frozen=True)
class StagePlan:
    stage: int
    starts: str
    """When the stage begins: 'start', 'epoch 2', 'step 300'."""
    trainable: int
    memory: MemoryEstimate


@dataclass(frozen=True)
class Plan:
    """Everything `hubtune plan` and the new-run screen show before launch."""

    model_id: str
    task: str
    freeze: FreezePlan
    sizes: dict[str, int]
    stages: tuple[StagePlan, ...]
    precision: str
    labels: tuple[str, ...]
    notes: tuple[str, ...]
    rates: dict[str, float]
    """Peak learning rate of each group (head rate, layer decay and per-group rates applied)."""
    max_length: int | None = None
    """The token length the run uses: data.max_length clamped to the model's positions."""
    notices: tuple[str, ...] = ()
    """Warnings the run will also report: clamped lengths, label problems in the data."""
    length_notice: str | None = None
    """The clamp of data.max_length, if any (the new-run form shows it by that field)."""
    batch_shapes: dict[str, tuple[int, ...]] | None = None
    """The shape of each tensor of the batch the memory was counted with."""
    attention: str | None = None
    """The attention implementation the model runs (sdpa, eager, flash_attention_2...)."""
    device: str = "cpu"
    """cpu or cuda: where the run will train (the CUDA context counts on a GPU)."""
    processes: int = 1
    """Data-parallel processes the memory is planned for (per process)."""

    @property
    def batch_text(self) -> str:
        """The planned batch in words: '32 x 128 tokens', '16 x 224x224 images'."""
        return describe_batch(self.batch_shapes or {}, self.max_length)

    def group_table(self, stage: int = 0) -> list[dict]:
        trainable = self.freeze.schedule[stage]
        rows = []
        for g in self.freeze.groups:
            t = sum(self.sizes[p] for p in g.params if p in trainable)
            rows.append({"name": g.name, "params": g.count, "trainable": t,
                         "frozen": g.count - t, "learning_rate": self.rates.get(g.name)})
        return rows


PLAN_SAMPLE_ROWS = 5000
"""Rows read to find the label set for a plan; the head's width is all it decides."""
LONGEST_EXAMPLES = 8
"""Examples the planning batch is padded from: the longest read (then widened)."""


def describe_batch(shapes: dict[str, tuple[int, ...]], max_length: int | None = None) -> str:
    if "pixel_values" in shapes:
        b, *_, h, w = shapes["pixel_values"]
        return f"{b} x {h}x{w} images"
    if "features" in shapes:
        return f"{shapes['features'][0]} cached features"
    if "input_ids" in shapes:
        b, s = shapes["input_ids"][:2]
        target = shapes.get("labels", ())
        tail = f" -> {target[1]} target" if len(target) == 2 and target[1] != s else ""
        return f"{b} x {s}{tail} tokens"
    return f"{max_length} tokens" if max_length else "?"


def planning_batch(task, cfg, processor, data) -> dict:
    """The run's longest batch as meta tensors: the task's collator pads the longest
    examples read, then the batch dimension becomes train.batch_size."""
    import torch

    lengths = list(data.train.lengths)
    longest = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:LONGEST_EXAMPLES]
    real = task.collator(data.train, processor, cfg, train=True)(longest)
    size = cfg.train.batch_size
    budget = getattr(cfg.train, "max_tokens_per_batch", None)
    if budget and not task.vision:
        # Token-budget batches: the longest bucket's batch has the fewest rows, but its
        # attention and per-token costs make it the largest (the rule of TokenBudgetBatches).
        from engine.training.buckets import bucket_of, length_buckets

        size = max(1, budget // bucket_of(max(lengths), length_buckets(cfg.data.max_length)))
    return {k: torch.empty((size, *v.shape[1:]), dtype=v.dtype, device="meta")
            if torch.is_tensor(v) and v.dim() else v for k, v in real.items()}


def _head_on_features(model, batch: dict, rows: int):
    """The cached-features form of a frozen-backbone run (RunSetup._batches' rule): the
    head alone, fed pooled features, and the bytes the features take on the device."""
    import torch

    from engine.training.activations import meta_answers
    from engine.training.features import HeadOnFeatures

    with torch.no_grad(), meta_answers():
        pooled = model.pool(**{k: v for k, v in batch.items() if k != "labels"})
    feats = {"features": torch.empty((batch["input_ids"].shape[0], pooled.shape[-1]),
                                     device="meta")}
    if "labels" in batch:
        feats["labels"] = batch["labels"]
    return HeadOnFeatures(model), feats, rows * pooled.shape[-1] * 4


def _image_head_on_features(model, batch: dict, rows: int):
    """The cached-features form of an image head-only run (engine.training.image_features):
    the final linear layer alone, fed its inputs, and every image's features' bytes."""
    import torch

    from engine.training.image_features import head_on_final_inputs

    head = head_on_final_inputs(model)
    width = head.head.in_features
    feats = {"features": torch.empty((batch["pixel_values"].shape[0], width), device="meta")}
    if "labels" in batch:
        feats["labels"] = batch["labels"]
    return head, feats, rows * width * 4


def _on_cached_features(model, task, freeze, cfg, batch: dict, rows: int):
    """(the model a step runs, its batch, the features' bytes on the device) when the run
    trains its head on cached frozen-backbone features (RunSetup's rule), else None."""
    if not (cfg.freeze.policy == "head_only" and cfg.freeze.lora is None
            and cfg.train.cache_features):
        return None
    if task.vision:
        from engine.training.image_features import can_cache_image_features

        cacheable = can_cache_image_features(model, cfg, trainable=freeze.trainable)
        return _image_head_on_features(model, batch, rows) if cacheable else None
    return _head_on_features(model, batch, rows) if hasattr(model, "pool") else None


def make_plan(cfg, *, processes: int = 1) -> Plan:
    """Build the model on the meta device (no weights read) and plan every stage."""
    import dataclasses

    import torch

    from engine.modeling.freeze import inject_lora, plan_freeze
    from engine.modeling.loading import on_meta_device
    from engine.tasks import task_for

    task = task_for(cfg.head.task)
    sample = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, limit=min(cfg.data.limit or PLAN_SAMPLE_ROWS, PLAN_SAMPLE_ROWS)))
    processor, path = task.load_processor(sample)
    clamped = ()
    if not task.vision:
        from engine.modeling.lengths import fit_lengths

        # the check the training loop makes
        sample, clamped = fit_lengths(sample, path, task.length_keys)
    data = task.load_data(sample, processor)
    max_length = sample.data.max_length
    with on_meta_device():
        model = task.build(sample, path, data)
        notes = []
        if cfg.freeze.lora is not None:
            targets = inject_lora(model, cfg.freeze.lora)
            notes.append(f"LoRA on {', '.join(targets)}")
    freeze = plan_freeze(model, cfg.freeze)
    precision = cfg.train.precision
    if precision == "auto":  # the rule the training loop applies
        from engine.training.precision import precision_label, resolve_precision

        precision = precision_label(resolve_precision("auto"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = planning_batch(task, sample, processor, data)
    width = batch["input_ids"].shape[1] if torch.is_tensor(batch.get("input_ids")) else None
    if width and max_length and width < max_length:
        notes.append(f"Memory planned at the data's longest batch, {width} tokens: no row of "
                     f"the {len(data.train):,} read reaches data.max_length {max_length}")
    counted_model, features = model, 0
    rows = len(data.train) + len(data.validation)
    cached = _on_cached_features(model, task, freeze, cfg, batch, rows)
    if cached:
        counted_model, batch, features = cached
        notes.append(f"Head trained on cached features of the {rows:,} examples read "
                     f"({_size(features // max(rows, 1))} each, kept on the device)")
    shapes = {k: tuple(v.shape) for k, v in batch.items() if torch.is_tensor(v)}
    if cfg.train.gradient_checkpointing and not cached and not hasattr(
            _backbone(model), "gradient_checkpointing_enable"):
        notes.append("This model cannot use gradient checkpointing (the run refuses it); "
                     "its activations are planned without it")
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    stages = _stages(model, counted_model, freeze, sizes, cfg, batch=batch,
                     seq_len=max_length or 0, precision=precision, device=device,
                     processes=processes, features=features)
    if not stages[0].memory.counted:
        notes.append("Activations estimated from the architecture (this model's forward "
                     "pass would not run on the meta device), hence the wide margin")
    from engine.training.optim import layer_rates

    by_param = layer_rates(model, cfg)
    rates = {g.name: by_param[g.params[0]] for g in freeze.groups if g.params}
    config = getattr(_backbone(model), "config", None)
    return Plan(cfg.model.id, cfg.head.task, freeze, sizes, tuple(stages), precision,
                tuple(data.labels), tuple(notes) + freeze.notes, rates,
                max_length=max_length,
                notices=tuple(c.notice for c in clamped) + tuple(data.warnings),
                length_notice=next((c.notice for c in clamped if c.key == "data.max_length"),
                                   None),
                batch_shapes=shapes, attention=config_attention(config),
                device=device, processes=processes)


def _stages(model, counted_model, freeze, sizes: dict, cfg, *, batch, seq_len: int,
            precision: str, device: str, processes: int, features: int) -> list[StagePlan]:
    """The plan of each stage of the freezing schedule (one without a schedule)."""
    import dataclasses

    from engine.modeling.freeze import FreezePlan

    stages = []
    for i, trainable in enumerate(freeze.schedule):
        staged = dataclasses.replace(freeze, trainable=trainable)
        if counted_model is not model:  # only the head is in the step
            staged = FreezePlan(frozenset(n for n, _ in counted_model.named_parameters()),
                                (), 0, 0)
        memory = estimate_memory(counted_model, staged, batch_size=cfg.train.batch_size,
                                 seq_len=seq_len, precision=precision, batch=batch,
                                 gradient_checkpointing=cfg.train.gradient_checkpointing,
                                 device_type=device, processes=processes, features=features)
        if counted_model is not model:
            memory = dataclasses.replace(memory, weights=sum(
                p.numel() * p.element_size() for p in model.parameters()))
        if i == 0:
            starts = "start"
        elif freeze.every_steps:
            starts = f"step {i * freeze.every_steps}"
        else:
            starts = f"epoch {i * freeze.every_epochs}"
        stages.append(StagePlan(i, starts, sum(sizes[n] for n in trainable), memory))
    return stages


def _backbone(model):
    from engine.modeling.freeze import backbone_of

    return backbone_of(model)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
