"""The run lifecycle rules the CLI and the TUI share (engine.runs.lifecycle)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.core.config import MAX_NAME_CHARS
from engine.core.errors import HubtuneError
from engine.runs.lifecycle import (
    check_deletable,
    check_resumable,
    check_stoppable,
    fork_config,
    fork_name,
)


def run(status: str, name: str = "base", **config):
    return SimpleNamespace(id=7, status=status, name=name,
                           config={"name": name, "model": {"id": "m"}, "data": {"train": "a.csv"},
                                   **config})


@pytest.mark.parametrize("status", ["queued", "running", "completed", "failed", "stopped",
                                    "interrupted"])
def test_each_status_allows_what_it_should(status):
    allowed = {
        "stop": status in ("queued", "running"),
        "resume": status in ("stopped", "interrupted", "failed"),
        "delete": status != "running",
    }
    for action, check in (("stop", check_stoppable), ("resume", check_resumable),
                          ("delete", check_deletable)):
        if allowed[action]:
            check(run(status))
        else:
            with pytest.raises(HubtuneError, match="Run 7 (is|already) "):
                check(run(status))


def test_a_completed_run_is_forked_not_resumed():
    with pytest.raises(HubtuneError, match="fork it"):
        check_resumable(run("completed"))


def test_fork_names_are_one_line_and_within_the_limit():
    assert fork_name("base") == "base-fork"
    assert fork_name("evil\x1b]0;x\x07\nrow") == "evil ]0;x  row-fork"
    long = fork_name("x" * MAX_NAME_CHARS)
    assert len(long) == MAX_NAME_CHARS and long.endswith("-fork")
    assert fork_name("\n") == "run-fork"


def test_fork_config_applies_overrides_and_keeps_a_chosen_name():
    parent = run("completed", train={"learning_rate": 1e-4})
    cfg = fork_config(parent, ["train.learning_rate=3e-4"])
    assert cfg.name == "base-fork" and cfg.train.learning_rate == 3e-4
    assert fork_config(parent, ["name=mine"]).name == "mine"
