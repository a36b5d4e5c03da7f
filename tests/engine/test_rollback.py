"""The `rollback` watch action (engine/training/rollback.py, #35): a run goes back to its
last good checkpoint, exactly (weights and optimizer state compared tensor by tensor),
with its learning rate lowered, at most `train.watch.max_rollbacks` times, each an
event with its numbers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.core.config import WatchRule, WatchSpec
from engine.core.events import RolledBack, StepLogged
from engine.training.rollback import Rollbacks

OFF = dict(loss_spike=None, plateau=None, overfit=None, slowdown=None, idle_gpu=None,
           grad_norm=None, non_finite=None)


def watched(cfg, **changes):
    spec = WatchSpec(**{**OFF, **changes.pop("rules", {})}, **changes)
    return dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, watch=spec, checkpoint_every=2, keep_checkpoints=5, warmup_ratio=0.0,
        scheduler="constant"))


def test_requests_merge_and_the_limit_is_counted():
    box = Rollbacks(limit=1, factor=0.5)
    assert box.request("loss_spike", 6) and box.request("plateau", 4)  # one, to the earlier
    assert box.take().good_step == 4 and box.take() is None
    box.used = 1  # the loop counts what it applied
    assert not box.request("loss_spike", 8)
    assert Rollbacks(limit=3, factor=0.5, used=3).request("overfit", 2) is False


@pytest.mark.slow  # trains a tiny model for 8 steps in this process
def test_rollback_restores_the_checkpoint_exactly_and_lowers_the_rate(
        tmp_path, tiny_bert, sentiment_csv):
    from safetensors.torch import load_file

    from tests.support.tests_helpers import config_for, prepared_loop

    cfg = watched(config_for(tmp_path, tiny_bert, sentiment_csv, max_steps=8),
                  rules={"loss_spike": WatchRule(action="rollback")}, rollback_lr_factor=0.25)
    out = tmp_path / "out"
    seen: dict = {}

    def emit(event):
        if isinstance(event, StepLogged) and event.step == 7 and "rates" not in seen:
            seen["rates"] = [g["lr"] for g in run.optimizer.param_groups]
            # as the store thread would on a finding at step 7 whose last good step is 5
            assert loop.rollbacks.request("loss_spike", 5)
        if isinstance(event, RolledBack):
            seen["event"] = event
            seen["weights"] = {k: v.detach().clone()
                               for k, v in run.plain_model.state_dict().items()}
            seen["optimizer"] = {k: {n: t.clone() for n, t in v.items()}
                                 for k, v in run.optimizer.state_dict()["state"].items()}
            seen["rates_after"] = [g["lr"] for g in run.optimizer.param_groups]
            seen["left"] = sorted(p.name for p in (out / "checkpoints").iterdir())
            seen["state"] = dataclasses.asdict(run.state)
        if isinstance(event, StepLogged):
            seen.setdefault("steps", []).append((event.step, event.metrics["lr"]))
            seen.setdefault("norms", []).append(event.metrics["grad_norm"])

    loop = prepared_loop(cfg, emit, out, rollbacks=Rollbacks(limit=2, factor=0.25))
    run = loop.run
    # the checkpoint as written, read before the run goes on and replaces it
    original = {}

    real_write = loop.checkpoints._write

    def write(ranks, metric):
        real_write(ranks, metric)
        if run.state.step == 4 and "event" not in seen:
            folder = out / "checkpoints" / "step-4"
            original["weights"] = load_file(folder / "model.safetensors")
            original["optimizer"] = torch.load(folder / "optimizer.pt", weights_only=True)

    loop.checkpoints._write = write
    outcome = loop.train()
    assert outcome.status == "completed"
    event = seen["event"]
    assert (event.rule, event.from_step, event.to_step, event.count) == ("loss_spike", 7, 4, 1)
    assert event.learning_rate == pytest.approx(event.previous_rate * 0.25)
    assert "from step 7 to the checkpoint of step 4" in event.message
    assert seen["state"]["step"] == 4 and seen["left"] == ["step-2", "step-4"]  # step-6 gone
    weights = original["weights"]
    assert set(weights) <= set(seen["weights"])
    differ = [k for k in weights if not torch.equal(seen["weights"][k], weights[k])]
    assert differ == []
    for key, tensors in original["optimizer"]["state"].items():
        for name, value in tensors.items():
            assert torch.equal(seen["optimizer"][key][name], value), (key, name)
    assert seen["rates_after"] == pytest.approx([r * 0.25 for r in seen["rates"]])
    # the replay logs steps 5.. again, at the lowered rate, to the end
    steps = [s for s, _ in seen["steps"]]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 8]
    before, after = dict(seen["steps"][:7]), dict(seen["steps"][7:])
    assert after[5] == pytest.approx(before[5] * 0.25)
    assert outcome.summary["steps"] == 8
    # the gradient norm before clipping (train.max_grad_norm 1.0) is in every reading
    assert len(seen["norms"]) == 11 and all(n > 0 for n in seen["norms"])


def _poisoned_after(loop, first_call: int, *, once: bool) -> None:
    """Gradients become NaN on backward pass `first_call` (and after, unless `once`)."""
    calls = {"n": 0}
    real_step = loop._step

    def step(batch):
        calls["n"] += 1
        return real_step(batch)

    def poison(grad):
        hit = calls["n"] == first_call if once else calls["n"] >= first_call
        return grad * float("nan") if hit else grad

    for p in loop.run.model.parameters():
        if p.requires_grad:
            p.register_hook(poison)
    loop._step = step


@pytest.mark.slow  # trains a tiny model for a few steps, twice
@pytest.mark.parametrize("once", [True, False])
def test_a_non_finite_loss_rolls_back_at_most_max_rollbacks_times(
        tmp_path, tiny_bert, sentiment_csv, once):
    from engine.training.rollback import rollbacks_for
    from tests.support.tests_helpers import config_for, prepared_loop

    cfg = watched(config_for(tmp_path, tiny_bert, sentiment_csv, max_steps=8),
                  rules={"non_finite": WatchRule(action="rollback")}, max_rollbacks=1)
    if once:  # unclipped: the norm is still read, taken on logging steps only
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_grad_norm=None))
    events = []
    loop = prepared_loop(cfg, events.append, tmp_path / "out", rollbacks=rollbacks_for(cfg))
    _poisoned_after(loop, 4, once=once)  # step 4's update is NaN: step 5's loss is
    outcome = loop.train()
    rolled = [e for e in events if isinstance(e, RolledBack)]
    assert len(rolled) == 1  # max_rollbacks: 1
    # step 5's loss came from step 4's weights: the newest checkpoint before them is step 2's
    assert (rolled[0].rule, rolled[0].to_step, rolled[0].count) == ("non_finite", 2, 1)
    assert "loss nan at step 5" in rolled[0].message
    if once:  # the replay is clean: the run ends well
        assert outcome.status == "completed" and outcome.summary["steps"] == 8
        norms = [e.metrics.get("grad_norm") for e in events if isinstance(e, StepLogged)]
        # steps 1-4, 3-8; step 4's NaN gradient gives no reading (the loss check has it)
        assert len(norms) == 10 and norms[3] is None
        assert all(n is not None and n > 0 for n in norms[:3] + norms[4:])
    else:  # poisoned again: the limit is spent and the run fails as an unwatched one does
        assert outcome.status == "failed" and "Training diverged" in outcome.error


@pytest.mark.slow  # a real (tiny) run through the worker's entry point, in this process
def test_a_plateau_rolls_a_worker_run_back_once_then_stops_it(tmp_path, tiny_bert,
                                                               sentiment_csv, store):
    from tests.support.tests_helpers import config_for, train_in_process

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=6)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, learning_rate=1e-12, eval_every=2,  # nothing learns: val_loss stands
        watch=WatchSpec(**{**OFF, "plateau": WatchRule(window=1, action="rollback")},
                        max_rollbacks=1)))
    run_id = train_in_process(cfg)
    run = store.get_run(run_id)
    events = [e.message for e in store.events(run_id)]
    plateau = [m for m in events if m.startswith("Plateau at step")]
    rolled = [m for m in events if m.startswith("Rolled back")]
    assert run.status == "stopped", events
    assert len(plateau) == 2 and len(rolled) == 1, events
    assert "Rolling back to a checkpoint at or before step 2 (action: rollback)" in plateau[0]
    assert rolled[0].startswith("Rolled back (plateau, 1 of 1): from step ")
    assert "to the checkpoint of step 2, learning rate 1e-12 -> 5e-13" in rolled[0]
    assert "The run stops here: train.watch.max_rollbacks (1) is spent." in plateau[1]
    # the replay superseded what the abandoned stretch logged: one reading per step
    steps = [s for s, _, name, _, _ in store.metric_rows(run_id) if name == "loss"]
    assert steps == sorted(set(steps)) and steps[0] == 1
