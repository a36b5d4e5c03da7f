"""Starting a run's worker process: alone, under torchrun, across nodes, or from the queue.

`start_run` records a run and spawns `python -m engine.launch.worker RUN_ID` in a new
session with its output in the run folder, so the starting process (CLI or TUI, perhaps
over SSH) can go away without touching training. A launch that fails after the run is
recorded leaves it `failed` with the reason, never `queued` for ever.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from engine.cluster.gpus import GpuMonitor, check_process_count
from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import HubtuneError
from store import RunStore, StoreError, run_dir


def start_run(
    store: RunStore,
    cfg: RunConfig,
    *,
    parent_id: int | None = None,
    tags: tuple[str, ...] = (),
    processes: int = 1,
    gpus: GpuMonitor | None = None,
    queue: bool = False,
    sweep_id: str | None = None,
    nodes: dict | None = None,
    trial: int | None = None,
) -> int:
    """Record a queued run and start its worker; returns the run id at once.

    With `processes` > 1 the worker runs under `torchrun` (data parallel over
    the GPUs, or over CPU processes with gloo); only rank 0 writes to the store.
    More processes than visible GPUs are refused before anything is recorded
    (`gpus` is the NVML reader that counts them; tests pass a fake).
    The run takes its slots (engine.runs.queue) so queued runs wait for it; with `queue`
    it joins the run queue instead and starts when enough slots are free.
    `nodes` (NodeSpec.to_dict() of node 0): the run trains on several machines, whose
    other nodes run `engine.launch.nodes` without a store (see there). `trial`: the number
    of the search trial (engine.runs.search) the run trains, for its worker to report to.
    """
    import yaml

    from engine.runs.queue import check_fits, slots_wanted, take_slots

    if processes < 1:
        raise HubtuneError(f"--processes must be 1 or more, got {processes}.")
    gpus = gpus or GpuMonitor()
    wanted = slots_wanted(processes, gpus)
    if queue:
        check_fits(wanted, gpus)
    else:
        check_process_count(processes, gpus)
    if parent_id is None and cfg.model.id.startswith("run:") and cfg.model.id[4:].isdigit():
        parent_id = int(cfg.model.id[4:])  # sequential fine-tuning: lineage kept
        try:
            store.get_run(parent_id)
        except StoreError:
            raise HubtuneError(f"model.id {cfg.model.id} names no recorded run; "
                               "`hubtune runs ls` lists them.") from None
    run_id = store.create_run(
        cfg.to_dict(),
        name=cfg.name or None,
        model_id=cfg.model.id,
        task=cfg.head.task,
        dataset=cfg.data.train if is_hub_data(cfg.data.train) else Path(cfg.data.train).name,
        parent_id=parent_id,
        tags=tags,
        queue_slots=wanted if queue else None,
        sweep_id=sweep_id,
    )
    lease = store.get_run(run_id).lease
    if not is_hub_data(cfg.data.train):
        from engine.data.provenance import audit_sentence

        cleaned = audit_sentence(cfg.resolve(cfg.data.train))
        if cleaned:  # the run says which audit its data came from
            store.add_event(run_id, cleaned, "info", lease=lease)
    try:  # from here on a failure must not leave the run `queued` for ever
        folder = run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        # the cwd too: a queued run is launched later, perhaps by another run's worker
        (folder / LAUNCH_FILE).write_text(json.dumps({
            "processes": processes, "cwd": os.getcwd(), **({"nodes": nodes} if nodes else {}),
            **({"trial": trial} if trial is not None else {})}))
        if queue:
            start_queued(store, monitor=gpus)
            return run_id
        devices = take_slots(store, run_id, wanted, monitor=gpus)
        spawn_worker(store, run_id, lease, resume=False, devices=devices,
               keep_cuda=os.environ.get("CUDA_VISIBLE_DEVICES") is not None)
    except BaseException as exc:
        launch_failed(store, run_id, lease, exc)
        raise
    return run_id


def launch_failed(store: RunStore, run_id: int, lease: str, exc: BaseException) -> None:
    """A launch that failed after the run was recorded (or requeued for a resume): the
    run ends `failed` with the reason instead of waiting `queued` for a worker that never
    comes (a failed run keeps its checkpoints and can be resumed), and the slots it held
    go to the queue. Whatever happens here, the caller re-raises the original error."""
    try:
        if store.fail_launch(run_id, lease, launch_failure(exc)):
            start_queued(store)
    except Exception:  # the store itself may be what failed: the original error,
        pass  # re-raised by the caller, is the one sentence the user gets


def launch_failure(exc: BaseException) -> str:
    """A failed launch's reason as one sentence for the run's record."""
    if isinstance(exc, (HubtuneError, StoreError)):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "The start was interrupted before the run's worker process began."
    if isinstance(exc, OSError):
        return (f"The run's worker process could not be started ({exc.strerror or exc}); "
                "resume the run once that is fixed.")
    return f"Internal error while starting the run ({type(exc).__name__}: {exc})."


def start_queued(store: RunStore, *, monitor: GpuMonitor | None = None,
                 releasing: tuple[str, ...] = ()) -> list[int]:
    """Start the queued runs that fit the free slots now; returns their ids.

    No babysitter: called by `train --queue`, by the queue commands, by a worker whose
    run ends (`releasing` its slots) and whenever dead workers are reaped. Safe to call
    from any number of processes at once (engine.runs.queue.assign_waiting).
    """
    from engine.runs.queue import assign_waiting

    if not store.has_waiting():
        return []
    store.reap_interrupted()  # a killed worker's slots come back
    started: list[int] = []
    while True:
        freed = False
        for a in assign_waiting(store, monitor=monitor, releasing=releasing):
            try:
                spawn_worker(store, a.run_id, a.lease or "", resume=False, devices=a.devices)
                started.append(a.run_id)
            except Exception as exc:  # deleted meanwhile, its folder unwritable, no fork
                store.fail_launch(a.run_id, a.lease or "", launch_failure(exc))
                freed = True
        # A run that could not start (or was deleted after it was given its slots) gave
        # them back: the next in line gets them now, not at the next run's end. Each
        # round ends at least one waiting run, so this stops.
        if not freed:
            return started


def queue_sweep(store: RunStore, configs: list[RunConfig], *, processes: int = 1,
                gpus: GpuMonitor | None = None) -> tuple[str, list[int]]:
    """Queue one run per config, all sharing a new sweep id; returns (sweep id, run ids)."""
    from engine.runs.sweep import new_sweep_id

    sweep_id = new_sweep_id()
    ids = [start_run(store, cfg, processes=processes, gpus=gpus, queue=True,
                     sweep_id=sweep_id) for cfg in configs]
    return sweep_id, ids


LAUNCH_FILE = "launch.json"
"""How the run's worker is launched (its process count), so a resume launches it the same way."""


