"""`python -m engine.launch.worker` with a fault injected into rank 1 only, for the tests that
prove a failure on one rank ends the whole run with its reason.

The fault is chosen by HUBTUNE_TEST_FAULT:
  oom-eval  rank 1 runs out of GPU memory in its first evaluation
  nan-loss  rank 1's training loss is NaN from its third step (rank 0's stays finite)
Everything else is the real worker under torchrun. Used by tests/reliability/test_distributed.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def inject(fault: str) -> None:
    import torch

    import engine.tasks
    from engine.training import loop

    if fault == "oom-eval":
        real = engine.tasks.task_for

        def task_for(name):
            task = real(name)

            def evaluate(*args, **kwargs):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

            task.evaluate = evaluate
            return task

        engine.tasks.task_for = task_for
    elif fault == "nan-loss":
        real_step = loop.TrainingLoop._step

        def step(self, batch):
            loss, norm = real_step(self, batch)
            return (loss * float("nan") if self.run.state.step >= 2 else loss), norm

        loop.TrainingLoop._step = step
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    if os.environ.get("RANK") == "1":
        inject(os.environ["HUBTUNE_TEST_FAULT"])
    from engine.launch.worker import main

    sys.exit(main())
