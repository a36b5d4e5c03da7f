"""Run the training loop under torchrun and leave each rank's parameters behind.

    python -m torch.distributed.run --standalone --nproc_per_node 2 dist_probe.py \
        CONFIG.json OUT_DIR RESULT_DIR [--stop-at STEP] [--resume CHECKPOINT]
        [--nan-once-at STEP]

Each rank trains through `engine.training.loop.TrainingLoop` exactly as the worker does
(without the store), then writes `RESULT_DIR/rank<R>.safetensors` (its model's
parameters) and, on rank 0, `RESULT_DIR/outcome.json` with the events it saw. With
`--stop-at`, rank 0 raises the stop flag once it has logged that step, as a
`runs stop` would. With `--nan-once-at`, rank 1's training loss is NaN at that step the
first time it is taken (not when a rollback replays it). Used by
tests/reliability/test_distributed.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("result_dir", type=Path)
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--nan-once-at", type=int)
    parser.add_argument("--eager-compile", action="store_true",
                        help="torch.compile with the eager backend: the same wrappers, no "
                             "C++ compiler run")
    args = parser.parse_args()
    if args.eager_compile:
        import functools

        import torch

        torch.compile = functools.partial(torch.compile, backend="eager")

    from safetensors.torch import save_file

    from engine.core.config import RunConfig
    from engine.core.events import Note, RolledBack, StepLogged
    from tests.support.tests_helpers import prepared_loop

    rank = int(os.environ.get("RANK", "0"))
    cfg = RunConfig.from_dict(json.loads(args.config.read_text()))
    stop = threading.Event()
    notes: list[str] = []

    def emit(event) -> None:
        if isinstance(event, (Note, RolledBack)):
            notes.append(event.message)
        if (isinstance(event, StepLogged) and args.stop_at is not None
                and event.step >= args.stop_at):
            stop.set()

    if args.nan_once_at is not None and rank == 1:
        _nan_once(args.nan_once_at)
    from engine.training.rollback import rollbacks_for

    loop = prepared_loop(cfg, emit, args.out_dir, stop=stop, resume_from=args.resume,
                         rollbacks=rollbacks_for(cfg))
    outcome = loop.train()
    args.result_dir.mkdir(parents=True, exist_ok=True)
    params = {k: v.detach().float().cpu().contiguous()
              for k, v in loop.run.plain_model.named_parameters()}
    save_file(params, str(args.result_dir / f"rank{rank}.safetensors"))
    if rank == 0:
        (args.result_dir / "outcome.json").write_text(json.dumps({
            "status": outcome.status, "error": outcome.error, "steps": loop.run.state.step,
            "notes": notes}))
    return 0


def _nan_once(at: int) -> None:
    """This rank's loss is NaN at optimizer step `at` + 1's batch, the first time only."""
    from engine.training.loop import TrainingLoop

    real, done = TrainingLoop._step, []

    def step(self, batch):
        loss, norm = real(self, batch)
        if self.run.state.step == at - 1 and not done:
            done.append(True)
            return loss * float("nan"), norm
        return loss, norm

    TrainingLoop._step = step


if __name__ == "__main__":
    sys.exit(main())
