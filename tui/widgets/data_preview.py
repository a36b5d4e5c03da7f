"""The new-run form's right-hand pane: the data file's preview, its token lengths and
the layer plan below them.

Fed an `engine.data.reader.DataPreview` (columns, first rows, label counts), or for
`hf:` data a `HubDataPreview` of the same shape made from
`engine.data.hub.preview.preview_split` on the app's engine thread: the fetch reads
the dataset's README and the first file of one split only, and a preview asked for
while another was on its way is dropped.
Token lengths are counted on the app's engine thread (they need the model's
tokenizer, hence transformers; see tui/engine_thread.py) and come back as
`TokensCounted`; "Use N" posts `DataPreviewPane.LengthChosen` for the form's
Max tokens. Headers and cells are the file's own text: Text, never markup
(a str cell is parsed as markup), one line each, controls shown as escapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Static

from engine.core.errors import HubtuneError
from engine.data.reader import DataPreview
from tui.background import background
from tui.formatting import cell, cut, literal
from tui.messages import DataPreviewed, TokensCounted
from tui.widgets.audit_pane import AuditPane
from tui.widgets.layer_plan import LayerPlan


@dataclass(frozen=True)
class HubDataPreview(DataPreview):
    """A hub dataset's split as the form's preview: a file's preview (the form offers its
    columns and counts tokens in `path`, the split's first file) with a title and details."""

    title: str = ""
    """hf:OWNER/NAME (subset S, split T)"""
    details: str = ""
    """Its features, the other splits' sizes and how much of the split was read."""


@dataclass(frozen=True)
class HubSource:
    """hf: data as the form names it: the reference, data.subset and data.revision."""

    ref: str
    subset: str | None
    revision: str

    def __str__(self) -> str:
        return f"{self.ref}|{self.subset or ''}|{self.revision}"


def hub_source(form, ref: str) -> HubSource:
    """hf: data `ref` with the subset and revision the form's Advanced fields give."""
    from tui.widgets.advanced_settings import AdvancedSettings

    advanced = form.query_one(AdvancedSettings)  # its fields may not be built yet
    return HubSource(ref, advanced.value("data.subset") or None,
                     advanced.value("data.revision") or "main")


def data_source(form, raw: str) -> Path | HubSource:
    """What the form's training-data field names: hf: data, a packaged file or a path."""
    from engine.core.config import resolve_package_file

    if raw.startswith("hf:"):
        return hub_source(form, raw)
    return resolve_package_file(raw) if raw.startswith("pkg:") else Path(raw).expanduser()


