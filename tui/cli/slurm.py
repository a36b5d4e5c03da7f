"""`hubtune slurm`: an sbatch script that trains one run on several SLURM nodes.

The script runs the same `hubtune train ... --nnodes --node-rank --rdzv-endpoint` on
every node through `srun`, one task per node, taking the node rank from SLURM_NODEID,
the node count from SLURM_NNODES and the endpoint from the job's first host. Writing the
script never overwrites a file without --force (nor, even with it, the config it reads);
`--submit` hands it to sbatch.

No value becomes shell: the train command is one argv list, each word single-quoted
(shlex), handed to srun as its arguments and run by the node function as "$@"; the
#SBATCH values (job name, partition, time) are checked against what SLURM accepts, since
sbatch reads those lines itself and a newline there would start a shell line.

Imports neither textual nor torch (the CLI contract).
"""

from __future__ import annotations

import os
import re
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
    # The train command arrives as this function's arguments, word for word.
    local head="${{HUBTUNE_RDZV_HOST:-}}"
    if [ -z "$head" ] && command -v scontrol >/dev/null 2>&1; then
        head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    fi
    [ -n "$head" ] || head="${{SLURM_JOB_NODELIST%%,*}}"
    exec "$@" \\
        --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" \\
        --rdzv-endpoint "$head:{port}"
}}
export -f hubtune_node
"""
SRUN = "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'hubtune_node \"$@\"' hubtune_node"
"""The srun line; the train command's quoted words follow it."""

JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A job name sbatch and the shell both take as one word (it also names the log file)."""
PARTITION = re.compile(r"[A-Za-z0-9_.+-]{1,128}(,[A-Za-z0-9_.+-]{1,128}){0,31}")
"""A partition name, or a comma-separated list of them (sbatch takes either)."""
TIME_LIMIT = re.compile(r"(\d{1,5}-\d{1,3}(:\d{1,3}){0,2}|\d{1,7}(:\d{1,3}){0,2}"
                        r"|UNLIMITED|INFINITE)", re.IGNORECASE)
"""SLURM's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or unlimited."""


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
    """The sbatch script's text (pure: tests read it). A value that cannot be written
    as it is (a #SBATCH value SLURM would not take, a count that is not a number) is
    refused with one sentence, never cleaned into something else."""
    check_directives(name=name, partition=partition, time_limit=time_limit)
    nodes, gpus_per_node, port = (_whole(v, what, low, high) for v, what, low, high in (
        (nodes, "--nodes", 1, None), (gpus_per_node, "--gpus-per-node", 0, None),
        (port, "--port", 1, 65535)))
    if join_timeout is not None:
        join_timeout = _whole(join_timeout, "--join-timeout", 1)
    processes = max(gpus_per_node, 1)
    train = [*hubtune_command(), "train", str(config.resolve()),
             *[part for o in overrides for part in ("--set", o)],
             "--processes", str(processes),
             *(["--join-timeout", str(join_timeout)] if join_timeout else [])]
    if any("\0" in word for word in train):  # no shell quoting can carry a NUL byte
        raise Failure("A --set value or the config path holds a NUL character, which no "
                      "command line can carry; remove it.")
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
        NODE_FUNCTION.format(port=port),
        f"{SRUN} {shlex.join(train)}",
        "",
    ]
    return "\n".join(lines)


def check_directives(*, name: str, partition: str | None, time_limit: str | None) -> None:
    """Refuse a #SBATCH value SLURM would not take: sbatch parses those lines itself, so
    a newline, a space or a quote there would end the directive or add another."""
    for value, pattern, what, fix in (
            (name, JOB_NAME, "job name", "letters, digits, '-', '_' and '.', up to 64"),
            (partition, PARTITION, "--partition", "a partition name (letters, digits, '-', "
                                                  "'_', '.'), or several joined by commas"),
            (time_limit, TIME_LIMIT, "--time", "minutes, or D-HH:MM:SS, e.g. 1-00:00:00")):
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise Failure(f"The {what} {_shown(value)} cannot go into an #SBATCH line; "
                          f"give {fix}.")


def _shown(value: object) -> str:
    """A refused value as one line: repr escapes newlines and quotes; long ones cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _whole(value: object, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        most = f" and at most {high}" if high is not None else ""
        raise Failure(f"{what} must be a whole number of at least {low}{most}, got "
                      f"{_shown(value)}.")
    return value


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
    from engine.core.outputs import refuse_overwriting_input, write_text
    from store import data_dir

    cfg = load_config(config, overrides)  # a bad config fails here, not in the queue
    name = f"hubtune-{cfg.name or config.stem}"
    text = sbatch_script(config, overrides, nodes=nodes, gpus_per_node=gpus_per_node,
                         partition=partition, time_limit=time_limit, port=port,
                         join_timeout=join_timeout, name=_job_name(name))
    out = out_file or Path(f"hubtune-{config.stem}.sbatch")
    refuse_overwriting_input(out, [(config, "the config the script trains")])
    path = write_text(out, text, force=force, protected=data_dir())
    path.chmod(0o755)
    echo(str(path))
    if submit:
        echo(f"Submitted SLURM job {submit_script(path)}; node 0 records the run when the job "
             "starts, with the job id in its env (`hubtune runs show ID --json`).", err=True)


def _job_name(name: str) -> str:
    """A job name sbatch and the shell take as one word (JOB_NAME): anything else in the
    run's name, non-ASCII letters included, becomes '-'."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-"
                   for c in name)[:64]


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
