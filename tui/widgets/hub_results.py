"""The hub screen's results table: models or datasets found, one row each.

Its columns follow the kind shown (a dataset has a size category, a model none).
Ids, tasks and dates come from the hub: cells are Text, never markup, controls
as escapes. Rows are keyed by repo id.
"""

from __future__ import annotations

from textual.widgets import DataTable

from tui.formatting import cell, cut

COLUMNS = {
    "model": (("cached", " "), ("id", "Model"), ("task", "Task"), ("downloads", "Downloads"),
              ("likes", "Likes"), ("updated", "Updated")),
    "dataset": (("cached", " "), ("id", "Dataset"), ("task", "Task"), ("size", "Rows"),
                ("downloads", "Downloads"), ("likes", "Likes"), ("updated", "Updated")),
}


class HubResults(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.kind: str | None = None
        """model or dataset: which columns are up."""
        self.results: dict[str, object] = {}
        """Repo id -> its search result (ModelSummary or DatasetSummary)."""

    def show(self, kind: str, results: list) -> None:
        """Replace the rows. The columns get widths measured here from the cells, not by
        the table as rows arrive (that measurement can lag a redraw by a frame)."""
        self.kind = kind
        self.results = {r.id: r for r in results}
        rows = [self._cells(kind, r) for r in results]
        self.clear(columns=True)
        for i, (key, label) in enumerate(COLUMNS[kind]):
            width = max([len(label), *(_cell_width(row[i]) for row in rows)])
            self.add_column(label, key=key, width=width)
        for r, row in zip(results, rows, strict=True):
            self.add_row(*row, key=r.id)

    @staticmethod
    def _cells(kind: str, r) -> tuple:
        if kind == "dataset":
            return ("✓" if r.cached else "", cell(cut(r.id, 44)),
                    cell(cut(", ".join(r.tasks) or "-", 24)), cell(cut(r.size or "-", 12)),
                    f"{r.downloads:,}", f"{r.likes:,}", cell((r.updated or "")[:10]))
        return ("✓" if r.cached else "", cell(cut(r.id, 44)), cell(cut(r.task or "-", 24)),
                f"{r.downloads:,}", f"{r.likes:,}", cell((r.updated or "")[:10]))

    def mark_cached(self, repo: str) -> None:
        if repo in self.results:
            self.update_cell(repo, "cached", "✓")


def _cell_width(value) -> int:
    return value.cell_len if hasattr(value, "cell_len") else len(str(value))
