"""Which columns the runs table shows at a width (tui.widgets.runs_table.plan_layout):
ID, status, name, best metric and duration always; model, task, data and started when
they fit. Plain functions over real `Run` records: no app."""

from __future__ import annotations

import pytest

from store import RunStore
from tui.widgets.runs_table import CELL_PAD, SCROLLBAR, fit_cells, plan_layout, row_cells

NAME = "sentiment-baseline-with-frozen-embeddings-and-a-very-long-description"


@pytest.fixture
def rows(store: RunStore):
    run_id = store.create_run({}, name=NAME, model_id="sentence-transformers/all-MiniLM-L6-v2",
                              task="text-classification", dataset="/data/tweets-train.csv")
    store.finish(run_id, "interrupted", summary={"best_accuracy": 0.8125})
    return [row_cells(store.get_run(run_id), marked=True)]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_the_essentials_fit_every_width(rows, width):
    layout = plan_layout(width, rows)
    cells = dict(zip(layout.columns, fit_cells(rows[0], layout), strict=True))
    assert {"id", "status", "name", "best", "duration"} <= cells.keys()
    assert cells["status"].plain == "interrupted" and cells["best"].plain == "acc 0.812"
    assert cells["name"].plain.endswith("…") and len(cells["name"].plain) >= 20
    used = sum(c.cell_len + CELL_PAD for c in cells.values()) + SCROLLBAR
    if width >= 80:  # narrower, the essentials stay and the table scrolls sideways
        assert used <= width, cells


def test_wider_terminals_add_columns_in_order(rows):
    narrow, wide = plan_layout(80, rows), plan_layout(120, rows)
    assert "data" not in narrow.columns and "started" not in narrow.columns
    assert set(wide.columns) == {"id", "status", "name", "model", "task", "data", "best",
                                 "duration", "started"}
    model = dict(zip(wide.columns, fit_cells(rows[0], wide), strict=True))["model"].plain
    assert model.startswith("all-MiniLM")  # the owner goes before the repo name is cut