class DataPreviewPane(Vertical):
    class LengthChosen(Message):
        """The user took the suggested Max tokens."""

        def __init__(self, length: int) -> None:
            super().__init__()
            self.length = length

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lengths = None
        """Token statistics (engine.modeling.lengths.TokenLengths) or why there are none
        (a str); None while counting or before."""
        self.max_length: int | None = None
        """The form's Max tokens, to say what it cuts (None: not a number)."""
        self._length_key: tuple | None = None
        """(model, path, encoding, column) last counted; a count for another is stale."""
        self._hub_key: str | None = None
        """The hf: data last asked for (ref|subset|revision|label); a preview of another is
        stale."""
        self._file: str | None = None
        """The file last asked for; a preview of another (a folder typed through on the
        way to a file in it, read in a thread that cannot be stopped) is stale."""

    def compose(self) -> ComposeResult:
        yield Static("Give a training file to preview it.", id="preview-summary")
        yield DataTable(id="preview-table", zebra_stripes=True)
        yield Static("", id="label-counts")
        yield Static("", id="length-stats")
        yield Button("Use", id="use-length", compact=True, classes="-hidden")
        yield AuditPane(id="audit-pane")  # the data's audit (#34): its own module
        yield LayerPlan(id="layer-plan")

    def reveal(self, *, plan: bool) -> None:
        """Bring the preview (its table focused: arrows move through rows) or the layer plan
        (its tree focused) into view. Below 100 columns both sit under the form's fields:
        the screen's F2 and F3 reach them from any field (a text box takes no F-key)."""
        target = self.query_one(LayerPlan) if plan else self
        target.scroll_visible(top=True, animate=False)
        focus = "#layer-tree" if plan else "#preview-table"
        target.query_one(focus).focus(scroll_visible=False)

    def on_resize(self) -> None:
        """The pane grew as a preview, token counts or a plan arrived: where the form and
        the pane stack, keep the part the user went to (F2, F3) in view."""
        focused = self.screen.focused
        if focused is None or self not in focused.ancestors_with_self:
            return
        plan = self.query_one(LayerPlan)
        target = plan if plan in focused.ancestors_with_self else self
        self.call_after_refresh(target.scroll_visible, top=True, animate=False)

    # -- the file --------------------------------------------------------------

    def read(self, path: Path | HubSource, encoding: str, label: str | None) -> None:
        """Read the file's head in a thread (a hub dataset's on the engine thread);
        `DataPreviewed` comes back (and bubbles on to the screen, which offers its
        columns)."""
        if isinstance(path, HubSource):
            self._file = None  # nor is a file's still on its way
            self.read_hub(f"{path}|{label}", path.ref, path.subset, path.revision, label)
            return
        self._hub_key = None  # a hub preview still on its way is for data no longer asked for
        self._file = str(path)
        self._read_file(path, encoding, label)

    @background(what="reading the data file", group="preview", exclusive=True)
    def _read_file(self, path: Path, encoding: str, label: str | None) -> None:
        from engine.data.reader import preview_file

        try:
            preview = preview_file(path, encoding=encoding, label_column=label)
        except HubtuneError as exc:
            self.post_message(DataPreviewed(str(path), None, str(exc)))
            return
        self.post_message(DataPreviewed(str(path), preview))

    def read_hub(self, key: str, ref: str, subset: str | None, revision: str,
                 label: str | None) -> None:
        """Preview hub data `ref` (hf:OWNER/NAME[:SPLIT]) on the engine thread; a
        `DataPreviewed` keyed `key` comes back (and bubbles on to the screen)."""
        self._hub_key = key
        self.query_one("#preview-summary", Static).update(
            f"[dim]Reading {literal(ref, 120)} from the hub…[/dim]")
        self.app.engine.submit(
            lambda: _preview_hub(key, ref, subset, revision, label)
            if key == self._hub_key else None, to=self)

    def on_data_previewed(self, msg: DataPreviewed) -> None:
        if msg.path != (self._hub_key if is_hub_key(msg.path) else self._file):
            msg.stop()  # the form moved on while this was read
            return
        if msg.error:
            self.show_unreadable()
        else:
            self.show_preview(msg.preview)

    def show_preview(self, p) -> None:
        """The file's columns and first rows, its size and any label warnings."""
        table = self.query_one("#preview-table", DataTable)
        table.clear(columns=True)
        rows = [[cell(cut(value, 40)) for value in row[: len(p.columns)]]
                + [cell("")] * (len(p.columns) - len(row)) for row in p.rows]
        for i, col in enumerate(p.columns):
            label = cell(cut(col, 40))
            # Widths given, not measured by the table as rows arrive: that measurement
            # sometimes lagged a redraw and left the columns at their headers' width.
            width = max([label.cell_len, *(r[i].cell_len for r in rows)])
            table.add_column(label, key=col, width=width)
        for row in rows:
            table.add_row(*row)
        title = getattr(p, "title", "") or Path(p.path).name
        details = getattr(p, "details", "")
        self.query_one("#preview-summary", Static).update(
            f"[b]{literal(title, 120)}[/b]: {p.total_rows:,} rows, "
            f"{len(p.columns)} columns"
            + (f"\n[$text-muted]{literal(details, 600)}[/]" if details else "")
            # Label problems the run will report too (engine.data.reader.check_labels).
            + "".join(f"\n[$warning]{literal(w, 400)}[/]" for w in p.warnings))

    def show_unreadable(self) -> None:
        self.query_one("#preview-table", DataTable).clear(columns=True)
        self.query_one("#preview-summary", Static).update("No preview.")
        self.query_one("#label-counts", Static).update("")

    def show_label_counts(self, p, label: str) -> None:
        """How often each value of the `label` column occurs (the first eight)."""
        shown = "  ".join(f"{cut(str(k), 30)} {v:,}" for k, v in p.label_counts[:8])
        more = f"  (+{len(p.label_counts) - 8} more)" if len(p.label_counts) > 8 else ""
        self.query_one("#label-counts", Static).update(
            f"[b]labels[/b] ({literal(label, 40)}): {literal(shown, 400)}{more}")

    # -- token lengths ---------------------------------------------------------

    def count_tokens_of(self, preview, model: str | None, encoding: str | None,
                        text_column: str, max_length_text: str) -> None:
        """Count the tokens of `preview`'s file under `model` when the model, file or text
        column changed; else show them again against the form's Max tokens."""
        if not model or Path(preview.path).is_dir():
            return
        try:
            max_length = int(max_length_text)
        except ValueError:
            max_length = None
        self.count_tokens((model, preview.path, encoding or "utf-8", text_column), max_length)

    def count_tokens(self, key: tuple, max_length: int | None) -> None:
        """Token lengths for `key` = (model, path, encoding, text column), counted once per
        key, shown against `max_length`."""
        self.max_length = max_length
        if key == self._length_key:
            self.show_lengths()
            return
        self._length_key = key
        self.lengths = None
        self.query_one("#length-stats", Static).update("[dim]Counting tokens…[/dim]")
        self.query_one("#use-length", Button).add_class("-hidden")
        self.app.engine.submit(
            lambda: _count_tokens(key) if key == self._length_key else None, to=self)

    def on_tokens_counted(self, msg: TokensCounted) -> None:
        if msg.key != self._length_key:
            return  # the form moved on while this counted
        self.lengths = msg.error if msg.error is not None else msg.lengths
        self.show_lengths()

    def show_lengths(self) -> None:
        """`lengths` (or why there are none), and what `max_length` would cut."""
        stats, max_length = self.lengths, self.max_length
        box = self.query_one("#length-stats", Static)
        button = self.query_one("#use-length", Button)
        if stats is None:
            return
        if isinstance(stats, str):
            box.update(f"[dim]No token counts: {literal(stats)}[/dim]")
            button.add_class("-hidden")
            return
        cut_now = f"; at {max_length}, {stats.cut_text(max_length)}" \
            if max_length is not None else ""
        box.update(f"[b]tokens[/b] median {stats.p50} · p95 {stats.p95} · p99 {stats.p99} · "
                   f"longest {stats.longest}; suggested max {stats.suggested}{cut_now}")
        button.label = f"Use {stats.suggested}"
        button.set_class(max_length == stats.suggested, "-hidden")

    @on(Button.Pressed, "#use-length")
    def _use_suggested_length(self, event: Button.Pressed) -> None:
        event.stop()
        stats = self.lengths
        if stats is not None and not isinstance(stats, str):
            self.post_message(self.LengthChosen(stats.suggested))


