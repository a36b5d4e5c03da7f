"""#35's acceptance: a search (`hubtune sweep --search tpe`) goes on after the process that
started it is gone. A real `hubtune` process queues the first trial and exits; the trial's
worker, a real queued process, tells the study its result and queues the next trial in
its place, with nothing else running."""

from __future__ import annotations

import json
import time

import pytest

from engine.runs.queue import machine_slots
from engine.runs.search import load_spec, open_study
from tests.support.cli_runner import hubtune_process

pytestmark = pytest.mark.slow  # two real (tiny) workers and a CLI process


def test_a_search_goes_on_after_the_process_that_started_it_is_gone(tiny_config, store):
    if len(machine_slots()) != 1:
        pytest.skip("needs a machine with one slot (one CPU slot, or one GPU)")
    started = hubtune_process(
        "sweep", str(tiny_config), "--search", "tpe", "--trials", "2", "--parallel", "1",
        "--prune", "none", "--range", "train.learning_rate=1e-3:1e-2:log",
        "--set", "train.epochs=1", "--json")
    assert started.returncode == 0, started.stderr  # the starter has exited
    out = json.loads(started.stdout)
    sweep = out["sweep_id"]
    assert len(out["runs"]) == 1  # --parallel 1: one trial queued by the CLI
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = store.list_runs(sweep=sweep, limit=None)
        if len(runs) == 2 and all(r.status in ("completed", "failed", "pruned") for r in runs):
            break
        time.sleep(0.5)
    first, second = sorted(runs, key=lambda r: r.id)
    assert first.id == out["runs"][0]
    assert (first.status, second.status) == ("completed", "completed"), (first.error,
                                                                          second.error)
    # the second trial was asked by the first one's worker, once its run had ended
    assert second.created_utc >= first.finished_utc
    assert second.started_utc >= first.finished_utc
    assert second.sweep_id == sweep and second.config["train"]["learning_rate"] != \
        first.config["train"]["learning_rate"]
    trials = open_study(load_spec(sweep)).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [t.value for t in trials] == [first.summary["best_accuracy"],
                                         second.summary["best_accuracy"]]
