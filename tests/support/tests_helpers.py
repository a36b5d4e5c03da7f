"""Helpers the tests import by name (kept out of conftest to stay importable)."""

from __future__ import annotations

from pathlib import Path

from engine.core.config import RunConfig


def config_for(tmp_path: Path, model: Path, data: Path, *, epochs: float = 1,
               max_steps: int | None = None, **data_keys) -> RunConfig:
    data_cfg = {"train": str(data), "validation_split": 0.25, "max_length": 32}
    data_cfg.update(data_keys)
    return RunConfig.from_dict({
        "name": "t",
        "model": {"id": str(model)},
        "data": data_cfg,
        "train": {"epochs": epochs, "max_steps": max_steps, "batch_size": 16,
                  "learning_rate": 3e-3, "log_every": 1, "seed": 0},
        "base_dir": str(tmp_path),
    })


def train_in_process(cfg: RunConfig, dataset: str = "data") -> int:
    """Record a run and train it through the worker's entry point in this process (no
    process start-up); the signal handlers the worker installs are put back after."""
    import signal

    from engine.launch.worker import run_worker
    from store import RunStore

    store = RunStore()
    run_id = store.create_run(cfg.to_dict(), name=cfg.name, model_id=cfg.model.id,
                              task=cfg.head.task, dataset=dataset)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = run_worker(run_id, store.path, store.get_run(run_id).lease)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert code == 0, store.get_run(run_id).error
    store.close()
    return run_id


def prepared_loop(cfg: RunConfig, emit=None, out_dir: Path | None = None, *, stop=None,
                  resume_from: Path | None = None, rollbacks=None, setup=None):
    """The training loop of `cfg` prepared as `engine.training.loop.train` prepares it
    (RunSetup, then TrainingLoop), for tests that reach into a run before or while it
    steps; `setup` replaces the RunSetup built from the other arguments."""
    import threading

    from engine.training.loop import TrainingLoop
    from engine.training.setup import RunSetup

    if setup is None:
        setup = RunSetup(cfg, emit or (lambda e: None), stop or threading.Event(), out_dir)
    return TrainingLoop(setup.prepare(resume_from), rollbacks)
