"""The new-run form's data audit (#34): run `data audit` on the form's config, show the
likely label errors with their text (or image path), let the user drop or relabel a few
by hand, and write the cleaned copy the form then trains on.

The audit imports torch and transformers, so it queues on the app's engine thread
(tui/engine_thread.py) and reports through coalescing `Progressed` messages to a
progress bar; Stop sets the event the engine checks between batches and folds. Hand
fixes are kept as marks of the training data (engine/audit/marks.py), the same ones a
completed run's errors view makes, so both feed one cleaned copy. Writing the copy is
file work in a thread worker (`@background`); the form's training-data field then
names the copy (the pane sits in the new-run screen and reads the `config` it holds,
so the screen needs no code of its own for the audit). Suspects' text is the data's
own: Text cells, never markup, controls escaped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, ProgressBar, Static

from tui.background import background
from tui.formatting import cell, literal

SHOWN = 50
"""Suspects listed (the worst first); the cleaned copy's automatic drops cover the rest."""


def fix_text(fix) -> str:
    return "" if fix is False else "drop" if fix is None else f"→ {fix}"


class AuditPane(Vertical):
    BINDINGS = [
        Binding("d", "drop", "Drop row"),
        Binding("r", "relabel", "Relabel"),
        Binding("k", "keep", "Keep row"),
    ]

    @dataclass
    class Progressed(Message):
        progress: object
        """engine.audit.run.AuditProgress."""

        def can_replace(self, other: Message) -> bool:
            return isinstance(other, AuditPane.Progressed)

    @dataclass
    class Finished(Message):
        cfg: object
        report: object | None
        texts: dict = field(default_factory=dict)
        """Row -> the suspect's text or image path."""
        marks: dict = field(default_factory=dict)
        error: str | None = None

    @dataclass
    class CleanedCopyWritten(Message):
        """The cleaned copy is on disk; the form's training data becomes it."""

        path: str
        dropped: int
        relabelled: int
        kept: int

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cfg = None
        """The config the last audit ran on."""
        self.report = None
        """Its engine.audit.run.AuditReport."""
        self.marks: dict[int, str | None] = {}
        self._stop: threading.Event | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="audit-buttons"):
            yield Button("Audit data", id="audit-start", compact=True)
            yield Button("Stop", id="audit-stop", compact=True, classes="-hidden")
            yield Button("Train on cleaned copy", id="audit-clean", compact=True,
                         disabled=True)
        yield ProgressBar(id="audit-progress", show_eta=False, classes="-hidden")
        yield Static("Audit: likely label errors, duplicates and leaks.",
                     id="audit-summary")
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True,
                        classes="-hidden")

    @property
    def running(self) -> bool:
        return self._stop is not None

    @on(Button.Pressed, "#audit-start")
    def audit_form(self) -> None:
        """Audit the config the new-run form holds, once it is valid and its data read
        (the screen's `config` and `data.ok`, tui/screens/new_run.py)."""
        screen = self.screen
        data = getattr(screen, "data", None)
        self.start(getattr(screen, "config", None) if data is not None and data.ok else None)

    def reveal_and_start(self) -> None:
        """F4 on the new-run screen: the pane into view, then what Audit data does."""
        self.scroll_visible(top=True, animate=False)
        self.audit_form()

    @on(Button.Pressed, "#audit-stop")
    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self.query_one("#audit-summary", Static).update("Stopping the audit…")

    def start(self, cfg) -> None:
        """Audit `cfg`'s data on the engine thread (None: the form is not ready)."""
        if self.running:
            return
        if cfg is None:
            self.notify("Fill the form (model, task, training data) before auditing.",
                        severity="warning")
            return
        stop = self._stop = threading.Event()
        self.query_one("#audit-stop").remove_class("-hidden")
        self.query_one("#audit-start", Button).disabled = True
        bar = self.query_one("#audit-progress", ProgressBar)
        bar.remove_class("-hidden")
        bar.update(total=None, progress=0)
        self.query_one("#audit-summary", Static).update("Auditing: loading the model…")
        self.app.engine.submit(lambda: self._audit(cfg, stop), to=self)

    def _audit(self, cfg, stop: threading.Event) -> Message:
        """On the engine thread: the audit, then the suspects' inputs and the marks."""
        from engine.audit.marks import load_marks
        from engine.audit.run import audit, read_split
        from tui.background import failure_sentence

        try:
            report = audit(cfg, progress=lambda p: self.post_message(self.Progressed(p)),
                           stop=stop)
            rows = {i["row"] for i in report.label_issues[:SHOWN]}
            if report.kind == "image":
                texts = {i["row"]: i.get("path", "") for i in report.label_issues}
            else:
                split = read_split(cfg, "train", cfg.data.train,
                                   multi=report.kind == "multi-label")
                texts = {r: t for r, t in zip(split.rows, split.inputs, strict=True)
                         if r in rows}
            return self.Finished(cfg, report, texts, load_marks(cfg))
        except Exception as exc:  # stopped, unreadable data, or a bug: one sentence, and
            # the pane leaves its running state whatever happened
            return self.Finished(cfg, None, error=failure_sentence(exc, "auditing the data"))

    def on_audit_pane_progressed(self, msg: Progressed) -> None:
        p = msg.progress
        self.query_one("#audit-progress", ProgressBar).update(total=max(p.total, 1),
                                                              progress=p.done)
        self.query_one("#audit-summary", Static).update(
            f"Auditing: {literal(p.what, 80)} ({p.done:,}/{p.total:,}) · Stop ends it")

    def on_audit_pane_finished(self, msg: Finished) -> None:
        self._stop = None
        self.query_one("#audit-stop").add_class("-hidden")
        self.query_one("#audit-start", Button).disabled = False
        self.query_one("#audit-progress").add_class("-hidden")
        summary = self.query_one("#audit-summary", Static)
        if msg.error is not None:
            summary.update(f"[$warning]{literal(msg.error, 500)}[/]")
            return
        self.cfg, self.report, self.marks = msg.cfg, msg.report, dict(msg.marks)
        r = msg.report
        summary.update(
            f"{len(r.label_issues)} likely label errors, {len(r.duplicates)} duplicate "
            f"groups, {len(r.leaks)} leaks, {len(r.degenerate) + len(r.unreadable)} unusable "
            f"inputs. On a row: d drops, r takes the suggested label, k keeps. Duplicates, "
            f"leaks and unusable inputs are dropped from the cleaned copy.")
        table = self.query_one("#audit-table", DataTable)
        table.clear(columns=True)
        table.add_columns("row", "label", "suggested", "conf", "fix",
                          "image" if r.kind == "image" else "text")
        for issue in r.label_issues[:SHOWN]:
            row = issue["row"]
            table.add_row(cell(str(row)), cell(issue["label"]), cell(issue["suggested"]),
                          cell(f"{issue['confidence']:.2f}"),
                          cell(fix_text(self.marks.get(row, False))),
                          cell(msg.texts.get(row, "")[:120]), key=str(row))
        table.set_class(not r.label_issues, "-hidden")
        self.query_one("#audit-clean", Button).disabled = False

    # -- fixes by hand ------------------------------------------------------

    def _current(self) -> dict | None:
        table = self.query_one("#audit-table", DataTable)
        if self.report is None or table.has_class("-hidden") or not table.row_count:
            return None
        return self.report.label_issues[table.cursor_row]

    def _fix(self, fix) -> None:
        """Mark the highlighted suspect: None drops it, a label relabels it, False keeps it."""
        from engine.audit.marks import mark, unmark

        issue = self._current()
        if issue is None:
            return
        row = issue["row"]
        self.marks = unmark(self.cfg, row) if fix is False else mark(self.cfg, row, fix)
        table = self.query_one("#audit-table", DataTable)
        table.update_cell(str(row), table.ordered_columns[4].key, cell(fix_text(fix)))
        table.action_cursor_down()

    def action_drop(self) -> None:
        self._fix(None)

    def action_relabel(self) -> None:
        issue = self._current()
        if issue is not None and issue["suggested"]:
            self._fix(issue["suggested"])

    def action_keep(self) -> None:
        self._fix(False)

    # -- the cleaned copy ---------------------------------------------------

    @on(Button.Pressed, "#audit-clean")
    def write_copy(self) -> None:
        if self.report is not None:
            self.query_one("#audit-clean", Button).disabled = True
            self._write(self.cfg, self.report, dict(self.marks))

    @background(what="writing the cleaned copy", group="audit-clean", failed="_not_written")
    def _write(self, cfg, report, marks: dict) -> None:
        from engine.audit.clean import write_clean

        cleaned = write_clean(cfg, report, cleaned_target(cfg, report), choices=marks)
        self.post_message(self.CleanedCopyWritten(str(cleaned.path), cleaned.dropped,
                                                  cleaned.relabelled, cleaned.kept))

    def _not_written(self, sentence: str) -> None:
        self.query_one("#audit-clean", Button).disabled = False

    def on_audit_pane_cleaned_copy_written(self, msg: CleanedCopyWritten) -> None:
        """Train on the copy: the form's training-data field names it (and the form
        previews and checks it as any file typed there)."""
        from textual.widgets import Input

        self.screen.query_one("#f-train-file", Input).value = msg.path
        self.query_one("#audit-clean", Button).disabled = False
        self.query_one("#audit-summary", Static).update(
            f"Training on the cleaned copy: {msg.kept:,} rows ({msg.dropped} dropped, "
            f"{msg.relabelled} relabelled), {literal(msg.path, 200)}")


def cleaned_target(cfg, report):
    """A new file in hubtune's data folder for a cleaned copy of `cfg`'s training data: the
    input's format for a file, a CSV of paths for an image folder, Parquet for hf: data."""
    import time
    from pathlib import Path

    from engine.core.config import is_hub_data
    from store.paths import data_dir

    train = cfg.data.train
    if is_hub_data(train):
        stem, suffix = train.removeprefix("hf:").replace("/", "-").replace(":", "-"), ".parquet"
    else:
        source = cfg.resolve(train)
        stem = source.stem
        suffix = ".csv" if source.is_dir() else source.suffix
    folder = data_dir() / "audit" / "cleaned"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"{stem}-clean-{stamp}{suffix}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{stem}-clean-{stamp}-{n}{suffix}"
    return Path(target)
