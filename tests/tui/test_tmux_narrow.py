"""The TUI in a real 80x24 terminal (tmux), as a researcher over SSH sees it: a run with
a long name still shows its status, its name (cut with an ellipsis) and its best
metric, and the footer starts with the keys a newcomer needs (#22)."""

from __future__ import annotations

import time

import pytest

from store import RunStore
from tests.support.tmux import needs_tmux, terminal

pytestmark = [pytest.mark.slow, needs_tmux]  # a whole app process in a terminal
NAME = "sentiment-baseline-with-frozen-embeddings-and-a-very-long-description"


def test_a_long_named_run_at_80x24(tmp_path, hubtune_home):
    store = RunStore()
    run_id = store.create_run({"model": {"id": "x"}}, name=NAME,
                              model_id="sentence-transformers/all-MiniLM-L6-v2",
                              task="text-classification", dataset="/data/tweets-train.csv")
    store.finish(run_id, "completed", summary={"best_accuracy": 0.8125})
    store.close()
    with terminal(tmp_path, hubtune_home) as term:
        deadline = time.monotonic() + 60
        while True:
            lines = term.lines()
            row = next((line for line in lines if line.strip().startswith(f"{run_id} ")), "")
            if "acc 0.812" in row and lines and lines[-1].startswith("? Help"):
                break
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.2)
        # The hub opens on its results: `1` leads back at once (#33). In the search box
        # the footer says how to leave it, and Esc then `1` does.
        hub = term.keys_until(["2"], lambda shown: "hubtune — hub" in shown[0] and
                              "/ Search" in shown[-1] and shown[-1].startswith("? Help"))
        back = term.keys_until(["1"], lambda shown: any(
            line.strip().startswith(f"{run_id} ") for line in shown))
        assert "acc 0.812" in "\n".join(back), back
        term.keys_until(["2"], lambda shown: "hubtune — hub" in shown[0])
        boxed = term.keys_until(["/"], lambda shown: "esc Leave box" in shown[-1])
        # Esc leaves the box: the footer offers the screen keys again (`1` back to the runs
        # was checked above; typed right after Esc, a loaded terminal may read Alt+1).
        term.keys_until(["Escape"], lambda shown: "q Quit" in shown[-1])
    assert "q Quit" in hub[-1] and "esc Leave box" in boxed[-1]
    cells = row.split()
    assert cells[:2] == [str(run_id), "completed"]
    assert cells[2].endswith("…") and NAME.startswith(cells[2][:-1]) and len(cells[2]) >= 20
    assert len(row.rstrip()) <= 80
    assert lines[-1].split()[:12] == ["?", "Help", "1", "Runs", "2", "Hub", "3", "New", "run",
                                      "4", "Models", "q"]

