"""What the runs list shows: a search, a sort and a status filter, and what the runs
screen's subtitle and empty list say about them.

Frozen: the screen replaces it whole, so the poll threads (this machine's,
tui/run_watcher.py, and the remotes', tui/remote_runs.py) read one consistent filter.
No widget is touched here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from store import Run, RunStore
from tui.formatting import plain
from tui.widgets.runs_table import SORTS, STATUS_FILTERS, list_runs

NO_RUNS = ("No runs yet: press 3 to set one up (runs started from the command line show up "
           "here too).")


@dataclass(frozen=True)
class RunsFilter:
    """The runs listed: those matching `search` with `status`, sorted by `sort`."""

    search: str = ""
    """The search box's text, stripped (`sweep:ID`, `host:NAME` as runs_table reads them)."""
    sort: str = SORTS[0][0]
    """The key of SORTS the list is sorted by."""
    status: str | None = None
    """Only runs with this status (None: all)."""

    def next_sort(self) -> RunsFilter:
        """Sorted by the next of SORTS (o)."""
        keys = [k for k, _ in SORTS]
        return replace(self, sort=keys[(keys.index(self.sort) + 1) % len(keys)])

    def next_status(self) -> RunsFilter:
        """Filtered by the next of STATUS_FILTERS, round to all runs (v)."""
        i = STATUS_FILTERS.index(self.status)
        return replace(self, status=STATUS_FILTERS[(i + 1) % len(STATUS_FILTERS)])

    def read(self, store: RunStore) -> list[Run]:
        """This machine's runs as filtered and sorted (on the poll thread)."""
        return list_runs(store, search=self.search or None, status=self.status, sort=self.sort)

    def title_parts(self) -> list[str]:
        """The subtitle's part on the sort and the status filter."""
        parts = []
        if self.sort != SORTS[0][0] or self.status:
            parts.append(f"by {dict(SORTS)[self.sort]}")
        if self.status:
            parts.append(f"{self.status} only")
        return parts

    def empty_note(self) -> str:
        """What the empty list says: that there are no runs yet, or that none passes the
        search and the status filter, and the keys that clear them."""
        search, status = self.search, self.status
        if not search and not status:
            return NO_RUNS
        if not search:
            what = f"No {status} runs"
        else:
            what = f"No {status + ' ' if status else ''}run matches “{search}”"
        keys = (["Esc clears the search"] if search else []) + (
            ["v cycles the status filter round to all runs"] if status else [])
        return plain(f"{what}: {', '.join(keys)}.")
