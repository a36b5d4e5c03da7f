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
        if kind != self.kind:
            self.kind = kind
            self.clear(columns=True)
            for key, label in COLUMNS[kind]:
                self.add_column(label, key=key)
        else:
            self.clear()
        self.results = {r.id: r for r in results}
        for r in results:
            if kind == "dataset":
                self.add_row("✓" if r.cached else "", cell(cut(r.id, 44)),
                             cell(cut(", ".join(r.tasks) or "-", 24)), cell(cut(r.size or "-", 12)),
                             f"{r.downloads:,}", f"{r.likes:,}", cell((r.updated or "")[:10]),
                             key=r.id)
            else:
                self.add_row("✓" if r.cached else "", cell(cut(r.id, 44)),
                             cell(cut(r.task or "-", 24)), f"{r.downloads:,}", f"{r.likes:,}",
                             cell((r.updated or "")[:10]), key=r.id)

    def mark_cached(self, repo: str) -> None:
        if repo in self.results:
            self.update_cell(repo, "cached", "✓")
