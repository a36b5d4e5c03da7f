"""`hubtune train`, and following a run's progress until it ends (also `runs follow`,
`runs resume`, `runs fork`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from store import StoreError
from tui.cli.base import RUN_ID, Failure, open_store
from tui.cli.output import echo
from tui.formatting import metric
from tui.safe_text import printable


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by dotted key, e.g. train.epochs=2.")
@click.option("--detach", is_flag=True, help="Print the run id and return at once.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes via torchrun: one per visible GPU at most, "
                   "or CPU processes over gloo where there is no GPU.")
@click.option("--queue", "queued", is_flag=True,
              help="Join the run queue and return: the run starts when enough slots "
                   "(GPUs) are free (`hubtune queue ls`).")
@click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Machines training the run, each starting this same command with its "
                   "own --node-rank (docs/scale-out.md).")
@click.option("--node-rank", type=click.IntRange(min=0), default=None,
              help="This machine's place among --nnodes, from 0; node 0 records the run.")
@click.option("--rdzv-endpoint", metavar="HOST:PORT",
              help="Node 0's address and a free port, where the nodes meet.")
@click.option("--join-timeout", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="How long the nodes wait for each other before the run fails "
                   "[default: 300].")
@click.option("--remote", metavar="NAME",
              help="Train on this remote (`hubtune remote ls`): the config travels, local "
                   "data files are copied once, the model comes from the hub there.")
@click.option("--parent", "parent_id", type=RUN_ID, default=None, metavar="ID",
              help="Record the run as a fork of run ID of the machine it trains on (the "
                   "TUI's fork of a remote's run sends it there).")
def train(config: Path, overrides: tuple[str, ...], detach: bool, processes: int,
          queued: bool, nnodes: int, node_rank: int | None, rdzv_endpoint: str | None,
          join_timeout: int | None, remote: str | None, parent_id: int | None) -> None:
    """Fine-tune from a YAML CONFIG without the TUI; prints the run id.

    On several machines, node 0 records the run and prints its id; nodes 1 and later
    train in the foreground, record nothing, and exit when the run ends.
    """
    from engine.core.config import load_config
    from engine.launch.start import start_run

    if remote is not None:
        from tui.cli.remote import train_remote

        if nnodes > 1:
            raise Failure("--remote and --nnodes do not mix: start each node on its machine.")
        train_remote(remote, load_config(config, overrides), detach=detach, queued=queued,
                     processes=processes, parent_id=parent_id)
        return

    spec = node_spec(nnodes, node_rank, rdzv_endpoint, join_timeout, queued)
    cfg = load_config(config, overrides)
    check_inputs(cfg)
    if spec is not None and spec.node_rank > 0:
        train_node(cfg, spec, processes)
        return
    store = open_store()
    if parent_id is not None:
        store.get_run(parent_id)  # an unknown parent is its own sentence
    run_id = start_run(store, cfg, processes=processes, queue=queued, parent_id=parent_id,
                       nodes=spec.to_dict() if spec else None)
    echo(run_id)
    if queued:
        run = store.get_run(run_id)
        where = (f"started on {', '.join(run.devices)}" if run.devices else
                 f"queued at position {store.waiting_ids().index(run_id) + 1}"
                 if run.waiting else run.status)
        echo(f"Run {run_id} {where}; `hubtune queue ls` shows the queue, "
             f"`hubtune runs follow {run_id}` its progress.", err=True)
        return
    if detach:
        echo(detached_note(store.get_run(run_id)), err=True)
        return
    status = follow(store, run_id)
    if status != "completed":
        run = store.get_run(run_id)
        raise Failure(run.error or f"Run {run_id} ended {status}.")


def detached_note(run) -> str:
    """What `--detach` started and how to follow it (stderr: stdout holds only the id)."""
    from tui.cli.output import cut

    return (f"Run {run.id} ({cut(run.name, 60)}) started in the background, in its own "
            f"process; `hubtune runs follow {run.id}` shows its progress, `hubtune runs "
            f"stop {run.id}` stops it.")


def node_spec(nnodes: int, node_rank: int | None, endpoint: str | None,
              join_timeout: int | None, queued: bool):
    """The NodeSpec of a multi-node launch, None on one machine; one sentence for a
    combination that cannot work."""
    from engine.cluster.rendezvous import DEFAULT_JOIN_TIMEOUT_S, NodeSpec

    if nnodes == 1:
        given = [name for name, value in (("--node-rank", node_rank), ("--rdzv-endpoint",
                 endpoint), ("--join-timeout", join_timeout)) if value is not None]
        if given:
            raise Failure(f"{' and '.join(given)} only apply to several machines; add "
                          "--nnodes N (2 or more), or leave them out.")
        return None
    if node_rank is None or endpoint is None:
        raise Failure(f"--nnodes {nnodes} needs --node-rank (this machine's place, from 0) "
                      "and --rdzv-endpoint HOST:PORT (node 0's address) on every node.")
    if queued:
        raise Failure("--queue cannot wait for slots on several machines at once; start the "
                      "multi-node run without --queue.")
    return NodeSpec(nnodes, node_rank, endpoint, join_timeout or DEFAULT_JOIN_TIMEOUT_S)


def train_node(cfg, spec, processes: int) -> None:
    """Node 1 or later: train this machine's ranks in the foreground until the run ends;
    node 0's store has the run, this node only a log."""
    from engine.cluster.gpus import check_process_count
    from engine.launch.nodes import prepare_node, run_node

    check_process_count(processes)
    folder = prepare_node(cfg, spec)
    echo(f"Node {spec.node_rank} of {spec.nnodes} joins {spec.endpoint} with {processes} "
         f"process{'es' if processes > 1 else ''}; node 0 records the run, this node logs "
         f"to {folder / 'worker.log'}.", err=True)
    try:
        status, error = run_node(folder, spec, processes)
    except KeyboardInterrupt:  # torchrun got the Ctrl-C too and ends this node's ranks
        raise Failure(f"Node {spec.node_rank} was interrupted; the run fails on every "
                      "node (node 0's `hubtune runs show` says so).") from None
    if error:
        raise Failure(error)
    if status != "completed":
        raise Failure(f"The run ended {status} on node {spec.node_rank} (node 0's store has "
                      "its record).")
    echo(f"Node {spec.node_rank} done: the run completed (node 0's store has its record).",
         err=True)


