"""Gradual unfreezing as a run goes: open the freezing plan's next stage when the run
reaches it, and wrap the model for data parallel again so the newly opened parameters'
gradients are averaged too.

Setup opens the stage a resumed run is at, the loop follows the plan as it steps, and a
rollback goes back to the stage of the restored step. Never touches the store.
"""

from __future__ import annotations

from engine.core.events import Note
from engine.training.compat import release_ddp_hooks, replace_prepared_model


class Unfreezing:
    """The freezing plan (engine.modeling.freeze.plan_freeze) and the stage now open."""

    def __init__(self, plan) -> None:
        self.plan = plan
        self.stage = 0
        """The plan's stage the model's trainable parameters follow now."""

    def follow(self, run) -> None:
        """Open the stage the run's position (`run.state`) has reached, if it is another."""
        from engine.modeling.freeze import apply_freeze

        plan = self.plan
        stage = plan.stage_at(run.state.epoch, run.state.step)
        if stage == self.stage:
            return
        apply_freeze(run.full_model, plan, stage)
        rewrap(run.accelerator, run)
        opened = [g for (g, t, _), (_, t0, _) in zip(
            plan.group_rows(plan.schedule[stage]),
            plan.group_rows(plan.schedule[self.stage]), strict=True) if t and not t0]
        count = sum(p.numel() for p in run.full_model.parameters() if p.requires_grad)
        run.emit(Note(f"Gradual unfreezing, stage {stage}: {', '.join(opened)} open; "
                      f"{count:,} parameters train"))
        self.stage = stage


def rewrap(accelerator, run) -> None:
    """Wrap `run.model` for data parallel again after its trainable parameters changed.

    DistributedDataParallel averages the gradients of the parameters that needed them
    when it wrapped the model, and of no others: a parameter gradual unfreezing opens
    later would train on each rank's own gradient, and the ranks' models would drift
    apart without a word. The new wrapper takes the same settings; the old one's
    gradient hooks go with it.
    """
    from torch.nn.parallel import DistributedDataParallel

    old = run.model
    if not isinstance(old, DistributedDataParallel):
        return
    release_ddp_hooks(old)
    run.model = DistributedDataParallel(
        old.module, device_ids=old.device_ids, output_device=old.output_device,
        broadcast_buffers=old.broadcast_buffers,
        find_unused_parameters=old.find_unused_parameters,
        gradient_as_bucket_view=old.gradient_as_bucket_view)
    # accelerate keeps the models it prepared (for unwrap and save_state): the new wrapper
    # replaces the old one there too.
    replace_prepared_model(accelerator, old, run.model)
