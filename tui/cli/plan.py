"""`hubtune plan CONFIG`: the layer groups, what trains, and the memory it needs."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.output import dump_json, echo
from tui.formatting import human_bytes
from tui.safe_text import printable


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by dotted key.")
@click.option("--processes", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Plan for this many data-parallel processes (train --processes N).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(config: Path, overrides: tuple[str, ...], processes: int, as_json: bool) -> None:
    """Show trainable and frozen parameters per block and a peak-memory estimate.

    The model is built on the meta device: no weights are read, so planning a
    large model is quick and needs no memory. Its activations are counted from
    one forward pass of the run's longest batch, also on the meta device.
    """
    from engine.core.config import load_config
    from engine.training.plan import make_plan

    cfg = load_config(config, overrides)
    p = make_plan(cfg, processes=processes)
    groups = p.group_table()
    first = p.stages[0].memory
    if as_json:
        echo(dump_json({
            "model": cfg.model.id, "task": cfg.head.task, "freeze": cfg.freeze.policy,
            "lora": cfg.freeze.lora is not None, "labels": list(p.labels), "groups": groups,
            "trainable": p.freeze.trainable_count, "frozen": p.freeze.frozen_count,
            "batch_size": cfg.train.batch_size, "seq_len": p.max_length,
            "precision": p.precision, "memory_bytes": p.stages[0].memory.as_dict(),
            "stages": [{"stage": s.stage, "starts": s.starts, "trainable": s.trainable,
                        "memory_bytes": s.memory.as_dict()} for s in p.stages],
            "notes": list(p.notes), "notices": list(p.notices),
            "batch_shape": {k: list(v) for k, v in (p.batch_shapes or {}).items()},
            "attention": p.attention, "device": p.device, "processes": p.processes,
            "gradient_checkpointing": cfg.train.gradient_checkpointing,
            "memory_margin": first.margin, "activations_counted": first.counted,
        }))
        return
    echo(f"{printable(cfg.model.id)}: {cfg.head.task} head, freeze {cfg.freeze.policy}"
               f"{' + LoRA' if cfg.freeze.lora else ''}")
    if p.notices:
        for notice in p.notices:  # they may quote labels and names from the data file
            echo(f"  Notice: {printable(notice)}")
    for note in p.notes:
        echo(f"  {note}")
    echo(f"  {'GROUP':<12} {'PARAMS':>12} {'TRAINABLE':>12} {'FROZEN':>12} {'LR':>9}")
    for g in groups:
        rate = f"{g['learning_rate']:.3g}" if g["trainable"] else "-"
        echo(f"  {g['name']:<12} {g['params']:>12,} {g['trainable']:>12,} "
                   f"{g['frozen']:>12,} {rate:>9}")
    total = p.freeze.trainable_count + p.freeze.frozen_count
    echo(f"  {'total':<12} {total:>12,} {p.freeze.trainable_count:>12,} "
               f"{p.freeze.frozen_count:>12,}")
    where = f"{p.device}{f', {p.processes} processes' if p.processes > 1 else ''}"
    attention = f", {p.attention} attention" if p.attention else ""
    echo(f"Peak memory for batch {p.batch_text} ({p.precision}, AdamW{attention}, {where}"
         f"{', gradient checkpointing' if cfg.train.gradient_checkpointing else ''}):")
    if len(p.stages) == 1:
        for key, label in TERMS:
            value = getattr(first, key)
            if value or key in ALWAYS:
                echo(f"  {label:<15} {human_bytes(value):>10}")
        if first.overlap:
            echo(f"  {'not at once':<15} {human_bytes(-first.overlap):>10}   (gradients made "
                 "after the activations above them are freed)")
        aside = ("" if first.gradient_checkpointing else "   (activations with gradient "
                 f"checkpointing: {human_bytes(first.activations_checkpointed)})")
        echo(f"  {'total':<15} {human_bytes(first.total):>10} {margin(first)}{aside}")
        return
    echo(f"  {'STAGE':<6} {'FROM':<10} {'TRAINABLE':>12} {'GRADS+OPT':>10} "
         f"{'ACTIV.':>10} {'TOTAL':>10}")
    for s in p.stages:
        m = s.memory
        echo(f"  {s.stage:<6} {s.starts:<10} {s.trainable:>12,} "
             f"{human_bytes(m.gradients + m.optimizer):>10} "
             f"{human_bytes(m.activations):>10} {human_bytes(m.total):>10} {margin(m)}")


TERMS = (("weights", "weights"), ("gradients", "gradients"),
         ("tied_gradients", "tied-weight sum"), ("optimizer", "optimizer"),
         ("activations", "activations"), ("logits", "loss buffers"),
         ("autocast_cache", "autocast cache"), ("ddp_buckets", "DDP buckets"),
         ("features", "cached features"), ("cuda_context", "CUDA context"))
"""Memory terms in the order shown, with their labels; zero ones are left out..."""
ALWAYS = ("weights", "gradients", "optimizer", "activations")
"""... except these, which a plan always shows."""


def margin(memory) -> str:
    """The estimate's margin of error as the plan prints it: '(±15%)'."""
    return f"(±{round(memory.margin * 100)}%)"
