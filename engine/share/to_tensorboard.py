"""TensorBoard: event files written by torch's `SummaryWriter` (the `tensorboard` extra).

Each run is a folder `ID-NAME` under the log folder, so `tensorboard --logdir FOLDER` shows
every run exported or reported there. Scalars keep their step and wall time; the config
is the run's hyperparameters (the HParams tab); tags, notes, lineage and environment are
texts under `hubtune/`; each event is a text under `events`. A replacing export first
removes the event files of that run's folder, which only TensorBoard writers put there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from engine.share.trackers import Line, Point, RunInfo, TrackerError, missing

EVENT_FILES = "events.out.tfevents.*"


class TensorBoardTracker:
    """Writes one run's folder of event files."""

    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writer = None
        self._logdir: Path | None = None
        self._lines: list = []
        """Event lines written so far; a line's index is its step in the text tab."""

    def start(self, run: RunInfo, *, replace: bool, from_step: int | None = None) -> None:
        try:
            import tensorboard  # noqa: F401  (torch's writer needs it; say so plainly)
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            raise missing(self.name, "tensorboard") from None
        logdir = self.folder / run.title
        if replace and logdir.is_dir():
            for old in logdir.glob(EVENT_FILES):
                old.unlink()
        try:
            # purge_step: TensorBoard hides what the folder holds from that step on, the
            # steps a resumed run replays.
            self._writer = SummaryWriter(log_dir=str(logdir), flush_secs=5, purge_step=from_step)
            self._logdir = logdir
            if from_step is None:  # see rewind: the first session's start, marked
                self._writer.file_writer.add_event(
                    Event(step=0, session_log=SessionLog(status=SessionLog.START)))
        except OSError as exc:
            raise TrackerError(f"TensorBoard cannot write to {logdir} ({exc.strerror}); "
                               "choose a folder you can write to.") from None
        for summary in hparams(run.params(), {}):
            self._writer.file_writer.add_summary(summary)
        texts = {"hubtune/notes": run.notes or "(none)",
                 "hubtune/tags": ", ".join(run.tags) or "(none)",
                 "hubtune/lineage": _code(run.lineage()),
                 "hubtune/environment": _code(run.env)}
        for tag, text in texts.items():
            self._writer.add_text(tag, text, 0)

    def scalars(self, points: Sequence[Point]) -> None:
        for step, name, value, when in points:
            self._writer.add_scalar(name, value, step, walltime=when)

    def text(self, lines: Sequence[Line]) -> None:
        for when, level, message in lines:
            self._writer.add_text("events", f"[{level}] {message}", len(self._lines),
                                  walltime=when)
            self._lines.append((when, level, message))

    def rewind(self, step: int) -> None:
        """Reopen the writer with TensorBoard's purge from `step` + 1 (a restart marker:
        what the folder holds at later steps is hidden), then write again the event lines
        that marker hides too, as the text tab numbers them by line. TensorBoard takes the
        first marker a folder holds for the run's beginning, so `start` writes one: without
        it the first resume's or rollback's marker would purge nothing."""
        from torch.utils.tensorboard import SummaryWriter

        self._writer.close()
        self._writer = SummaryWriter(log_dir=str(self._logdir), flush_secs=5,
                                     purge_step=step + 1)
        for index, (when, level, message) in enumerate(self._lines):
            if index > step:
                self._writer.add_text("events", f"[{level}] {message}", index, walltime=when)

    def finish(self, status: str) -> None:
        if self._writer is not None:
            self._writer.add_text("hubtune/status", status, 0)
            self._writer.close()
            self._writer = None


def _code(value: object) -> str:
    """A dict as indented JSON in a markdown code block (TensorBoard renders markdown)."""
    return "```\n" + json.dumps(value, indent=2, sort_keys=True, default=str) + "\n```"
