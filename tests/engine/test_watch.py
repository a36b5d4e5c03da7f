"""Runs that watch their own curves (engine/runs/watch.py, `train.watch`, #35): each rule
fires on the shape it names, says what it saw in numbers, fires once per episode, and a
`stop` rule stops a real run with the reason recorded."""

from __future__ import annotations

import pytest

from engine.core.config import ConfigError, RunConfig, WatchRule, WatchSpec
from engine.runs.watch import Watcher

OFF = dict(loss_spike=None, plateau=None, overfit=None, slowdown=None, idle_gpu=None,
           grad_norm=None)


def only(**rules) -> WatchSpec:
    return WatchSpec(**{**OFF, **rules})


def test_a_loss_spike_is_named_with_its_factor_once_per_episode():
    w = Watcher(only(loss_spike=WatchRule(threshold=4, window=5)))
    assert [w.step(s, {"loss": 1.0 + 0.01 * s}) for s in range(1, 6)] == [[]] * 5
    (spike,) = w.step(6, {"loss": 9.0})
    assert spike.rule == "loss_spike" and spike.action == "note"
    assert spike.message.startswith("Loss spike at step 6: 9, ") and "over 4x" in spike.message
    assert w.step(7, {"loss": 9.5}) == []  # the same episode: said once
    assert w.step(8, {"loss": 1.0}) == []
    assert w.step(9, {"loss": 50.0})  # a new episode


def test_a_plateau_counts_evaluations_since_the_best():
    w = Watcher(only(plateau=WatchRule(window=2, action="stop")))
    assert w.evaluation(10, {"val_loss": 1.0}) == []
    assert w.evaluation(20, {"val_loss": 0.8}) == []
    assert w.evaluation(30, {"val_loss": 0.9}) == []
    (found,) = w.evaluation(40, {"val_loss": 0.85})
    assert found.action == "stop" and "best 0.8 for 2 evaluations" in found.message
    up = Watcher(only(plateau=WatchRule(window=1)), plateau_metric="val_accuracy")
    up.evaluation(1, {"val_accuracy": 0.7})
    assert up.evaluation(2, {"val_accuracy": 0.9}) == []  # higher is better here
    assert up.evaluation(3, {"val_accuracy": 0.8})


def test_overfitting_needs_validation_up_and_training_down_together():
    w = Watcher(only(overfit=WatchRule(window=2)))
    found = []
    for step, (train, val) in enumerate([(1.0, 0.9), (0.8, 0.95), (0.6, 1.0)], 1):
        w.step(step, {"loss": train})
        found += w.evaluation(step, {"val_loss": val})
    assert len(found) == 1 and "rose 0.9 -> 1 over 2 evaluations" in found[0].message
    both_up = Watcher(only(overfit=WatchRule(window=2)))
    for step, (train, val) in enumerate([(1.0, 0.9), (1.1, 0.95), (1.2, 1.0)], 1):
        both_up.step(step, {"loss": train})
        assert both_up.evaluation(step, {"val_loss": val}) == []  # diverging, not overfitting


def test_a_slowdown_and_an_idle_gpu():
    w = Watcher(only(slowdown=WatchRule(), idle_gpu=WatchRule(threshold=60)))
    assert w.gpu(-500.0, 0) == [] and w.gpu(-100.0, 0) == []  # before training: idle anyway
    for step in range(1, 6):
        assert w.step(step, {"samples_per_s": 100.0}) == []
    (slow,) = w.step(6, {"samples_per_s": 30.0})
    assert "30% of the run's median 100" in slow.message
    assert w.gpu(0.0, 90) == [] and w.gpu(10.0, 2) == [] and w.gpu(60.0, 3) == []
    (idle,) = w.gpu(71.0, 1)
    assert "at most 1% busy for 61 s" in idle.message
    assert w.gpu(80.0, None) == []  # no GPU to read: nothing said


def test_the_config_turns_rules_on_off_and_refuses_unknown_actions():
    base = {"model": {"id": "m"}, "data": {"train": "a.csv"}}
    cfg = RunConfig.from_dict({**base, "train": {"watch": {"plateau": None,
                                                           "loss_spike": {"action": "stop"}}}})
    assert cfg.train.watch.plateau is None and cfg.train.watch.loss_spike.action == "stop"
    assert cfg.train.watch.overfit == WatchRule()
    assert RunConfig.from_dict(base).train.watch is None
    with pytest.raises(ConfigError, match="restart"):
        RunConfig.from_dict({**base, "train": {"watch": {"overfit": {"action": "restart"}}}})
    rolls = RunConfig.from_dict({**base, "train": {"watch": {
        "overfit": {"action": "rollback"}, "max_rollbacks": 3, "rollback_lr_factor": 0.1}}})
    assert rolls.train.watch.overfit.action == "rollback" and rolls.train.watch.max_rollbacks == 3
    for bad, says in (({"slowdown": {"action": "rollback"}}, "cannot help with slowdown"),
                      ({"rollback_lr_factor": 1.0}, "between 0 and 1"),
                      ({"max_rollbacks": -1}, "0 or more")):
        with pytest.raises(ConfigError, match=says):
            RunConfig.from_dict({**base, "train": {"watch": bad}})


def test_a_gradient_norm_blow_up_fires_and_a_healthy_curve_does_not():
    w = Watcher(only(grad_norm=WatchRule(action="rollback")))
    healthy = [2.0, 1.8, 2.3, 1.5, 2.9, 1.2, 3.5, 2.0, 1.1, 4.0, 2.5, 1.9]  # noisy, no blow-up
    assert [f for s, n in enumerate(healthy, 1)
            for f in w.step(s * 10, {"loss": 1.0, "grad_norm": n})] == []
    (blow,) = w.step(130, {"loss": 1.0, "grad_norm": 95.0})
    assert blow.rule == "grad_norm" and blow.action == "rollback"
    assert blow.message.startswith("Gradient norm blow-up at step 130: 95, ")
    assert "over 10x" in blow.message
    assert blow.good_step == 119  # the step before the last good reading's (120)
    assert w.step(140, {"loss": 1.0}) == []  # a reading without a norm says nothing


def test_findings_name_the_last_step_a_rollback_can_trust():
    w = Watcher(only(plateau=WatchRule(window=2)))
    for step, val in ((10, 1.0), (20, 0.7), (30, 0.8)):
        assert w.evaluation(step, {"val_loss": val}) == []
    (plateau,) = w.evaluation(40, {"val_loss": 0.75})
    assert plateau.good_step == 20  # the best evaluation's step
    w.rewind(20)  # rolled back there: the later evaluations are forgotten
    assert w.evaluation(30, {"val_loss": 0.69}) == []


@pytest.mark.slow  # a real (tiny) training run in this process
def test_a_stop_rule_stops_a_real_run_and_says_why(tmp_path, tiny_bert, sentiment_csv, store):
    import dataclasses

    from tests.support.tests_helpers import config_for, train_in_process

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=6)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, learning_rate=1e-12, eval_every=2,  # nothing learns: val_loss stands
        watch=only(plateau=WatchRule(window=1, action="stop"))))
    run_id = train_in_process(cfg)
    run = store.get_run(run_id)
    events = [e.message for e in store.events(run_id)]
    plateau = [m for m in events if m.startswith("Plateau at step")]
    assert run.status == "stopped" and len(plateau) == 1, events
    assert "The run stops here (action: stop)." in plateau[0]
    assert run.summary["steps"] < 6 * 6  # well before its six epochs
