"""The runs list's filter without an app: o and v cycle round, and the subtitle and the
empty list say what is applied (tui/runs_filter.py)."""

from __future__ import annotations

from dataclasses import replace

from tui.runs_filter import NO_RUNS, RunsFilter
from tui.widgets.runs_table import SORTS, STATUS_FILTERS


def test_sort_and_status_cycle_round_to_where_they_started():
    start = RunsFilter(search="bert")
    sorts, state = [], start
    for _ in SORTS:
        sorts.append(state.sort)
        state = state.next_sort()
    assert sorts == [k for k, _ in SORTS] and state == start
    statuses, state = [], start
    for _ in STATUS_FILTERS:
        statuses.append(state.status)
        state = state.next_status()
    assert statuses == list(STATUS_FILTERS) and state == start


def test_the_subtitle_names_a_sort_or_status_other_than_the_default():
    assert RunsFilter().title_parts() == []
    assert RunsFilter().next_sort().title_parts() == ["by name"]
    assert RunsFilter(status="failed").title_parts() == ["by newest first", "failed only"]


def test_the_empty_list_names_the_keys_that_clear_what_hides_the_runs():
    assert RunsFilter().empty_note() == NO_RUNS
    assert RunsFilter(status="running").empty_note() == (
        "No running runs: v cycles the status filter round to all runs.")
    both = replace(RunsFilter(status="running"), search="zzz")
    assert both.empty_note() == ("No running run matches “zzz”: Esc clears the search, "
                                 "v cycles the status filter round to all runs.")
