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
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(config: Path, overrides: tuple[str, ...], as_json: bool) -> None:
    """Show trainable and frozen parameters per block and a peak-memory estimate.

    The model is built on the meta device: no weights are read, so planning a
    large model is quick and needs no memory.
    """
    from engine.core.config import load_config
    from engine.training.plan import make_plan

    cfg = load_config(config, overrides)
    p = make_plan(cfg)
    groups = p.group_table()
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
    echo(f"Peak memory for batch {cfg.train.batch_size} x {p.max_length} tokens "
               f"({p.precision}, AdamW):")
    if len(p.stages) == 1:
        memory = p.stages[0].memory
        for key in ("weights", "gradients", "optimizer", "activations"):
            echo(f"  {key:<12} {human_bytes(getattr(memory, key)):>10}")
        echo(f"  {'total':<12} {human_bytes(memory.total):>10}   (activations with "
                   f"gradient checkpointing: {human_bytes(memory.activations_checkpointed)})")
        return
    echo(f"  {'STAGE':<6} {'FROM':<10} {'TRAINABLE':>12} {'GRADS+OPT':>10} "
               f"{'ACTIV.':>10} {'TOTAL':>10}")
    for s in p.stages:
        m = s.memory
        echo(f"  {s.stage:<6} {s.starts:<10} {s.trainable:>12,} "
                   f"{human_bytes(m.gradients + m.optimizer):>10} "
                   f"{human_bytes(m.activations):>10} {human_bytes(m.total):>10}")