def worker_command(run_id: int, db_file: Path, lease: str, *, resume: bool,
                   checkpoint: str | None = None, folder: Path | None = None) -> list[str]:
    """The worker's command line: plain Python, or torchrun for several processes
    (`folder`: the run's, where its launch file is; by default this home's)."""
    processes = launch_processes(run_id, folder)
    worker = ["-m", "engine.launch.worker", str(run_id), str(db_file), "--lease", lease,
              *(["--resume"] if resume else []),
              *(["--checkpoint", checkpoint] if checkpoint else [])]
    if processes == 1 and launch_nodes(run_id, folder) is None:
        return [sys.executable, *worker]
    # engine.launch.nodes runs torchrun and stays its parent: it reads torchrun's verdict on a rank
    # killed by a signal (the kernel's OOM killer), which no rank lives to record.
    return [sys.executable, "-m", "engine.launch.nodes", "launch", *worker[2:]]


def launch_nodes(run_id: int, folder: Path | None = None) -> dict | None:
    """How run `run_id` meets its other machines (engine.cluster.rendezvous.NodeSpec as a
    dict), or None for a run on one machine."""
    launch = (folder or run_dir(run_id)) / LAUNCH_FILE
    return json.loads(launch.read_text()).get("nodes") if launch.is_file() else None


def launch_trial(run_id: int, folder: Path | None = None) -> int | None:
    """The search trial run `run_id` trains (engine.runs.search), or None."""
    launch = (folder or run_dir(run_id)) / LAUNCH_FILE
    trial = json.loads(launch.read_text()).get("trial") if launch.is_file() else None
    return trial if isinstance(trial, int) else None


def launch_processes(run_id: int, folder: Path | None = None) -> int:
    """The process count run `run_id` was launched with (1 for a run from before)."""
    launch = (folder or run_dir(run_id)) / LAUNCH_FILE
    return json.loads(launch.read_text())["processes"] if launch.is_file() else 1


def _launch_cwd(folder: Path) -> str:
    """The folder the run was recorded from (its worker starts there), if it still is."""
    launch = folder / LAUNCH_FILE
    try:
        cwd = json.loads(launch.read_text()).get("cwd")
    except (OSError, ValueError):
        cwd = None
    return cwd if isinstance(cwd, str) and os.path.isdir(cwd) else os.getcwd()


popen = subprocess.Popen
"""How the worker's process is started. The test suite forks workers from a process that
has imported torch once (tests/support/warm_worker.py) instead of paying for it per run."""


TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                      "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE",
                      "MASTER_ADDR", "MASTER_PORT")
