"""trackio: its local SQLite store, written through trackio's own storage (the same
`SQLiteStorage.bulk_log` its `import_csv` and `import_tf_events` use, so every point keeps
its step and wall time, which `trackio.log` cannot set).

trackio keeps one data folder per process (`TRACKIO_DIR`, read when it is imported):
this adapter sets it to the folder given before the first import and refuses another
folder later in the same process. A replacing export deletes the run (by its title) and
writes it again; reporting live appends. Runs go to the project `hubtune`, the config
(with hubtune's lineage, tags, notes and environment under `hubtune`) is the run's
config, events a `hubtune-events` text file beside the project's database.

trackio (every release to 0.43.0) requires pillow < 13 while hubtune requires pillow >= 13,
so it is not an extra pip could install with hubtune: it is imported by name, and works
where the user installed it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from engine.share.trackers import PROJECT, Line, Point, RunInfo, TrackerError, log_text


def _storage(folder: Path):
    """trackio's storage class, its data folder being `folder`."""
    wanted = folder.resolve()
    if "trackio" not in sys.modules:
        os.environ["TRACKIO_DIR"] = str(wanted)
    try:
        utils = importlib.import_module("trackio.utils")
        storage = importlib.import_module("trackio.sqlite_storage")
    except ImportError:
        raise TrackerError("Reporting to trackio needs the trackio package, which is not "
                           "installed; install it with `pip install trackio`.") from None
    if Path(utils.TRACKIO_DIR).resolve() != wanted:
        raise TrackerError(f"trackio already writes to {utils.TRACKIO_DIR} in this process "
                           f"and cannot also write to {folder}; export to trackio from a "
                           "new command.")
    return storage.SQLiteStorage


class TrackioTracker:
    """Writes one run into trackio's local store."""

    name = "trackio"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._storage = None
        self._run: RunInfo | None = None
        self._config: dict | None = None
        self._lines: list[Line] = []

    def start(self, run: RunInfo, *, replace: bool, from_step: int | None = None) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackerError(f"trackio cannot write to {self.folder} ({exc.strerror}); "
                               "choose a folder you can write to.") from None
        self._storage = _storage(self.folder)
        self._run = run
        if replace and run.title in self._storage.get_runs(PROJECT):
            self._storage.delete_run(PROJECT, run.title)
        self._config = {**run.config, "hubtune": {
            **run.lineage(), "tags": list(run.tags), "notes": run.notes,
            "environment": run.env}}

    def scalars(self, points: Sequence[Point]) -> None:
        rows, steps, stamps = [], [], []
        for step, group in groupby(sorted(points, key=lambda p: p[0]), key=lambda p: p[0]):
            row = list(group)
            rows.append({name: value for _, name, value, _ in row})
            steps.append(step)
            stamps.append(datetime.fromtimestamp(max(w for *_, w in row), UTC).isoformat())
        if rows:
            self._storage.bulk_log(project=PROJECT, run=self._run.title, metrics_list=rows,
                                   steps=steps, timestamps=stamps, config=self._config)
            self._config = None  # written with the first rows

    def text(self, lines: Sequence[Line]) -> None:
        if lines:
            self._lines += lines
            (self.folder / f"{self._run.title}-events.txt").write_text(
                log_text(self._lines), encoding="utf-8")

    def rewind(self, step: int) -> None:
        """Nothing to undo: trackio has no way to drop points: the replay's are written beside the abandoned ones."""

    def finish(self, status: str) -> None:
        self._storage = None