def is_hub_key(path: str) -> bool:
    return path.startswith("hf:")


def _preview_hub(key: str, ref: str, subset: str | None, revision: str,
                 label: str | None) -> DataPreviewed:
    """On the engine thread: the split's preview from its first file, or the one sentence
    saying why there is none (offline and not cached, gated, no such split...)."""
    from engine.core.config import parse_hub_data
    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.preview import preview_split

    try:
        parsed = parse_hub_data(ref)
        split = parsed.split or "train"
        files = fetch_dataset(parsed.repo, subset=subset or None, revision=revision or "main",
                              splits=(split,), first_shard=True)
        p = preview_split(files, split)
        if label is not None and label in p.columns and label != p.label_column:
            # A label column picked for another file (not in this split) is not an error.
            p = preview_split(files, split, label_column=label)
    except HubtuneError as exc:
        return DataPreviewed(key, None, str(exc))
    return DataPreviewed(key, hub_preview(p, str(files.splits[split][0])))


def hub_preview(p, first_file: str) -> HubDataPreview:
    """An engine.data.hub.preview.HubPreview as the form's preview."""
    known = p.split_rows.get(p.split)
    sizes = ", ".join(f"{s} {n:,}" if n is not None else f"{s} ?"
                      for s, n in p.split_rows.items())
    read = (f"; read {p.files_read} of {p.files_total} files" if p.files_read < p.files_total
            else "")
    features = ", ".join(f"{c} {t}" for c, t in p.features)
    subset = f"subset {p.subset}, " if len(p.subsets) > 1 else ""
    return HubDataPreview(
        path=first_file, columns=p.columns, rows=p.rows,
        total_rows=known if known is not None else p.read_rows,
        label_counts=p.label_counts, text_column=p.text_column, label_column=p.label_column,
        title=f"{p.dataset} ({subset}split {p.split})",
        details=f"splits: {sizes}{read} · {features} · commit {p.sha[:12]}")


def _count_tokens(key: tuple) -> TokensCounted:
    """On the engine thread: the lengths, or the one sentence saying why there are none."""
    from engine.modeling.lengths import token_lengths
    from engine.modeling.loading import local_files_only

    model, path, encoding, column = key
    try:
        with local_files_only():
            return TokensCounted(key, token_lengths(model, Path(path), [column],
                                                    encoding=encoding))
    except HubtuneError as exc:
        return TokensCounted(key, None, str(exc))
    except Exception as exc:  # a tokenizer that will not load: say so, keep the form
        return TokensCounted(key, None, f"{type(exc).__name__}: {exc}")
