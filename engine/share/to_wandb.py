"""Weights & Biases: an offline run directory written by `wandb` itself (the `wandb` extra),
which `wandb sync FOLDER/wandb/offline-run-*` uploads later. Never online, never a login.

The W&B run id is the hubtune run's key, so a synced export lands on one W&B run; a
replacing export removes the offline directories W&B made for that id before writing
again. Scalars are logged one step at a time with their wall time (`_timestamp`), the
config is the run's config (with hubtune's lineage and environment under `hubtune`),
tags, notes and the sweep (as the group) are W&B's own; events go to `hubtune-events.txt`
among the run's files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

from engine.share.trackers import PROJECT, Line, Point, RunInfo, TrackerError, log_text, missing

MAX_TAG_CHARS = 64
"""W&B refuses longer tags."""


class WandbTracker:
    """Writes one run's offline W&B directory under `FOLDER/wandb`."""

    name = "wandb"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._run = None
        self._wandb = None
        self._lines: list[Line] = []

    def start(self, run: RunInfo, *, replace: bool, from_step: int | None = None) -> None:
        try:
            import wandb
        except ImportError:
            raise missing(self.name, "wandb") from None
        if replace:
            for old in (self.folder / "wandb").glob(f"offline-run-*-{run.key}"):
                shutil.rmtree(old)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackerError(f"W&B cannot write to {self.folder} ({exc.strerror}); "
                               "choose a folder you can write to.") from None
        self._wandb = wandb
        settings = wandb.Settings(
            mode="offline", silent=True, console="off",  # never wrap the worker's output
            x_disable_stats=True,  # no sampling thread beside training
            disable_git=True, save_code=False)
        config = {**run.config, "hubtune": {**run.lineage(), "environment": run.env}}
        self._run = wandb.init(
            dir=str(self.folder), project=PROJECT, id=run.key, name=run.title,
            notes=run.notes or None, tags=[t[:MAX_TAG_CHARS] for t in run.tags] or None,
            group=run.sweep_id, config=config, resume=None if replace else "allow",
            settings=settings, reinit="create_new")
        (Path(self._run.dir) / "hubtune-environment.json").write_text(
            json.dumps(run.env, indent=2, sort_keys=True, default=str), encoding="utf-8")

    def scalars(self, points: Sequence[Point]) -> None:
        # W&B takes each step once, in order: one row per step with every metric of it.
        for step, group in groupby(sorted(points, key=lambda p: p[0]), key=lambda p: p[0]):
            row = list(group)
            self._run.log({**{name: value for _, name, value, _ in row},
                           "_timestamp": max(when for *_, when in row)}, step=step)

    def text(self, lines: Sequence[Line]) -> None:
        if lines:
            self._lines += lines
            (Path(self._run.dir) / "hubtune-events.txt").write_text(log_text(self._lines),
                                                                    encoding="utf-8")

    def rewind(self, step: int) -> None:
        """Nothing to undo: W&B takes steps in order only: the abandoned stretch stays and the replay shows from past its last step."""

    def finish(self, status: str) -> None:
        if self._run is not None:
            self._run.summary["hubtune_status"] = status
            self._run.finish(exit_code=1 if status == "failed" else 0)
            self._run = None
            # finish() returns before W&B's service has written the whole transaction log;
            # teardown waits for it (and stops the service), so the run is complete on disk.
            self._wandb.teardown()