PRECHECK_MAX_BYTES = 100 << 20
"""Data files up to this size are read and checked before a run is recorded; larger ones
only by the run's worker process (reading them twice would cost more than it saves)."""


def check_inputs(cfg) -> None:
    """Fail before a run is recorded and its worker process spawned when the inputs are plainly
    wrong: a missing file, or (text classification tasks) data the worker process would refuse
    after loading the model: bad encoding, missing columns, unusable labels."""
    from engine.core.errors import DataError

    paths = []
    for key in ("train", "validation"):
        value = getattr(cfg.data, key)
        if value is None or value.startswith("hf:"):  # hub data: the worker process fetches it
            continue
        path = cfg.resolve(value)
        if not path.exists():
            raise DataError(f"The data.{key} file {path} does not exist; check the path.")
        paths.append(path)
    from engine.tasks import REGISTRY, task_for

    if REGISTRY[cfg.head.task].prechecked and all(
            p.is_file() and p.stat().st_size <= PRECHECK_MAX_BYTES for p in paths):
        task_for(cfg.head.task).check_data(cfg)  # no torch, no model
    model = cfg.model.id
    if "/" in model and not model.startswith(("torchvision:", "pkg:", "run:")) \
            and not cfg.resolve(model).exists():
        from engine.hub.client import cache_dir

        cache_dir()  # a hub model: HF_HOME must be usable before a worker process starts


def follow(store, run_id: int, *, after_event: int = 0) -> str:
    """Print events (those after `after_event`) and progress until the run ends;
    Ctrl-C detaches. A resumed run is followed from its resume on, so an earlier
    attempt's events and outcome are never printed as this one's."""
    import sqlite3

    from engine.core.events import RESUMED
    from engine.runs.lifecycle import FINISHED
    from tui.formatting import current_step, main_metric, run_eta

    last_event = after_event
    last_step = last_eval = -1
    queue = _QueueWatch(run_id)
    resumed = after_event > 0
    live = not resumed  # a resumed run's steps count from its checkpoint's load on
    gone = Failure(f"The run database {store.path} was removed or replaced while following "
                   f"run {run_id}; check HUBTUNE_HOME.")
    try:
        while True:
            if store.file_replaced():
                raise gone
            try:
                run = store.get_run(run_id)
            except (sqlite3.Error, StoreError):
                if store.file_replaced():  # removed between the check and the read
                    raise gone from None
                raise
            for ev in store.events(run_id, after_id=last_event):
                last_event = ev.id
                live = live or ev.message.startswith(RESUMED)
                echo(f"[{ev.level}] {printable(ev.message)}", err=ev.level == "error")
            queue.show(store, run)  # a queued run's place and what it waits for
            latest = store.latest_metrics(run_id) if live else {}
            step = store.last_step(run_id)
            begun = current_step(latest, -1)
            if last_step < 0 and begun > 0 and "loss" not in latest:  # before the first log
                last_step = begun
                eta = run_eta(latest, begun, run)
                echo(_step_text(begun, latest) + (f"  ETA {eta}" if eta else ""))
            watched = f"val_{main_metric(run)}"
            if watched not in latest:  # a task whose main metric has another name
                watched = min((k for k in latest if k.startswith("val_")), default=watched)
            # The step of the newest evaluation: a line shows an evaluation only with the
            # step it was made at, never the one before as if it were this step's.
            evaluated = store.last_step(run_id, watched) if watched in latest else -1
            if step > last_step and "loss" in latest:
                last_step = step
                echo(_progress_line(step, latest, evaluated == step,
                                    eta=run_eta(latest, step, run)))
                last_eval = max(last_eval, evaluated if evaluated == step else -1)
            if last_eval < evaluated == last_step:  # it landed after its step's line
                last_eval = evaluated
                echo(_eval_line(evaluated, latest))
            if run.status in FINISHED:
                if not resumed or run.status == "completed":
                    _print_summary(run)
                return run.status
            # A worker that died before it claimed the run (killed while it loaded, say)
            # leaves it `queued` with the worker's pid: reaped too, or this waits for ever.
            if (run.status == "running" or run.pid) and store.reap_interrupted():
                from engine.launch.start import start_queued

                start_queued(store)  # the slots of the runs just reaped
            time.sleep(0.5)
    except KeyboardInterrupt:
        echo(f"\nDetached; run {run_id} goes on. `hubtune runs follow {run_id}` "
                   f"reattaches, `hubtune runs stop {run_id}` stops it.", err=True)
        sys.exit(0)


