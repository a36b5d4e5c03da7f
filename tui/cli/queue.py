"""`hubtune queue ...`: the run queue of a shared machine: what waits and for what, the
slots (GPUs or CPU slots) and who holds them, reordering, pausing.

Every command also moves the queue on (`engine.launch.start.start_queued`): a slot freed by
a worker that was killed is found here, and a resumed queue starts what fits at once.
"""

from __future__ import annotations

import click

from tui.cli.base import RUN_ID, open_store
from tui.cli.output import cut, dump_json, echo


@click.group()
def queue() -> None:
    """The run queue: order, slots, reorder, pause (runs join with `train --queue`)."""


def _store_moved():
    from engine.launch.start import start_queued

    store = open_store()
    start_queued(store)
    return store


@queue.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the queue as JSON.")
@click.option("--remote", metavar="NAME", help="This remote's (`hubtune remote ls`).")
def queue_ls(as_json: bool, remote: str | None) -> None:
    """The runs holding slots, then the queued ones in order with what each waits for."""
    if remote is not None:
        from tui.cli.remote_steer import echo_queue_remote

        return echo_queue_remote(remote, ["queue", "ls", *(["--json"] if as_json else [])])
    from engine.runs.queue import queue_entries, read_slots

    store = _store_moved()
    entries = queue_entries(store, read_slots(store))
    paused = store.queue_paused()
    if as_json:
        echo(dump_json({"paused": paused, "runs": [e.to_json() for e in entries]}))
        return
    if paused:
        echo("The queue is paused: nothing queued starts until `hubtune queue resume`.")
    if not entries:
        echo("Nothing is queued. `hubtune train CONFIG --queue` queues a run.")
        return
    # WANTS is how many slots a run needs, HOLDS which ones it has (none while it waits).
    echo(f"{'POS':>3}  {'ID':>4}  {'STATUS':<9} {'NAME':<28} {'WANTS':>5}  {'HOLDS':<12} "
         "WAITS FOR")
    for e in entries:
        wants = len(e.devices) or e.slots_wanted
        holds = ",".join(e.devices) or "-"
        echo(f"{e.position or '-':>3}  {e.run_id:>4}  {e.status:<9} {cut(e.name, 28):<28} "
             f"{wants:>5}  {cut(holds, 12):<12} {e.waiting_for or '-'}")


@queue.command("slots")
@click.option("--json", "as_json", is_flag=True, help="Print the slots as JSON.")
@click.option("--remote", metavar="NAME", help="This remote's (`hubtune remote ls`).")
def queue_slots(as_json: bool, remote: str | None) -> None:
    """Each GPU (or CPU slot): name, free memory, utilisation, processes and its run."""
    if remote is not None:
        from tui.cli.remote_steer import echo_queue_remote

        return echo_queue_remote(remote, ["queue", "slots", *(["--json"] if as_json else [])])
    from engine.runs.queue import read_slots

    slots = read_slots(_store_moved())
    if as_json:
        echo(dump_json([s.to_json() for s in slots]))
        return
    echo(f"{'SLOT':<6} {'NAME':<24} {'FREE MEM':>9} {'UTIL':>5}  {'PROCESSES':<16} STATE")
    for s in slots:
        r = s.reading
        mem = f"{r.memory_free / (1 << 30):.1f}G" if r and r.memory_free is not None else "-"
        util = f"{r.utilisation}%" if r and r.utilisation is not None else "-"
        procs = ",".join(map(str, r.processes)) if r and r.processes else "-"
        if s.held_by:
            state = "run " + ", ".join(map(str, s.held_by))
        else:
            state = "busy (another process)" if s.busy else "free"
        echo(f"{s.name:<6} {cut(r.name if r else 'CPU', 24):<24} {mem:>9} {util:>5}  "
             f"{cut(procs, 16):<16} {state}")


@queue.command("top")
@click.argument("run_id", type=RUN_ID)
def queue_top(run_id: int) -> None:
    """Move a queued run to the front of the queue."""
    _move(run_id, 1)


@queue.command("mv")
@click.argument("run_id", type=RUN_ID)
@click.argument("position", type=click.IntRange(min=1))
def queue_mv(run_id: int, position: int) -> None:
    """Move a queued run to POSITION (1 starts next; past the end means last)."""
    _move(run_id, position)


def _move(run_id: int, position: int) -> None:
    from engine.launch.start import start_queued

    store = open_store()
    got = store.move_in_queue(run_id, position)
    echo(f"Run {run_id} is now at position {got} of the queue.")
    start_queued(store)


@queue.command("pause")
def queue_pause() -> None:
    """Start no queued run until `queue resume` (running ones go on; plain `train` too)."""
    store = open_store()
    store.set_queue_paused(True)
    echo("The queue is paused; `hubtune queue resume` starts it again.")


@queue.command("resume")
def queue_resume() -> None:
    """Start queued runs again, at once where slots are free."""
    from engine.launch.start import start_queued

    store = open_store()
    store.set_queue_paused(False)
    started = start_queued(store)
    runs = f"run{'s' if len(started) > 1 else ''} {', '.join(map(str, started))}"
    echo("The queue is running" + (f"; started {runs}." if started else "."))
