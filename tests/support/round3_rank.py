"""`python -m engine.launch.worker` under torchrun with one test fault and a record of each
rank's process group, for tests/reliability/test_round3_nodes.py.

HUBTUNE_TEST_OUT names a folder where each rank leaves `pg-rank<R>.json`: whether its
process group was up when the worker ended and whether it was destroyed. The fault is
chosen by HUBTUNE_TEST_FAULT:
  check-eval  every evaluation also runs the task's evaluation unsharded and sharded and
              leaves both (`eval-rank<R>-step<S>.json`); rank 1 alone believes early
              stopping is due (the run must go on: rank 0 decides)
  fewer-rows  rank 1 reads its own, shorter copy of the training file (HUBTUNE_TEST_DATA)
  stop        rank 0 is asked to stop once it has logged step 2
Everything else is the real worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

OUT = Path(os.environ.get("HUBTUNE_TEST_OUT", "."))
RANK = int(os.environ.get("RANK", "0"))


def record_process_group() -> None:
    import torch.distributed as dist

    import engine.cluster.rendezvous as rendezvous

    real = rendezvous.end_process_group

    def end_process_group() -> None:
        before = dist.is_initialized()
        real()
        (OUT / f"pg-rank{RANK}.json").write_text(json.dumps(
            {"was_up": before, "still_up": dist.is_initialized()}))

    rendezvous.end_process_group = end_process_group


def check_eval() -> None:
    from engine.tasks.eval_shards import sharded
    from engine.training.evaluation import Evaluation

    real = Evaluation.evaluate

    def evaluate(self) -> None:
        real(self)
        run = self.run
        model, calls = run.plain_model, []
        hook = model.register_forward_hook(lambda *_: calls.append(1))
        found = {}
        for mode in ("unsharded", "sharded"):
            calls.clear()
            world = 2 if mode == "sharded" else 1
            with sharded(run.accelerator.process_index, world):
                metrics = run.task.evaluate(model, run.data, run.processor, run.cfg,
                                            run.accelerator.device)
            examples = metrics.pop("examples")
            found[mode] = {"metrics": metrics, "rows": examples.rows(run.data.labels),
                           "batches": len(calls)}
        hook.remove()
        (OUT / f"eval-rank{RANK}-step{run.state.step}.json").write_text(json.dumps(found))
        if RANK == 1:  # this rank alone would stop; rank 0's word decides
            run.state.evals_without_gain = 99

    Evaluation.evaluate = evaluate


def fewer_rows() -> None:
    import engine.launch.worker
    from engine.core.config import RunConfig

    class ShortCopy(RunConfig):
        @classmethod
        def from_dict(cls, data):
            data = json.loads(json.dumps(data))
            data["data"]["train"] = os.environ["HUBTUNE_TEST_DATA"]
            return RunConfig.from_dict(data)

    engine.launch.worker.RunConfig = ShortCopy


def stop_at_step_2() -> None:
    from engine.training import loop

    real = loop.TrainingLoop._log

    def log(self):
        outcome = real(self)
        if self.run.state.step >= 2:
            self.run.stop.set()
        return outcome

    loop.TrainingLoop._log = log


if __name__ == "__main__":
    fault = os.environ["HUBTUNE_TEST_FAULT"]
    record_process_group()
    if fault == "check-eval":
        check_eval()
    elif fault == "fewer-rows" and RANK == 1:
        fewer_rows()
    elif fault == "stop" and RANK == 0:
        stop_at_step_2()
    from engine.launch.worker import main

    sys.exit(main())
