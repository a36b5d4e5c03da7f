"""What a remote sends for the compare screen and the errors view, checked for type
(tui/remote_reads.py): odd values are dropped or defaulted, never a crash, and text
stays text for the views to escape."""

from __future__ import annotations

from tui.remote_reads import _series, compare_label, reviewed
from tui.remote_records import remote_run
from tui.run_info import errors_lines


def test_a_remotes_errors_answer_is_checked_for_type():
    data = {"step": 7, "examples": 40, "stored": 40, "wrong": 3, "loss_kind": "cross_entropy",
            "errors": [{"example": 2, "row": 5, "input": "[b]x[/b] $(id)", "label": "a",
                        "predicted": "b", "confidence": 0.8, "loss": 2.5},
                       {"example": "3"}, 7,
                       {"example": 4, "row": "5", "confidence": True, "loss": None}]}
    msg = reviewed("box", 9, data)
    assert (msg.run_id, msg.remote, msg.wrong, msg.error) == (9, "box", 3, None)
    assert [e.example for e in msg.examples] == [2, 4]
    odd = msg.examples[1]
    assert (odd.row, odd.confidence, odd.loss, odd.input) == (None, None, 0.0, "")
    lines = "\n".join(errors_lines(msg))
    assert "of 40 validation examples (3 wrong), model of step 7" in lines
    assert r"\[b]x\[/b] $(id)" in lines  # escaped for the markup it is drawn with
    assert "something other than examples" in reviewed("box", 9, [1]).error


def test_a_remotes_curve_keeps_only_int_steps_with_finite_numbers():
    got = _series("loss", {"steps": [1, 2, "3", 4, 5, 6], "values": [0.5, float("nan"), 1,
                                                                     True, 0.25, 1]})
    assert (got.steps, got.values) == ([1, 5, 6], [0.5, 0.25, 1.0])
    assert _series("loss", {"steps": 5}).steps == []
    run = remote_run("box", {"id": 3, "name": "far"})
    assert compare_label(run) == "box:3 far"
