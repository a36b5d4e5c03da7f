"""`train.report_to`: the worker's store thread reports what it commits to trackers; a
tracker that fails is one warning in the run's log and the run's record is whole."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.core.config import RunConfig, load_config
from engine.core.errors import ConfigError
from engine.core.events import FirstStepTaken, Note, StepLogged
from engine.launch.sink import StoreSink
from engine.share.live import live_report, report_folder
from store import RunStore, data_dir


def claimed_run(store: RunStore, tmp_path, report_to: list[str], report_dir=None) -> int:
    config = {"name": "live", "base_dir": str(tmp_path),
              "train": {"report_to": report_to, "report_dir": report_dir}}
    run_id = store.create_run(config, name="live")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="here",
                env={"device": "cpu"})
    return run_id


def feed(store: RunStore, run_id: int, status: str = "completed", from_step: int = 1,
         scale: float = 1.0) -> None:
    """What a training thread would emit: a first step, logged losses and a note."""
    run = store.get_run(run_id)
    report = live_report(run, from_step=from_step if from_step > 1 else None)
    sink = StoreSink(store.path, run_id, threading.Event(), run.lease, report=report)
    sink.start()
    sink(FirstStepTaken(step=from_step, epoch=0.0))
    for step in range(2 * (from_step // 2 + 1), 21, 2):
        sink(StepLogged(step=step, epoch=step / 20,
                        metrics={"loss": scale / step, "lr": 1e-3}))
    sink(Note("Half way", "info"))
    sink.close(status)


def tensorboard_view(folder):
    """The run's folder as TensorBoard's own server reads it (the reader that applies its
    purges of superseded steps to every tag, texts included)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import (
        EventAccumulator,
    )

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def event_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.util.tensor_util import make_ndarray

    acc = tensorboard_view(folder)
    return {tag: [(e.step, float(make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]
            if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}


def test_the_sink_reports_what_it_commits(store, tmp_path):
    pytest.importorskip("tensorboard")
    run_id = claimed_run(store, tmp_path, ["tensorboard"], report_dir="tracked")
    feed(store, run_id)
    folder = tmp_path / "tracked" / "tensorboard" / f"{run_id}-live"
    got = event_scalars(folder)
    assert set(got) == {"loss", "lr"}  # the step counter stays in the store
    want = [(s, v) for s, _, n, v, _ in store.metric_rows(run_id) if n == "loss"]
    assert got["loss"] == [(s, pytest.approx(v)) for s, v in want] and len(want) == 10
    assert not [e for e in store.events(run_id) if e.level == "warning"]


def test_a_resumed_run_supersedes_the_steps_it_replays(store, tmp_path):
    pytest.importorskip("tensorboard")
    run_id = claimed_run(store, tmp_path, ["tensorboard"], report_dir="tracked")
    feed(store, run_id, status="interrupted")
    store.truncate_after(run_id, 10)  # as the worker does, resuming from step-10
    feed(store, run_id, from_step=11, scale=2.0)  # the replayed steps differ, to be seen
    got = event_scalars(tmp_path / "tracked" / "tensorboard" / f"{run_id}-live")["loss"]
    want = [(s, v) for s, _, n, v, _ in store.metric_rows(run_id) if n == "loss"]
    assert [s for s, _ in want] == list(range(2, 21, 2))
    assert got == [(s, pytest.approx(v)) for s, v in want]


def test_a_rollback_supersedes_the_abandoned_steps_in_tensorboard(store, tmp_path):
    """A rollback to step 4 after step 12: TensorBoard shows the replay from step 6 on, as
    the store does, and no event line is lost to the purge that hides the rest (the text
    tab numbers lines by index, and six of them are past step 4)."""
    pytest.importorskip("tensorboard")
    from engine.core.events import RolledBack

    run_id = claimed_run(store, tmp_path, ["tensorboard"], report_dir="tracked")
    run = store.get_run(run_id)
    sink = StoreSink(store.path, run_id, threading.Event(), run.lease,
                     report=live_report(run))
    sink.start()
    for step in range(2, 13, 2):
        sink(StepLogged(step=step, epoch=step / 20, metrics={"loss": 1.0 / step}))
        sink(Note(f"Logged {step}", "info"))
    deadline = time.monotonic() + 30  # the abandoned steps reach the tracker first
    while not [r for r in store.metric_rows(run_id) if r[0] == 12]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sink(RolledBack(rule="loss_spike", from_step=12, to_step=4, learning_rate=5e-4,
                    previous_rate=1e-3, count=1, limit=2, factor=0.5))
    for step in range(6, 21, 2):
        sink(StepLogged(step=step, epoch=step / 20, metrics={"loss": 2.0 / step}))
    sink.close("completed")
    want = [(s, v) for s, _, n, v, _ in store.metric_rows(run_id) if n == "loss"]
    assert [s for s, _ in want] == list(range(2, 21, 2))
    assert dict(want)[6] == pytest.approx(2.0 / 6)  # the replay's, not the abandoned one
    folder = tmp_path / "tracked" / "tensorboard" / f"{run_id}-live"
    assert event_scalars(folder)["loss"] == [(s, pytest.approx(v)) for s, v in want]
    lines = [e.tensor_proto.string_val[0].decode()
             for e in tensorboard_view(folder).Tensors("events/text_summary")]
    logged = [line for line in lines if line.startswith("[info] Logged")]
    assert logged == [f"[info] Logged {step}" for step in range(2, 13, 2)]
    assert any(line.startswith("[warning] Rolled back") for line in lines)


def test_mlflow_and_wandb_are_reported_live_from_the_store_thread(store, tmp_path,
                                                                  monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient

    from tests.engine.test_trackers import wandb_records

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_id = claimed_run(store, tmp_path, ["mlflow", "wandb"], report_dir="tracked")
    feed(store, run_id, status="stopped")
    assert not [e.message for e in store.events(run_id) if e.level == "warning"]
    want = [(s, v) for s, _, n, v, _ in store.metric_rows(run_id) if n == "loss"]
    client = MlflowClient(tracking_uri=(tmp_path / "tracked" / "mlflow").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("hubtune").experiment_id])
    got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert got == want and run.info.status == "KILLED"
    (log,) = (tmp_path / "tracked" / "wandb").glob("offline-run-*/run-*.wandb")
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(log) if r.WhichOneof("record_type") == "history"]
    assert [(row["_step"], row["loss"]) for row in rows if "loss" in row] == want


def test_the_default_folder_is_in_the_data_folder():
    assert report_folder({"train": {}}, "mlflow") == data_dir() / "trackers" / "mlflow"
    assert report_folder({"train": {}}, "wandb") == data_dir() / "trackers"
    assert report_folder({"base_dir": "/cfg", "train": {"report_dir": "out"}},
                         "tensorboard") == Path("/cfg/out/tensorboard")


def test_a_failing_tracker_is_one_warning_and_the_run_is_whole(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    (tmp_path / "blocked").write_text("a file where the folder would be")
    run_id = claimed_run(store, tmp_path, ["wandb", "mlflow"], report_dir="blocked")
    feed(store, run_id)
    warnings = [e.message for e in store.events(run_id) if e.level == "warning"]
    assert len(warnings) == 2, warnings
    assert "pip install 'hubtune[wandb]'" in warnings[0]
    assert warnings[1].startswith("MLflow cannot write to ")
    assert all("The run goes on without" in w for w in warnings)
    assert len([r for r in store.metric_rows(run_id) if r[2] == "loss"]) == 10
    assert "Half way" in [e.message for e in store.events(run_id)]


def test_report_to_is_validated():
    def config(report_to) -> RunConfig:
        return RunConfig.from_dict({"model": {"id": "org/model"}, "data": {"train": "a.csv"},
                                    "train": {"report_to": report_to}})

    with pytest.raises(ConfigError, match="Did you mean tensorboard"):
        config(["tensorbord"])
    with pytest.raises(ConfigError, match="twice"):
        config(["wandb", "wandb"])
    assert config("mlflow").train.report_to == ["mlflow"]  # as `--set train.report_to=mlflow`


@pytest.mark.slow
def test_a_training_run_reports_its_loss_to_tensorboard(tiny_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tests.support.tests_helpers import train_in_process

    cfg = load_config(tiny_config, [f"train.report_dir={tmp_path / 'tb'}",
                                    "train.report_to=tensorboard", "train.epochs=2"])
    run_id = train_in_process(cfg)
    store = RunStore()
    got = event_scalars(tmp_path / "tb" / "tensorboard" / f"{run_id}-tiny-sentiment")
    for name in ("loss", "val_accuracy"):
        want = [(s, v) for s, _, n, v, _ in store.metric_rows(run_id) if n == name]
        assert want and got[name] == [(s, pytest.approx(v)) for s, v in want]
    assert not [e for e in store.events(run_id) if e.level == "warning"]
