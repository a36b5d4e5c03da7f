"""The pre-launch plan: what trains, what is frozen, and how much memory it needs.

Weights, gradients and optimizer state are counted exactly from the model's
parameters; activations are estimated for a transformer block from batch
size, sequence length, width and heads (the usual per-layer count of saved
tensors), and only for blocks that sit above the first trainable one,
since nothing below it keeps activations for backward.

The plan also carries notices: what the run will change or leave out, found
by the same checks the run makes (a max_length clamped to the model's
positions, rows without a label, look-alike labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from engine.modeling.freeze import FreezePlan

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    activations_checkpointed: int
    """With gradient checkpointing: one saved input per block plus one block's worth."""

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "gradients": self.gradients,
                "optimizer": self.optimizer, "activations": self.activations,
                "activations_checkpointed": self.activations_checkpointed,
                "total": self.total}


def estimate_memory(model: nn.Module, plan: FreezePlan, *, batch_size: int, seq_len: int,
                    precision: str = "fp32") -> MemoryEstimate:
    """Peak training memory in bytes for one optimizer step of `model` under `plan`."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = [p for n, p in model.named_parameters() if n in plan.trainable]
    # Gradients match the parameters' dtype; AdamW keeps two fp32 moments per parameter.
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    optimizer = sum(p.numel() * 8 for p in trainable)
    config = getattr(getattr(model, "backbone", model), "config", None)
    hidden = getattr(config, "hidden_size", 0) or 0
    heads = getattr(config, "num_attention_heads", 1) or 1
    blocks = [g for g in plan.groups if g.name.startswith("block.")]
    first_trainable = next((i for i, g in enumerate(blocks)
                            if any(p in plan.trainable for p in g.params)), len(blocks))
    if any(p in plan.trainable for g in plan.groups if g.name == "embeddings" for p in g.params):
        first_trainable = 0
    active = len(blocks) - first_trainable
    per_block = _block_activation_bytes(batch_size, seq_len, hidden, heads, precision)
    activations = active * per_block
    checkpointed = (active * batch_size * seq_len * hidden * BYTES.get(precision, 4)
                    + (per_block if active else 0))
    return MemoryEstimate(weights, gradients, optimizer, activations, checkpointed)


def _block_activation_bytes(b: int, s: int, h: int, a: int, precision: str) -> int:
    # Per transformer block, the tensors kept for backward come to about
    # s*b*h*34 bytes plus 5*a*s^2*b for attention scores, at 16-bit; scale by width.
    scale = BYTES.get(precision, 4) / 2
    return int((34 * s * b * h + 5 * a * s * s * b) * scale)


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


def make_plan(cfg) -> Plan:
    """Build the model on the meta device (no weights read) and plan every stage."""
    import dataclasses

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

        sample, clamped = fit_lengths(sample, path)  # the check the training loop makes
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
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    stages = []
    for i, trainable in enumerate(freeze.schedule):
        staged = dataclasses.replace(freeze, trainable=trainable)
        memory = estimate_memory(model, staged, batch_size=cfg.train.batch_size,
                                 seq_len=max_length, precision=precision)
        if i == 0:
            starts = "start"
        elif freeze.every_steps:
            starts = f"step {i * freeze.every_steps}"
        else:
            starts = f"epoch {i * freeze.every_epochs}"
        stages.append(StagePlan(i, starts, sum(sizes[n] for n in trainable), memory))
    from engine.training.optim import layer_rates

    by_param = layer_rates(model, cfg)
    rates = {g.name: by_param[g.params[0]] for g in freeze.groups if g.params}
    return Plan(cfg.model.id, cfg.head.task, freeze, sizes, tuple(stages), precision,
                tuple(data.labels), tuple(notes) + freeze.notes, rates,
                max_length=max_length,
                notices=tuple(c.notice for c in clamped) + tuple(data.warnings),
                length_notice=next((c.notice for c in clamped if c.key == "data.max_length"),
                                   None))
