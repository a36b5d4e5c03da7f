"""Several processes and several nodes agree or stop (issue #29, class 7; issue #30,
defect 4), under real torchrun processes over gloo.

- Evaluation is split across the ranks, and its metrics and review rows equal the
  unsharded ones; early stopping is rank 0's decision, whatever another rank believes;
  every rank leaves its process group when the run completes, fails or stops.
- A rank whose copy of the data is shorter (fewer steps) fails every rank with one
  sentence before the first step, instead of hanging in a collective.
- Nodes with different configs fail with a sentence naming the setting; a second
  machine given a node rank already taken is told so and leaves the run alone.
- A rank killed by SIGKILL (as the kernel's out-of-memory killer does) is named in the
  run's record, not reported as gloo's broken connection.

GPUs are hidden (CUDA_VISIBLE_DEVICES=""), so these run over gloo on a GPU box too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.test_nodes import _finish as finish_node
from tests.reliability.test_nodes import _free_port, _node

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "support"
HUBTUNE = [sys.executable, "-m", "tui.cli"]

pytestmark = pytest.mark.slow


def _env(**more: str) -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **more}


def _config(tmp_path: Path, model: Path, data: Path, **train) -> dict:
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, model, data, epochs=2, max_steps=6).to_dict()
    cfg["train"].update(log_every=2, eval_every=2, restore_best=False,
                        early_stopping={"metric": "accuracy", "patience": 50}, **train)
    return cfg


def _worker_run(tmp_path: Path, cfg: dict, fault: str, **env: str):
    """A run recorded as `hubtune train --processes 2` would, its worker under torchrun
    with `fault` (tests/support/round3_rank.py); returns (the run, the torchrun result,
    the folder where the ranks left their records)."""
    from store import RunStore, run_dir

    store = RunStore()
    run_id = store.create_run(cfg, name="round3", model_id=cfg["model"]["id"],
                              task=cfg["head"]["task"])
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    (folder / "launch.json").write_text(json.dumps({"processes": 2}))
    out = tmp_path / f"records-{fault}"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SUPPORT / "round3_rank.py"), str(run_id), str(store.path), "--lease",
         store.get_run(run_id).lease],
        capture_output=True, text=True, timeout=240, cwd=REPO,
        env=_env(HUBTUNE_TEST_FAULT=fault, HUBTUNE_TEST_OUT=str(out), **env))
    return store.get_run(run_id), done, out


def _left_the_group(out: Path) -> None:
    for rank in (0, 1):
        record = json.loads((out / f"pg-rank{rank}.json").read_text())
        assert record == {"was_up": True, "still_up": False}, (rank, record)


def test_sharded_evaluation_equals_unsharded_and_rank_0_decides(tmp_path, tiny_bert,
                                                                sentiment_csv):
    run, done, out = _worker_run(tmp_path, _config(tmp_path, tiny_bert, sentiment_csv),
                                 "check-eval")
    assert run.status == "completed", (run.error, done.stderr[-3000:])
    # Rank 1 believed early stopping was due after every evaluation; rank 0 did not.
    assert run.summary["steps"] == 6
    evaluations = sorted(out.glob("eval-rank0-step*.json"))
    assert len(evaluations) == 3  # steps 2, 4 and 6
    for path in evaluations:
        rank0 = json.loads(path.read_text())
        rank1 = json.loads((out / path.name.replace("rank0", "rank1")).read_text())
        for found in (rank0, rank1):
            # 40 validation rows in batches of 32: one batch for each rank, not two.
            assert found["unsharded"]["batches"] == 2 and found["sharded"]["batches"] == 1
            assert found["sharded"]["metrics"] == found["unsharded"]["metrics"]
            assert found["sharded"]["rows"] == found["unsharded"]["rows"]
            assert len(found["sharded"]["rows"]) == 40
        assert rank1["sharded"] == rank0["sharded"]
    # The run's own evaluations were sharded too, and recorded the same numbers.
    from store import RunStore

    recorded = RunStore().series(run.id, "val_accuracy").values
    last = json.loads(evaluations[-1].read_text())["unsharded"]["metrics"]["accuracy"]
    assert recorded[-1] == pytest.approx(last)
    _left_the_group(out)


def test_a_rank_with_fewer_rows_fails_every_rank_with_a_sentence(tmp_path, tiny_bert,
                                                                 sentiment_csv):
    from tests.support.tiny_models import write_sentiment_csv

    short = write_sentiment_csv(tmp_path / "short.csv", rows=96)
    started = time.monotonic()
    run, done, out = _worker_run(tmp_path, _config(tmp_path, tiny_bert, sentiment_csv),
                                 "fewer-rows", HUBTUNE_TEST_DATA=str(short))
    assert run.status == "failed"
    assert run.error.startswith("Rank 1's data differs from rank 0's (72 training and 24 "
                                "validation examples, 3 steps an epoch, against 120, 40 and "
                                "4); give every node the same data files."), run.error
    assert time.monotonic() - started < 200  # no collective waited for the missing steps
    _left_the_group(out)


def test_a_stopped_run_leaves_the_process_group(tmp_path, tiny_bert, sentiment_csv):
    cfg = _config(tmp_path, tiny_bert, sentiment_csv)
    cfg["train"]["max_steps"] = 400
    run, done, out = _worker_run(tmp_path, cfg, "stop")
    assert run.status == "stopped", (run.error, done.stderr[-3000:])
    assert 2 <= run.summary["steps"] < 400
    _left_the_group(out)


# -- several machines, and a rank the kernel kills ----------------------------------


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    return finish_node(proc, timeout=240)


def test_nodes_with_different_configs_fail_naming_the_setting(tiny_config, hubtune_home):
    port = _free_port()
    node0 = _node(tiny_config, 0, port)
    node1 = _node(tiny_config, 1, port, "--set", "train.learning_rate=0.01")
    code0, _, err0 = _finish(node0)
    code1, _, err1 = _finish(node1)
    sentence = ("Node 1's config differs from node 0's in train.learning_rate: 0.01 against "
                "0.003; start every node with the same config and --set values.")
    from store import RunStore

    (run,) = RunStore().list_runs(limit=None)
    assert run.status == "failed" and run.error == sentence, run.error
    assert code0 == 1 and sentence in err0
    assert code1 == 1 and sentence in err1, err1


def test_a_second_machine_given_a_taken_node_rank_is_told_and_leaves_the_run_alone(
        tiny_config, hubtune_home):
    from store import RunStore

    port = _free_port()
    endless = ("--set", "train.epochs=100000")
    node0 = _node(tiny_config, 0, port, *endless)
    twins = [_node(tiny_config, 1, port, *endless) for _ in range(2)]
    # The run trains until it is stopped, so the twin that comes second (however slow
    # this machine is) finds node 0 there and the rank held.
    deadline = time.monotonic() + 200
    while all(t.poll() is None for t in twins) and time.monotonic() < deadline:
        time.sleep(0.5)
    loser = next((t for t in twins if t.poll() is not None), None)
    (run,) = RunStore().list_runs(limit=None)
    subprocess.run([*HUBTUNE, "runs", "stop", str(run.id)], capture_output=True, cwd=REPO,
                   env=_env(), timeout=60)
    code0, _, err0 = _finish(node0)
    ends = {id(t): _finish(t) for t in twins}
    assert loser is not None, ends
    code, _, err = ends[id(loser)]
    assert code == 1 and "Node rank 1 is already taken by " in err, err
    assert "give each machine its own --node-rank from 0 to 1." in err
    run = RunStore().get_run(run.id)
    assert run.status == "stopped", (run.error, err0[-2000:])  # the loser changed nothing


def _rank_pid(home: Path, rank: str, deadline: float) -> int:
    """The pid of the training process of this test's home whose RANK is `rank`."""
    wanted = {f"HUBTUNE_HOME={home}".encode(), f"RANK={rank}".encode(),
              f"LOCAL_RANK={rank}".encode()}
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and wanted <= set(
                        (entry / "environ").read_bytes().split(b"\0")):
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.5)
    raise AssertionError(f"no rank {rank} found")


def test_a_rank_killed_by_sigkill_is_named_in_the_runs_record(tiny_config, hubtune_home):
    from store import RunStore

    started = subprocess.run(
        [*HUBTUNE, "train", str(tiny_config), "--processes", "2", "--detach",
         "--set", "train.epochs=400"],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
    assert started.returncode == 0, started.stderr
    run_id = int(started.stdout.splitlines()[0])
    store = RunStore()
    deadline = time.monotonic() + 180
    while store.last_step(run_id) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.last_step(run_id) >= 2, store.get_run(run_id).error
    os.kill(_rank_pid(hubtune_home, "1", deadline), signal.SIGKILL)
    # Rank 0 records what it saw; the launcher then puts torchrun's verdict in its place.
    deadline = time.monotonic() + 120
    while not (store.get_run(run_id).error or "").startswith("Rank 1 was killed") \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    run = store.get_run(run_id)
    assert run.status == "failed"
    assert run.error.startswith("Rank 1 was killed by SIGKILL, as the kernel's out-of-memory "
                                "killer does; check the machine's memory"), run.error
    assert "gloo" not in run.error and "Internal error" not in run.error
