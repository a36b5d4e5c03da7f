"""What a training run writes under its folder: a checkpoint at a step (with its
`CheckpointSaved` event and the pruning of old ones), and the final model.

The file format is engine.training.checkpoint's. With several processes every rank hands
rank 0 its random states and rank 0 alone writes. A run without a folder (`out_dir`
None) writes nothing. Never touches the store: the event carries the checkpoint to it.
"""

from __future__ import annotations

from engine.core.events import CheckpointSaved
from engine.training.checkpoint import prune_checkpoints, rank_rng_state, save_checkpoint


class Checkpoints:
    """The checkpoints of one prepared run (engine.training.prepared)."""

    def __init__(self, run) -> None:
        self.run = run

    def save(self, metric: float | None) -> None:
        """Rank 0 writes the checkpoint of the run's step; with several processes every
        rank first hands it its RNG states (a collective: every rank calls this at the
        same step). `metric` is the watched metric's last value, for the event."""
        run = self.run
        if run.out_dir is None:
            return
        acc, ranks = run.accelerator, None
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            ranks = gather_object([rank_rng_state()])
        if acc.is_main_process:
            self._write(ranks, metric)
        if acc.num_processes > 1:
            # The other ranks wait here, not in the next step's all-reduce, while rank 0
            # writes and the store commits (within the raised process-group timeout).
            acc.wait_for_everyone()

    def _write(self, ranks, metric: float | None) -> None:
        run = self.run
        st = run.state
        folder = save_checkpoint(run.out_dir / "checkpoints" / f"step-{st.step}",
                                 run.plain_model, run.optimizer, run.scheduler, st,
                                 scaler=run.accelerator.scaler, ranks=ranks)
        run.emit(CheckpointSaved(step=st.step, path=str(folder), metric=metric,
                                 is_best=st.best_step == st.step))
        # Only after the new one is recorded: until then the previous one is the resume point.
        prune_checkpoints(run.out_dir, run.cfg.train.keep_checkpoints,
                          protect=st.best_step if st.best_metric is not None else None)


def save_final(run) -> None:
    """The trained model, with LoRA folded in, as `out_dir/model`."""
    model = run.full_model  # on cached features run.model is only the head
    if run.cfg.freeze.lora is not None:
        from engine.modeling.freeze import merge_lora

        # The run is over: fold the adapters in place on the CPU rather than copy
        # the model on the GPU (twice the memory of the model at the very end).
        model = merge_lora(model.cpu())
    run.task.save(model, run.processor, run.data, run.cfg, run.out_dir / "model")
