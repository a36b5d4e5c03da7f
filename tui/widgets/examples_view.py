"""The compare screen's examples view: the validation examples two runs predict
differently, each run's prediction, and which one is right (`hubtune runs compare A B
--examples` in the TUI).

The examples are read on the app's engine thread (`read_disagreements`, one job, its
own store connection): each input is re-read from the run's data files, which may take
a moment for a big file. Inputs, labels and predictions are the user's data: shown as
Text, never markup.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui.formatting import cell, plain
from tui.messages import ExamplesCompared

LABEL_CHARS = 16
"""The label and prediction columns at most; longer labels end in an ellipsis."""
INPUT_CHARS = (20, 120)
"""The input column: at least, and at most (the whole input shows below the table)."""


def read_disagreements(store_path: Path, ids: tuple[int, int]) -> ExamplesCompared:
    """On the engine thread: where runs `ids` disagree, or the sentence saying why that
    cannot be told (another task or data, no per-example results, data files changed)."""
    from engine.core.config import RunConfig
    from engine.core.errors import HubtuneError
    from engine.trained.review import as_trained, check_reviewable, disagreements, same_validation
    from store import RunStore, StoreError

    store = RunStore(store_path)  # a connection of this thread's own
    try:
        configs = []
        for run_id in ids:
            run = store.get_run(run_id)
            try:
                cfg = RunConfig.from_dict(run.config)
            except HubtuneError as exc:
                return ExamplesCompared(ids, None, error=f"Run {run_id}'s config does not "
                                                         f"load: {exc}")
            check_reviewable(cfg.head.task)
            if store.prediction_set(run_id) is None:
                return ExamplesCompared(ids, None, error=(
                    f"Run {run_id} has no per-example results: it never finished an "
                    "evaluation, or it trained before hubtune recorded them. Fork it (f on "
                    "the runs screen) to train it again with them."))
            configs.append(as_trained(run_id, cfg, run.summary)[0])  # refused if data changed
        inputs = same_validation(configs[0], configs[1], ids)
        first, second = store.example_results(ids[0]), store.example_results(ids[1])
        found = disagreements(first, second, inputs)
        return ExamplesCompared(ids, found, compared=len(first.keys() & second.keys()))
    except (HubtuneError, StoreError) as exc:
        return ExamplesCompared(ids, None, error=str(exc))
    finally:
        store.close()


def summary(msg: ExamplesCompared) -> str:
    """One sentence on the disagreements: how many, and who is right on how many."""
    a, b = msg.runs
    found = msg.found or []
    if not found:
        return (f"Runs {a} and {b} agree on all {msg.compared:,} validation examples both "
                "recorded.")
    first = sum(d.right == "first" for d in found)
    second = sum(d.right == "second" for d in found)
    return (f"Runs {a} and {b} disagree on {len(found):,} of {msg.compared:,} validation "
            f"examples: run {a} is right on {first:,}, run {b} on {second:,}, neither on "
            f"{len(found) - first - second:,}.")


class ExamplesView(Vertical):
    """A summary line, a table of disagreements and the highlighted example's input."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown: ExamplesCompared | None = None
        """The comparison on show; None until it has been read."""

    def compose(self) -> ComposeResult:
        yield Static("", id="examples-summary")
        yield DataTable(id="examples-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="example-input")

    def wait(self, ids: tuple[int, ...]) -> None:
        """Say what is being read (or why nothing will be)."""
        if len(ids) != 2:
            text = (f"The examples view compares two runs, not {len(ids)}: mark exactly "
                    "two runs (space) and press c.")
        else:
            text = f"Reading the validation examples of runs {ids[0]} and {ids[1]}…"
        self.query_one("#examples-summary", Static).update(plain(text))

    def show(self, msg: ExamplesCompared) -> None:
        self.shown = msg
        text = msg.error if msg.error is not None else summary(msg)
        self.query_one("#examples-summary", Static).update(plain(text, limit=600))
        table = self.query_one("#examples-table", DataTable)
        table.clear(columns=True)
        if not msg.found:
            return
        a, b = msg.runs
        labels = ("Ex", "Row", "Label", f"Run {a}", f"Run {b}", "Right")
        rows = [_cells(d, (a, b)) for d in msg.found]
        used = sum(max([len(label)] + [r[i].cell_len for r in rows]) + 2
                   for i, label in enumerate(labels))
        # The input takes the rest of the line (less the scrollbar), within its limits.
        spare = (table.size.width or self.app.size.width) - used - 4
        input_chars = max(INPUT_CHARS[0], min(INPUT_CHARS[1], spare))
        for label in (*labels, "Input"):
            table.add_column(label)
        for d, cells in zip(msg.found, rows, strict=True):
            table.add_row(*cells, _cut(cell(d.input), input_chars), key=str(d.example))
        self._show_input(0)

    @on(DataTable.RowHighlighted, "#examples-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_input(event.cursor_row)

    def _show_input(self, row: int) -> None:
        found = self.shown.found if self.shown is not None else None
        if not found or not 0 <= row < len(found):
            return
        d = found[row]
        where = f"row {d.row}" if d.row is not None else "image"
        self.query_one("#example-input", Static).update(
            plain(f"Example {d.example} ({where}), label {d.label}: {d.input}", limit=2000))


def _cells(d, ids: tuple[int, int]) -> tuple:
    """A disagreement's cells but its input: each prediction green when right, red when
    wrong."""
    right = {"first": f"#{ids[0]}", "second": f"#{ids[1]}"}.get(d.right, "neither")
    predictions = [_cut(cell(p, "green" if p == d.label else "red"), LABEL_CHARS)
                   for p in d.predicted]
    return (Text(str(d.example)), Text("-" if d.row is None else str(d.row)),
            _cut(cell(d.label), LABEL_CHARS), *predictions,
            Text(right, style="dim" if d.right == "neither" else "b"))


def _cut(text: Text, width: int) -> Text:
    text.truncate(width, overflow="ellipsis")
    return text
