"""The rules of a run's life, written once for the CLI and the TUI: which status allows
stop, resume, delete and fork, and what a fork is called.

Plain Python over `store.Run` records (no store import: the store is handed in by
whoever holds one). The transitions themselves are atomic in the store; these checks
give the sentence a user sees when a command does not apply.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.core.config import MAX_NAME_CHARS, RunConfig, apply_overrides
from engine.core.errors import HubtuneError

STOPPABLE = frozenset({"queued", "running"})
RESUMABLE = frozenset({"stopped", "interrupted", "failed", "pruned"})
FINISHED = frozenset({"completed", "failed", "stopped", "interrupted", "pruned"})
FORK_SUFFIX = "-fork"


def check_stoppable(run: Any) -> None:
    if run.status not in STOPPABLE:
        raise HubtuneError(f"Run {run.id} is {run.status}; only a queued or running run can "
                           "be stopped.")


def stop_run(store: Any, run: Any) -> str:
    """Stop `run` by the rule for its state, returning what was done in a sentence: a
    run waiting in the queue leaves it (it ends `stopped` without starting); a running
    one, or one whose worker is starting, is asked to stop after its current step."""
    check_stoppable(run)
    if run.waiting and store.dequeue(run.id):
        return f"Removed run {run.id} from the queue."
    store.request_stop(run.id)  # also the case where it got slots a moment ago
    return f"Asked run {run.id} to stop."


def check_deletable(run: Any) -> None:
    if run.status == "running":
        raise HubtuneError(f"Run {run.id} is still running; stop it before deleting it.")


def check_resumable(run: Any) -> None:
    if run.status == "completed":
        raise HubtuneError(f"Run {run.id} already completed; fork it (hubtune runs fork "
                           f"{run.id}) to train more.")
    if run.status not in RESUMABLE:
        raise HubtuneError(f"Run {run.id} is {run.status}; only a stopped, interrupted or "
                           "failed run can be resumed.")


def fork_name(name: str) -> str:
    """`base` -> `base-fork`, one line and within the name limit whatever the parent's
    name holds (names recorded before they were checked may hold control characters)."""
    clean = "".join(c if c.isprintable() else " " for c in name).strip() or "run"
    return clean[: MAX_NAME_CHARS - len(FORK_SUFFIX)] + FORK_SUFFIX


def fork_config(run: Any, overrides: tuple[str, ...] | list[str] = ()) -> RunConfig:
    """The config of a fork of `run`: its own with `overrides` applied, named as a fork
    unless an override names it."""
    cfg = RunConfig.from_dict(apply_overrides(run.config, overrides))
    if cfg.name in ("", run.name, run.config.get("name")):
        cfg = dataclasses.replace(cfg, name=fork_name(run.name))
    return cfg
