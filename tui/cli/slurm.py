"""`hubtune slurm`: an sbatch script that trains one run on several SLURM nodes.

The script runs the same `hubtune train ... --nnodes --node-rank --rdzv-endpoint` on
every node through `srun`, one task per node, taking the node rank from SLURM_NODEID,
the node count from SLURM_NNODES and the endpoint from the job's first host. Writing the
script never overwrites a file without --force; `--submit` hands it to sbatch.

Imports neither textual nor torch (the CLI contract).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from tui.cli.base import Failure
from tui.cli.output import echo

DEFAULT_PORT = 29500

NODE_FUNCTION = """\
hubtune_node() {{
    # Every node works out the same endpoint: the job's first host (or HUBTUNE_RDZV_HOST).
    local head="${{HUBTUNE_RDZV_HOST:-}}"
    if [ -z "$head" ] && command -v scontrol >/dev/null 2>&1; then
        head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    fi
    [ -n "$head" ] || head="${{SLURM_JOB_NODELIST%%,*}}"
    exec {train} \\
        --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" \\
        --rdzv-endpoint "$head:{port}"
}}
export -f hubtune_node
"""


def hubtune_command() -> list[str]:
    """How the nodes start hubtune: the installed `hubtune` beside this Python, else
    this Python running the CLI module."""
    beside = Path(sys.executable).with_name("hubtune")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "tui.cli"]


def sbatch_script(config: Path, overrides: tuple[str, ...], *, nodes: int, gpus_per_node: int,
                  partition: str | None = None, time_limit: str | None = None,
                  port: int = DEFAULT_PORT, join_timeout: int | None = None,
                  workdir: Path | None = None, name: str = "hubtune") -> str:
    """The sbatch script's text (pure: tests read it)."""
    processes = max(gpus_per_node, 1)
    train = [*hubtune_command(), "train", str(config.resolve()),
             *[part for o in overrides for part in ("--set", o)],
             "--processes", str(processes),
             *(["--join-timeout", str(join_timeout)] if join_timeout else [])]
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --nodes={nodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --output={name}-%j.out"]
    if gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if time_limit:
        lines.append(f"#SBATCH --time={time_limit}")
    lines += [
        "# Written by `hubtune slurm`. Node 0 records the run in its HUBTUNE_HOME and follows",
        "# it to the end; the other nodes train their shards and record nothing. The model",
        "# and data paths (or the hub cache) must be readable on every node.",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir or Path.cwd()))}",
        "# Multi-node runs that hang at the start usually talk over the wrong network",
        "# interface: name the one the nodes reach each other on.",
        "# export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0",
        "",
        NODE_FUNCTION.format(train=shlex.join(train), port=port),
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c hubtune_node",
        "",
    ]
    return "\n".join(lines)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by dotted key, on every node.")
@click.option("--nodes", type=click.IntRange(min=2), required=True,
              help="Machines to train on (2 or more).")
@click.option("--gpus-per-node", type=click.IntRange(min=0), required=True,
              help="GPUs on each machine, one training process each (0: one CPU process).")
@click.option("--partition", help="The SLURM partition (sbatch --partition).")
@click.option("--time", "time_limit", metavar="D-HH:MM:SS", help="The job's time limit.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT,
              show_default=True, help="The port on the first node where the nodes meet.")
@click.option("--join-timeout", type=click.IntRange(min=1), metavar="SECONDS",
              help="How long the nodes wait for each other [default: 300].")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the script [default: hubtune-<config name>.sbatch].")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--submit", is_flag=True, help="Submit the script with sbatch and print the "
                                             "job id.")
def slurm(config: Path, overrides: tuple[str, ...], nodes: int, gpus_per_node: int,
          partition: str | None, time_limit: str | None, port: int,
          join_timeout: int | None, out_file: Path | None, force: bool, submit: bool) -> None:
    """Write an sbatch script that trains CONFIG on several SLURM nodes (and submit it)."""
    from engine.core.config import load_config
    from engine.core.outputs import write_text
    from store import data_dir

    cfg = load_config(config, overrides)  # a bad config fails here, not in the queue
    name = f"hubtune-{cfg.name or config.stem}"
    text = sbatch_script(config, overrides, nodes=nodes, gpus_per_node=gpus_per_node,
                         partition=partition, time_limit=time_limit, port=port,
                         join_timeout=join_timeout, name=_job_name(name))
    path = write_text(out_file or Path(f"hubtune-{config.stem}.sbatch"), text, force=force,
                      protected=data_dir())
    path.chmod(0o755)
    echo(str(path))
    if submit:
        echo(f"Submitted SLURM job {submit_script(path)}; node 0 records the run when the job "
             "starts, with the job id in its env (`hubtune runs show ID --json`).", err=True)


def _job_name(name: str) -> str:
    """A job name sbatch and the shell take as one word."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:64]


def submit_script(path: Path) -> str:
    """sbatch the script; returns the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise Failure(f"sbatch is not on PATH, so the job was not submitted; run `sbatch "
                      f"{path}` on a SLURM login node.")
    done = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise Failure(f"sbatch refused {path} ({why}); fix the script's #SBATCH lines or "
                      "the options and submit again.")
    return done.stdout.strip().split(";")[0]
