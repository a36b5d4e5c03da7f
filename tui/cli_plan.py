"""`hubtune plan CONFIG`: the layer groups, what trains, and the memory it needs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tui.formatting import human_bytes


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by dotted key.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(config: Path, overrides: tuple[str, ...], as_json: bool) -> None:
    """Show trainable and frozen parameters per block and a peak-memory estimate."""
    import torch

    from engine.config import load_config
    from engine.freeze import plan_freeze
    from engine.models import build_model
    from engine.plan import estimate_memory
    from engine.preview import preview_file

    cfg = load_config(config, overrides)
    regression = cfg.head.task == "regression"
    num_labels = 1
    if not regression:
        preview = preview_file(cfg.resolve(cfg.data.train), encoding=cfg.data.encoding,
                               label_column=cfg.data.label_column)
        num_labels = max(2, len(preview.label_counts))
    built = build_model(cfg.model, cfg.head, num_labels)
    freeze_plan = plan_freeze(built.model, cfg.freeze)
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
            else "fp32"
    memory = estimate_memory(built.model, freeze_plan, batch_size=cfg.train.batch_size,
                             seq_len=cfg.data.max_length, precision=precision)
    sizes = {n: p.numel() for n, p in built.model.named_parameters()}
    groups = []
    for g in freeze_plan.groups:
        trainable = sum(sizes[p] for p in g.params if p in freeze_plan.trainable)
        groups.append({"name": g.name, "params": g.count, "trainable": trainable,
                       "frozen": g.count - trainable})
    if as_json:
        click.echo(json.dumps({
            "model": cfg.model.id, "task": cfg.head.task, "pooling": built.pooling,
            "freeze": cfg.freeze.policy, "groups": groups,
            "trainable": freeze_plan.trainable_count, "frozen": freeze_plan.frozen_count,
            "batch_size": cfg.train.batch_size, "seq_len": cfg.data.max_length,
            "precision": precision, "memory_bytes": memory.as_dict(),
        }, indent=2))
        return
    click.echo(f"{cfg.model.id}: {cfg.head.task} head, {built.pooling} pooling, "
               f"freeze {cfg.freeze.policy}")
    click.echo(f"  {'GROUP':<12} {'PARAMS':>12} {'TRAINABLE':>12} {'FROZEN':>12}")
    for g in groups:
        click.echo(f"  {g['name']:<12} {g['params']:>12,} {g['trainable']:>12,} "
                   f"{g['frozen']:>12,}")
    total = freeze_plan.trainable_count + freeze_plan.frozen_count
    click.echo(f"  {'total':<12} {total:>12,} {freeze_plan.trainable_count:>12,} "
               f"{freeze_plan.frozen_count:>12,}")
    click.echo(f"Peak memory for batch {cfg.train.batch_size} x {cfg.data.max_length} tokens "
               f"({precision}, AdamW):")
    for key in ("weights", "gradients", "optimizer", "activations"):
        click.echo(f"  {key:<12} {human_bytes(getattr(memory, key)):>10}")
    click.echo(f"  {'total':<12} {human_bytes(memory.total):>10}   (activations with gradient "
               f"checkpointing: {human_bytes(memory.activations_checkpointed)})")