class _QueueWatch:
    """While a followed run waits in the queue: its place and what it waits for, printed
    at once and again at each change (tui.queue_view, as the TUI's panel says it), then
    where it started."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.said: str | None = None
        self.monitor = None

    def show(self, store, run) -> None:
        if run.status != "queued":
            if self.said is not None and run.status == "running":
                where = f" on {', '.join(run.devices)}" if run.devices else ""
                echo(f"Run {self.run_id} left the queue: it is running{where}.")
            self.said = None
            return
        from tui.queue_view import read_queue

        if not run.waiting and self.said is None:
            return  # launched at once (not through the queue): its events say the rest
        if not run.waiting:
            line = f"Run {self.run_id} has its slots ({', '.join(run.devices) or '-'}) " \
                   "and is starting."
        else:
            if self.monitor is None:
                from engine.cluster.gpus import GpuMonitor

                self.monitor = GpuMonitor()
            spot = read_queue(store, self.monitor,
                              resume_hint="`hubtune queue resume`").spots.get(run.id)
            line = f"Run {self.run_id} " + (printable(spot.detail) if spot else "is queued")
        if line != self.said:
            self.said = line
            echo(line)


def _step_text(step: int, m: dict[str, float]) -> str:
    total = int(m.get("total_steps", 0))
    return f"step {step}/{total}" if total else f"step {step}"


def _progress_line(step: int, m: dict[str, float], evaluated: bool, *,
                   eta: str | None = None) -> str:
    """A training step's loss, rate, speed and ETA (tui.formatting.run_eta, as the TUI
    shows it), and its evaluation if it had one."""
    parts = [_step_text(step, m), f"loss {metric(m['loss'])}"]
    if "lr" in m:
        parts.append(f"lr {m['lr']:.2e}")
    if "samples_per_s" in m:
        parts.append(f"{m['samples_per_s']:.1f} samples/s")
    if eta:
        parts.append(f"ETA {eta}")
    if evaluated:
        parts += _val_parts(m)
    return "  ".join(parts)


def _eval_line(step: int, m: dict[str, float]) -> str:
    """An evaluation that was recorded after its step's progress line."""
    return "  ".join([_step_text(step, m), *_val_parts(m)])


def _val_parts(m: dict[str, float]) -> list[str]:
    return [f"val {k[4:]} {metric(v, k)}" for k, v in sorted(m.items())
            if k.startswith("val_") and isinstance(v, (int, float))]


def _print_summary(run) -> None:
    s = run.summary
    if not s:
        return
    from tui.run_result import run_result

    result, shown = run_result(run), []
    if result.value is not None:  # the model the run keeps, as `runs ls` shows it
        last = f"; last evaluation {metric(result.last)}" if result.kept == "best" and \
            result.last is not None else ""
        shown.append(f"{printable(result.metric)} {metric(result.value)} (the kept model: "
                     f"{result.label}{last})")
    keys = [("baseline_majority_accuracy", "majority-class accuracy"),
            ("baseline_majority_macro_f1", "majority-class macro-F1")]
    shown += [f"{label} {metric(s[k])}" for k, label in keys if isinstance(s.get(k), (int, float))]
    if shown:
        echo(f"Run {run.id} {run.status}: " + ", ".join(shown))
