"""`hubtune runs events`: a run's event log, the newer ones only when asked (`--after`);
read-only, so a remote's runs screen may ask for it over SSH (tui/remote_detail.py).
And what a remote `train` may say: `--parent` (the TUI's fork of a remote's run), not
options that change the config."""

from __future__ import annotations

import json

from tests.support.cli_runner import hubtune, ok
from tui.cli.serve import ALLOWED


def test_runs_events_gives_the_events_after_an_id(store):
    run_id = store.create_run({"model": {"id": "m"}}, name="r", model_id="m",
                              task="text-classification", dataset="d")
    for message in ("started", "\x1b]0;title\x07 evaluated", "done"):
        store.add_event(run_id, message)
    full = json.loads(ok("runs", "events", str(run_id), "--json").stdout)
    ids = [e["id"] for e in full["events"]]
    assert full["run"] == run_id and ids == sorted(ids) and len(ids) == 3
    assert [e["message"] for e in full["events"]][0] == "started"
    newer = json.loads(ok("runs", "events", str(run_id), "--after", str(ids[0]),
                          "--json").stdout)
    assert [e["id"] for e in newer["events"]] == ids[1:]
    text = ok("runs", "events", str(run_id), "--limit", "2").stdout
    assert len(text.splitlines()) == 2 and "\x1b" not in text and "[info] started" in text
    missing = hubtune("runs", "events", "999")
    assert missing.returncode == 1 and "999" in missing.stderr
    assert ("runs", "events") in ALLOWED  # a remote may ask for it


def test_a_remote_train_may_name_its_parent_but_nothing_that_changes_the_config(tmp_path):
    from tui.cli.serve import _refused_train

    config = tmp_path / "c.yaml"
    config.write_text("model: {id: m}\n")
    assert _refused_train(["train", str(config), "--parent", "3", "--queue"]) is None
    refused = _refused_train(["train", str(config), "--parent", "3", "--set", "x=1"])
    assert refused is not None and "--set is refused" in refused
