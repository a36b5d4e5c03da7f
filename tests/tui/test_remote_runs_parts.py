"""The parts of tui/remote_runs.py that need no ssh: what a remote's JSON becomes, the
`runs ls` it is asked, and how the machines' runs sort together (the Pilot tests over a
real sshd are tests/tui/test_remote_runs.py)."""

from __future__ import annotations

from tui.remote_runs import list_argv, remote_run
from tui.widgets.runs_table import fit_cells, plan_layout, row_cells, run_key, sort_runs


def test_a_remote_row_of_the_wrong_shape_is_dropped_or_made_safe():
    assert remote_run("box", {"id": "7"}) is None
    assert remote_run("box", ["id", 7]) is None
    run = remote_run("box", {"id": 7, "name": ["x"], "status": "failed", "tags": "a,b",
                             "summary": 5, "config": [1], "parent_id": "3"})
    assert (run.id, run.name, run.status, run.tags, run.summary, run.config,
            run.parent_id, run.remote) == (7, "['x']", "failed", (), {}, {}, None, "box")
    assert run_key(run) == "box:7"


def test_a_running_remote_runs_result_so_far_fills_its_result_cell():
    run = remote_run("box", {
        "id": 2, "name": "r", "status": "running", "task": "text-classification",
        "created_utc": "2026-12-07T10:00:00+00:00", "summary": {},
        "result": {"metric": "accuracy", "value": 0.75, "of": "best evaluation"}})
    cells = row_cells(run, marked=False)
    assert str(cells["best"]) == "acc 0.750" and str(cells["host"]) == "box"
    layout = plan_layout(120, [cells], hosts=True)
    assert layout.columns[:3] == ("id", "host", "status")
    assert "host" not in plan_layout(120, [cells]).columns
    assert len(fit_cells(cells, layout)) == len(layout.columns)


def test_the_remote_is_asked_for_the_search_without_its_host_and_sweep_words():
    assert list_argv("host:box sweep:s1 bert", "failed") == [
        "runs", "ls", "--json", "--sort", "-created", "--limit", "500",
        "--status", "failed", "--search", "bert", "--sweep", "s1"]
    assert list_argv(None, None)[-2:] == ["--limit", "500"]


def test_runs_of_several_machines_sort_together():
    def run(host, run_id, created, name):
        return remote_run(host, {"id": run_id, "name": name, "status": "completed",
                                 "created_utc": created})

    a = run("box", 1, "2026-12-07T10:00:00+00:00", "b")
    b = run("gpu", 1, "2026-12-07T11:00:00+00:00", "a")
    c = run("box", 2, "2026-12-07T09:00:00+00:00", "c")
    assert [run_key(r) for r in sort_runs([a, b, c], "-created")] == ["gpu:1", "box:1",
                                                                      "box:2"]
    assert [r.name for r in sort_runs([a, b, c], "name")] == ["a", "b", "c"]


def test_a_remotes_gpu_readings_are_its_runs_slots_and_odd_ones_are_dropped():
    from tui.gpu import gpu_line
    from tui.remote_records import slot_readings

    slots = [{"slot": "gpu0", "kind": "gpu", "index": 0, "name": "H100",
              "memory_free": 60 << 30, "memory_total": 80 << 30, "utilisation": 97},
             {"slot": "gpu1", "kind": "gpu", "index": "1", "memory_total": [1],
              "utilisation": True},
             {"slot": "cpu0", "kind": "cpu"}, "junk", 7]
    readings = slot_readings(slots, ("gpu1", "gpu0", "cpu0", "gone"))
    assert [(r.index, r.utilisation, r.memory_used) for r in readings] == [
        (-1, None, None), (0, 97, 20 << 30)]
    assert gpu_line(readings[1:]) == "GPU0 97% · 21.5 GB/85.9 GB"
    assert slot_readings({"not": "a list"}, ("gpu0",)) == []


def test_a_followed_remote_curve_takes_each_step_once():
    from tui.remote_detail import RemoteFollow

    follow = RemoteFollow()
    follow.points = {"loss": ([], []), "val_accuracy": ([], [])}
    follow._add({"loss": {"steps": [1, 2, 3], "values": [3.0, 2.0, 1.0]}})
    follow._add({"loss": {"steps": [2, 3, 4, "5"], "values": [2.0, 1.0, 0.5, 0.1]},
                 "val_accuracy": {"steps": [3], "values": [None]}})
    assert follow.points["loss"] == ([1, 2, 3, 4], [3.0, 2.0, 1.0, 0.5])
    assert follow.points["val_accuracy"] == ([], []) and follow.highest == 4
