"""Bayesian search over the queue (engine/runs/search.py, `hubtune sweep --search tpe`,
#35): trials are asked of an Optuna study kept beside the store, at most `--parallel` at
once; each trial's worker reports its evaluations (the pruner may stop it: status
`pruned`, checkpoints kept), tells its result at the end and queues the next trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.errors import ConfigError
from engine.launch.outcome import end_trial
from engine.launch.start import launch_trial
from engine.runs.search import (
    SearchSpec,
    TrialWatch,
    ask,
    check_search,
    importances,
    load_spec,
    open_study,
    report,
    save_spec,
    spec_path,
    tell,
)
from engine.runs.sweep import parse_range
from tests.support.cli_runner import hubtune, ok, write_run_config


def spec(**kw) -> SearchSpec:
    return SearchSpec(**{"sweep_id": "abc123", "trials": 6, "parallel": 2,
                         "metric": "accuracy", "ranges": (parse_range("train.lr=1:9"),),
                         **kw})


def test_bad_searches_are_one_sentence():
    base = {"sampler": "tpe", "trials": 4, "parallel": None, "prune": "median",
            "ranges": ("train.learning_rate=1e-5:1e-3:log",), "choices": ()}
    for change, words in ((dict(sampler="grid"), "not a search"),
                          (dict(trials=None), "needs --trials"),
                          (dict(trials=5000), "between 1 and"),
                          (dict(prune="sometimes"), "--prune"),
                          (dict(ranges=(), choices=()), "something to search"),
                          (dict(choices=("train.learning_rate=1,2",)), "twice")):
        with pytest.raises(ConfigError, match=words):
            check_search(**{**base, **change})


def test_the_spec_survives_a_round_trip_through_its_file(hubtune_home):
    s = spec(choices=(check_search(sampler="tpe", trials=1, parallel=1, prune="none",
                                   ranges=(), choices=("train.batch_size=8,16",))[1][0],),
             base={"model": {"id": "x"}})
    save_spec(s)
    assert load_spec("abc123") == s and s.direction == "maximize"
    assert load_spec("nosuch") is None and load_spec("../etc") is None
    spec_path("abc123").write_text("{not json")
    with pytest.raises(Exception, match="cannot be read"):
        load_spec("abc123")


def test_asks_no_more_than_the_places_and_the_trials(hubtune_home):
    s = spec(trials=3)
    first = ask(s, running=0)
    assert [t.number for t in first] == [0, 1]
    (value,) = {o.partition("=")[0] for t in first for o in t.overrides}
    assert value == "train.lr"
    assert ask(s, running=2) == []  # both places taken
    assert [t.number for t in ask(s, running=1)] == [2]
    assert ask(s, running=0) == []  # three asked: the search is done asking
    assert all(1 <= int(o.partition("=")[2]) <= 9 for t in first for o in t.overrides)


def finished(s: SearchSpec, value: float, steps) -> None:
    """A completed trial with `value` at each of `steps`, added to the study at once."""
    import optuna

    open_study(s).add_trial(optuna.trial.create_trial(
        value=value, intermediate_values=dict.fromkeys(steps, value)))


def test_the_median_pruner_waits_for_the_start_up_trials_and_a_third_of_the_steps(
        hubtune_home):
    s = spec(trials=8, parallel=8)  # TPE's start-up: 3 trials
    for value in (0.9, 0.8):
        finished(s, value, range(10, 61, 10))
    ask(s, running=0)
    early = TrialWatch(s, 2)
    early.planned_steps = 60
    assert not any(early.report(step, {"val_accuracy": 0.1}) for step in (10, 20, 30))
    finished(s, 0.85, range(10, 61, 10))  # the third start-up trial completes
    assert early.report(40, {"val_accuracy": 0.1}) is True
    watch = TrialWatch(s, 3)
    watch.planned_steps = 60  # warm-up: 20 steps
    assert watch.report(10, {"val_accuracy": 0.1}) is False  # far behind, but too soon
    assert watch.report(20, {"val_accuracy": 0.1, "val_loss": 3.0}) is True
    assert watch.pruned_at == 20 and watch.report(30, {"val_accuracy": 0.99}) is True
    tell(s, 3, "pruned", None)
    ahead = TrialWatch(s, 4)
    ahead.planned_steps = 60
    assert not any(ahead.report(step, {"val_accuracy": 0.95}) for step in (10, 20, 30))
    assert ahead.report(40, {"val_loss": 0.1}) is False  # no value of the metric
    # An unknown length is taken as the longest completed trial's (60: warm-up 20) ...
    assert report(s, 5, 10, {"accuracy": 0.1}) is False
    assert report(s, 5, 20, {"accuracy": 0.1}) is True
    # ... and a trial's last evaluation is never pruned: there is nothing left to save.
    assert report(s, 6, 60, {"accuracy": 0.1}, planned_steps=60) is False
    states = [t.state.name for t in open_study(s).get_trials()]
    assert states == ["COMPLETE"] * 2 + ["RUNNING", "PRUNED"] + ["RUNNING"] * 4 + ["COMPLETE"]


def test_successive_halving_judges_a_trial_at_a_third_of_its_steps(hubtune_home):
    s = spec(trials=8, parallel=8, prune="asha")
    ask(s, running=0)
    for number, value in ((0, 0.9), (1, 0.8), (2, 0.85)):  # each passes rung 0 (step 20)
        assert not any(report(s, number, step, {"accuracy": value}, planned_steps=60)
                       for step in range(10, 61, 10))  # start-up: never pruned
        tell(s, number, "completed", value)
    assert report(s, 3, 10, {"accuracy": 0.1}, planned_steps=60) is False  # before rung 0
    assert report(s, 3, 20, {"accuracy": 0.1}, planned_steps=60) is True
    assert report(s, 4, 20, {"accuracy": 0.95}, planned_steps=60) is False  # the top one


def test_importances_once_enough_trials_completed(hubtune_home):
    s = spec(trials=8, parallel=8, ranges=(parse_range("train.lr=1:100"),
                                           parse_range("train.wd=1:100")))
    trials = ask(s, running=0)
    assert importances(s) == {}
    for t in trials:
        lr = float(dict(o.split("=") for o in t.overrides)["train.lr"])
        tell(s, t.number, "completed", lr / 100)  # the result follows lr alone
    found = importances(s)
    assert set(found) == {"train.lr", "train.wd"} and found["train.lr"] > found["train.wd"]


@pytest.fixture
def config(tmp_path: Path, sentiment_csv: Path) -> Path:
    return write_run_config(tmp_path, sentiment_csv, "s")


def test_the_cli_queues_the_first_trials_and_each_end_queues_the_next(config, store):
    ok("queue", "pause")  # what the search queues is the subject: no worker starts
    out = json.loads(ok("sweep", str(config), "--search", "tpe", "--trials", "3",
                        "--parallel", "2", "--range", "train.learning_rate=1e-5:1e-3:log",
                        "--choice", "train.batch_size=8,16", "--json").stdout)
    assert out["metric"] == "accuracy" and out["direction"] == "maximize"
    first, second = out["runs"]
    runs = {r.id: r for r in store.list_runs(sweep=out["sweep_id"], limit=None)}
    assert set(runs) == {first, second}
    for run_id, number in ((first, 0), (second, 1)):
        cfg = runs[run_id].config
        assert 1e-5 <= cfg["train"]["learning_rate"] <= 1e-3
        assert cfg["train"]["batch_size"] in (8, 16)
        assert launch_trial(run_id) == number and runs[run_id].name == f"s-t{number}"
    s = load_spec(out["sweep_id"])
    store.finish(first, "completed", summary={"watched_metric": "accuracy",
                                              "best_accuracy": 0.8, "steps": 4})
    end_trial(store, first)
    third = [r.id for r in store.list_runs(sweep=s.sweep_id, limit=None)
             if r.id not in (first, second)]
    assert len(third) == 1 and launch_trial(third[0]) == 2
    store.finish(second, "pruned", summary={"watched_metric": "accuracy",
                                            "best_accuracy": 0.5, "pruned_at": 2})
    end_trial(store, second)  # three asked already: nothing more queued
    assert len(store.list_runs(sweep=s.sweep_id, limit=None)) == 3
    study = open_study(s).get_trials()
    assert [t.state.name for t in study] == ["COMPLETE", "PRUNED", "RUNNING"]
    assert study[0].value == 0.8
    ranked = json.loads(ok("runs", "compare", "--sweep", s.sweep_id, "--json").stdout)
    assert ranked["importances"] == {}
    assert {p["id"]: p["pruned_at"] for p in ranked["points"]}[second] == 2
    text = ok("runs", "compare", "--sweep", s.sweep_id).stdout
    assert "pruned@2" in text and "Importance: shown once" in text


def test_search_options_without_a_search_and_a_search_with_a_grid_are_refused(config):
    ok("queue", "pause")
    lone = hubtune("sweep", str(config), "--grid", "train.epochs=1,2", "--trials", "3")
    assert lone.returncode == 1 and "add --search tpe" in lone.stderr
    mixed = hubtune("sweep", str(config), "--search", "tpe", "--trials", "2", "--grid",
                    "train.epochs=1,2")
    assert mixed.returncode == 1 and "not --grid or --random" in mixed.stderr
    empty = hubtune("sweep", str(config), "--search", "tpe", "--trials", "2")
    assert empty.returncode == 1 and "something to search" in empty.stderr


@pytest.mark.slow  # one real (tiny) training run, in this process
def test_a_trial_behind_the_others_is_pruned_by_its_worker(tmp_path, tiny_bert, sentiment_csv,
                                                           store):
    import signal

    from engine.launch.start import LAUNCH_FILE
    from engine.launch.worker import run_worker
    from store import run_dir
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=12)  # 8 steps an epoch
    s = spec(trials=4, parallel=4, base=cfg.to_dict())
    save_spec(s)
    for _ in range(3):  # the start-up trials, completed far ahead at every step
        finished(s, 2.0, range(200))
    (asked,) = ask(s, running=0)
    assert asked.number == 3
    store.set_queue_paused(True)
    run_id = store.create_run(cfg.to_dict(), name="s-t3", model_id=cfg.model.id,
                              task=cfg.head.task, dataset="data", sweep_id=s.sweep_id)
    run_dir(run_id).mkdir(parents=True, exist_ok=True)
    (run_dir(run_id) / LAUNCH_FILE).write_text(json.dumps({"processes": 1, "trial": 3}))
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = run_worker(run_id, store.path, store.get_run(run_id).lease)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    run = store.get_run(run_id)
    assert code == 0 and run.status == "pruned", run.error
    # Its first evaluation at or after a third of its 96 planned steps (the worker's sink
    # passed them on: taken from the completed trials' 199, the warm-up would end at 67).
    assert run.summary["pruned_at"] == 32
    assert any("pruner" in e.message for e in store.events(run_id))
    assert store.checkpoints(run_id), "a pruned trial keeps its checkpoint"
    assert [t.state.name for t in open_study(s).get_trials()] == ["COMPLETE"] * 3 + ["PRUNED"]


@pytest.mark.slow  # a whole TUI session
async def test_the_sweep_view_shows_pruned_trials_and_importances(store, hubtune_home):
    from textual.widgets import DataTable, Static

    from tests.support.pilot_wait import select_run, wait_for
    from tui.app import make_app

    s = spec(trials=5, parallel=5, ranges=(parse_range("train.lr=1:100"),
                                           parse_range("train.wd=1:100")))
    save_spec(s)
    ids = []
    for t in ask(s, running=0):
        values = dict(o.split("=") for o in t.overrides)
        run_id = store.create_run({"train": values}, name=f"s-t{t.number}", model_id="m",
                                  task="text-classification", dataset="d", sweep_id=s.sweep_id)
        result = float(values["train.lr"]) / 100
        if t.number == 4:
            store.finish(run_id, "pruned", summary={"watched_metric": "accuracy", "steps": 3,
                                                    "best_accuracy": 0.01, "pruned_at": 3})
            tell(s, t.number, "pruned", None)
        else:
            store.finish(run_id, "completed", summary={"watched_metric": "accuracy",
                                                       "best_accuracy": result, "steps": 9})
            tell(s, t.number, "completed", result)
        ids.append(run_id)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await select_run(pilot, ids[0])
        await pilot.press("G")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        table = app.screen.query_one("#compare-table", DataTable)
        statuses = [str(v) for v in table.get_row_at(0)[1:]]
        assert statuses.count("pruned@3") == 1 and statuses.count("completed") == 4
        line = app.screen.query_one("#compare-importance", Static)
        await wait_for(pilot, lambda: "Parameter importance: train." in str(line.render()),
                       timeout=30)


def test_a_search_resumed_settles_trials_that_ended_unseen_and_fills_their_places(config,
                                                                                 store):
    ok("queue", "pause")
    out = json.loads(ok("sweep", str(config), "--search", "tpe", "--trials", "4",
                        "--parallel", "2", "--range", "train.learning_rate=1e-5:1e-3:log",
                        "--json").stdout)
    first, second = out["runs"]
    store.delete_run(first)  # gone without a word to the study (as after `runs rm`)
    store.finish(second, "interrupted", summary=None)  # its worker killed outright
    resumed = json.loads(ok("sweep", "--resume", out["sweep_id"], "--json").stdout)
    assert len(resumed["runs"]) == 2 and not {first, second} & set(resumed["runs"])
    s = load_spec(out["sweep_id"])
    assert [t.state.name for t in open_study(s).get_trials()] == ["FAIL", "FAIL", "RUNNING",
                                                                  "RUNNING"]
    again = ok("sweep", "--resume", out["sweep_id"]).stdout
    assert "queued no new trials" in again  # both places are taken
    unknown = hubtune("sweep", "--resume", "feedbeef")
    assert unknown.returncode == 1 and "There is no search 'feedbeef'" in unknown.stderr


def test_a_trial_told_already_is_not_reported_to_again(hubtune_home):
    s = spec(trials=2, parallel=2)
    ask(s, running=0)
    tell(s, 0, "stopped", 0.5)  # its run stopped; then resumed: it evaluates again
    assert report(s, 0, 30, {"val_accuracy": 0.1}) is False
    assert open_study(s).get_trials()[0].intermediate_values == {}


def test_a_study_that_fails_does_not_fail_the_trials_run(store, tmp_path, capsys):
    import os
    import threading

    from engine.core.events import EvalFinished
    from engine.launch.sink import StoreSink
    from engine.runs.search import sweeps_dir

    s = spec(trials=2, parallel=2)
    ask(s, running=0)
    (sweeps_dir() / f"{s.sweep_id}.journal").write_text("{not a journal\n")
    run_id = store.create_run({"name": "t"}, name="t")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="here",
                env={"device": "cpu"})
    stop = threading.Event()
    sink = StoreSink(store.path, run_id, stop, store.get_run(run_id).lease)
    sink.trial = TrialWatch(s, 0)
    sink.start()
    sink(EvalFinished(step=2, epoch=0.5, metrics={"val_accuracy": 0.5}))
    sink.close("completed")
    assert sink.error is None and not stop.is_set() and sink.trial is None
    assert "no longer reports to its search" in capsys.readouterr().err


def test_two_workers_ending_at_once_neither_settle_the_others_new_trial(config, store,
                                                                         monkeypatch):
    import threading

    from engine.launch import start
    from store import RunStore

    ok("queue", "pause")
    out = json.loads(ok("sweep", str(config), "--search", "tpe", "--trials", "6",
                        "--parallel", "2", "--range", "train.learning_rate=1e-5:1e-3:log",
                        "--json").stdout)
    s = load_spec(out["sweep_id"])
    for run_id in out["runs"]:  # both end at once
        store.finish(run_id, "failed", summary=None)
        tell(s, launch_trial(run_id), "failed", None)
    real_start, other = start.start_run, {}

    def start_run(*args, **kw):  # the first worker, between asking a trial and binding it
        if "thread" not in other:
            other["thread"] = threading.Thread(
                target=lambda: other.setdefault("ids", start.queue_trials(
                    RunStore(store.path), s)))
            other["thread"].start()
            other["thread"].join(timeout=1.0)
            other["waited"] = other["thread"].is_alive()
        return real_start(*args, **kw)

    monkeypatch.setattr(start, "start_run", start_run)
    mine = start.queue_trials(store, s)
    other["thread"].join(timeout=60)
    assert other["waited"], "the second worker did not wait for the first"
    assert len(mine) == 2 and other["ids"] == []
    states = [t.state.name for t in open_study(s).get_trials()]
    assert states == ["FAIL", "FAIL", "RUNNING", "RUNNING"]


def test_trials_asked_one_at_a_time_by_fresh_processes_differ(hubtune_home):
    s = spec(trials=6, parallel=1, ranges=(parse_range("train.lr=1e-5:1e-3:log"),))
    seen = []
    for _ in range(5):  # each ask opens the study afresh, as each trial's worker does
        (trial,) = ask(s, running=0)
        seen.append(trial.overrides)
        tell(s, trial.number, "completed", 0.5)
    assert len(set(seen)) == 5, seen


def test_a_search_over_a_setting_that_does_not_exist_queues_nothing(config, store):
    ok("queue", "pause")
    typo = hubtune("sweep", str(config), "--search", "tpe", "--trials", "3",
                   "--range", "train.learnin_rate=1e-5:1e-3:log")
    assert typo.returncode == 1 and "learnin_rate" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
    bad = hubtune("sweep", str(config), "--search", "tpe", "--trials", "3",
                  "--choice", "train.batch_size")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: --choice ")
    assert store.list_runs(limit=None) == []


def test_opening_the_study_again_does_not_grow_its_journal(hubtune_home):
    from engine.runs.search import sweeps_dir

    s = spec()
    open_study(s)
    journal = sweeps_dir() / f"{s.sweep_id}.journal"
    size = journal.stat().st_size
    for _ in range(3):  # every report, tell and compare view opens it
        open_study(s)
        assert importances(s) == {}
    assert journal.stat().st_size == size
    assert open_study(s).direction.name == "MAXIMIZE"


def test_a_small_sweep_leaves_most_of_its_trials_to_tpe():
    from engine.runs.search import startup_trials

    # Optuna's default of 10 random trials would leave a 12-trial sweep two TPE picks.
    assert [startup_trials(n) for n in (2, 12, 24, 100)] == [3, 3, 6, 10]