"""Set in a rank's environment by torchrun: a run launched by a rank's worker (the queue
moving on) must not inherit them, or it takes itself for a rank of that run."""


def worker_environment(base, devices: tuple[str, ...] = (), *, keep_cuda: bool = False) -> dict:
    """A worker's environment: `base` without a launching rank's torchrun variables, with
    the GPUs the run holds, or (`keep_cuda`) the CUDA_VISIBLE_DEVICES the user set, read
    in PCI bus order as nvidia-smi numbers the GPUs (CUDA's own order puts the fastest
    first, so "1" could name another card)."""
    from engine.runs.queue import cuda_environment

    env = {k: v for k, v in base.items()
           if k not in TORCHRUN_VARIABLES and not k.startswith("TORCHELASTIC_")}
    if not keep_cuda:  # the GPUs the run holds, not those of whoever launches it
        env.update(cuda_environment(devices))
    elif env.get("CUDA_VISIBLE_DEVICES"):
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


def spawn_worker(store: RunStore, run_id: int, lease: str, *, resume: bool,
           checkpoint: str | None = None, devices: tuple[str, ...] = (),
           keep_cuda: bool = False) -> None:
    # Absolute: the worker starts in the run's launch folder, where a relative
    # HUBTUNE_HOME would name another (new, empty) database.
    home = (store.recorded_home(run_id) or store.path.parent).absolute()
    folder = home / "runs" / str(run_id)
    env = worker_environment(os.environ, devices, keep_cuda=keep_cuda)
    # The worker opens the same database, and finds the run's files under the home they
    # were recorded in: another home may share this database through a symlink.
    env["HUBTUNE_HOME"] = str(home)
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        log = open(folder / "worker.log", "ab")
    except FileNotFoundError:
        raise HubtuneError(f"Run {run_id} was deleted while it was being started.") from None
    except OSError as exc:
        raise HubtuneError(f"Cannot write the worker log in {folder} ({exc.strerror}); "
                           "check that HUBTUNE_HOME is a writable folder.") from None
    with log:
        proc = popen(
            worker_command(run_id, store.path.absolute(), lease, resume=resume,
                           checkpoint=checkpoint, folder=folder),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a dropped SSH session's SIGHUP never reaches it
            env=env,
            cwd=_launch_cwd(folder),
        )
    store.set_pid(run_id, proc.pid, lease)  # False if the worker already claimed the run


def queue_trials(store: RunStore, spec, *, gpus: GpuMonitor | None = None) -> list[int]:
    """Queue the search's next trials (engine.runs.search), as many as its places allow:
    called when the search starts, and by each trial's worker as its run ends. A trial
    whose settings make no valid config is told failed, and the next one asked."""
    from engine.core.config import MAX_NAME_CHARS, apply_overrides
    from engine.core.errors import ConfigError
    from engine.runs.search import ask, bind, locked, tell

    queued: list[int] = []
    # Held throughout: two workers ending at once would otherwise both count the places
    # free, and one would settle as dead the trial the other has asked but not yet bound.
    with locked(spec.sweep_id):
        settle_trials(store, spec)
        for _ in range(spec.trials):  # each round asks at least one trial, or ends
            active = [r for r in store.list_runs(sweep=spec.sweep_id, limit=None)
                      if r.status in ("queued", "running")]
            trials = ask(spec, len(active))
            if not trials:
                return queued
            for trial in trials:
                try:
                    cfg = RunConfig.from_dict(apply_overrides(spec.base, trial.overrides))
                except ConfigError:
                    tell(spec, trial.number, "failed", None)
                    continue
                suffix = f"-t{trial.number}"
                cfg = dataclasses.replace(cfg, name=spec.name[: MAX_NAME_CHARS - len(suffix)]
                                          + suffix)
                run_id = start_run(store, cfg, processes=spec.processes, gpus=gpus,
                                   queue=True, sweep_id=spec.sweep_id, trial=trial.number)
                bind(spec, trial.number, run_id)
                queued.append(run_id)
    return queued


def settle_trials(store: RunStore, spec) -> None:
    """Trials the study still counts as running whose runs have ended without telling it
    (a worker killed outright, a run deleted, a reboot) are told now, so their places go
    to new trials: the result of the model the run keeps, else failed."""
    from engine.runs.search import running_trials, tell
    from store.records import kept_metrics

    for number, run_id in running_trials(spec).items():
        try:
            run = store.get_run(run_id) if run_id is not None else None
        except StoreError:
            run = None  # deleted
        if run is not None and run.status in ("queued", "running"):
            continue
        value = (kept_metrics(run.summary)[1].get(spec.metric)
                 if run is not None and run.summary else None)
        tell(spec, number, run.status if run is not None else "failed", value)
