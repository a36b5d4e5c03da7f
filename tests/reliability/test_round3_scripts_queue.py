"""Hardening round 3 (issue #29), classes 1 and 8: generated scripts never run what a
value says, and the queue never stalls or orphans a run.

The sbatch script is run for real by bash, under a stand-in `srun` that records its
argv and runs the rest of its command line as SLURM would on one node, and a stand-in
`hubtune` that records the argv it was given: no hostile value may run a command, and
each must arrive as one literal argument. The queue cases use the real store and
scheduler; their worker processes are real too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import engine.launch.start
import tui.cli.slurm as slurm_cli
from engine.cluster.gpus import GpuMonitor
from engine.core.config import RunConfig, load_config
from engine.launch.outcome import EXIT_NOT_OURS
from engine.launch.start import start_queued, start_run
from engine.launch.worker import run_worker
from engine.runs.queue import QueueSettings, assign_waiting
from store import RunStore, data_dir
from tests.support.cli_runner import hubtune
from tests.support.fake_nvml import FakeNvml
from tests.support.tests_helpers import config_for, train_in_process
from tui.cli.base import Failure
from tui.cli.main import cli
from tui.cli.slurm import sbatch_script
from tui.cli.train import follow

# -- class 1: the sbatch script -------------------------------------------------------

RECORDER = """#!{python}
import json, os, sys
with open(os.environ[{key!r}], "w") as fh:
    json.dump(sys.argv[1:], fh)
"""

SRUN = """#!{python}
# Records its argv, then runs the command after srun's own options as one node would.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["SRUN_RECORD"], "w") as fh:
    json.dump(args, fh)
first = next(i for i, a in enumerate(args) if not a.startswith("-"))
env = dict(os.environ, SLURM_NNODES="2", SLURM_NODEID="0", SLURM_JOB_NODELIST="node-a,node-b")
os.execvpe(args[first], args[first:], env)
"""


def hostile(tag: str) -> str:
    """A value that would create a file `tag-...` in $HOME (the markers' folder) in every
    way a shell could be talked into running it; no '/', so it can name a file too."""
    return (f"x$(cd;touch {tag}-dollar)`cd;touch {tag}-tick`'; cd; touch {tag}-quote; '\"; "
            f"cd; touch {tag}-dquote; \"\ncd; touch {tag}-newline\n${{IFS}}|touch {tag}-pipe;#")


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """PATH with the stand-in srun first, a stand-in hubtune (in a folder whose name is
    hostile too), and the folder the markers would appear in."""
    marks = tmp_path / "marks"
    marks.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(SRUN.format(python=sys.executable))
    srun.chmod(0o755)
    tool_dir = tmp_path / hostile("tooldir")
    tool_dir.mkdir()
    tool = tool_dir / "hubtune"
    tool.write_text(RECORDER.format(python=sys.executable, key="HUBTUNE_RECORD"))
    tool.chmod(0o755)
    monkeypatch.setattr(slurm_cli, "hubtune_command", lambda: [str(tool)])
    records = {"srun": tmp_path / "srun.json", "hubtune": tmp_path / "hubtune.json"}
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SRUN_RECORD": str(records["srun"]),
           "HUBTUNE_RECORD": str(records["hubtune"]), "HOME": str(marks)}
    return marks, tool, records, env


def run_script(path: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True,
                          timeout=30)


def test_the_sbatch_script_runs_no_value_as_shell(stand_ins, tmp_path: Path):
    marks, tool, records, env = stand_ins
    workdir = tmp_path / hostile("workdir")
    workdir.mkdir()
    config = workdir / (hostile("config") + ".yaml")
    config.write_text("name: x\n")
    overrides = (f"name={hostile('set')}", "train.epochs=1")
    text = sbatch_script(config, overrides, nodes=2, gpus_per_node=0, workdir=workdir,
                         partition="gpu,debug", time_limit="1-00:00:00")
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    env["HUBTUNE_RDZV_HOST"] = hostile("env")  # read by the node at run time

    done = run_script(script, env)

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in marks.iterdir()) == []  # no injected command ran
    train = [str(tool), "train", str(config.resolve()), "--set", overrides[0], "--set",
             overrides[1], "--processes", "1"]
    srun_argv = json.loads(records["srun"].read_text())
    assert srun_argv == ["--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash", "-c",
                         'hubtune_node "$@"', "hubtune_node", *train]
    assert json.loads(records["hubtune"].read_text()) == [
        *train[1:], "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint",
        f"{env['HUBTUNE_RDZV_HOST']}:29500"]
    # the #SBATCH lines sbatch reads hold only the checked values
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert directives[-2:] == ["#SBATCH --partition=gpu,debug", "#SBATCH --time=1-00:00:00"]


@pytest.mark.parametrize("field, value", [
    ("partition", "gpu\ntouch /tmp/pwned"),
    ("partition", "gpu --chdir=/"),
    ("partition", "gpu'"),
    ("partition", "$(id)"),
    ("partition", ""),
    ("time_limit", "1:00\n#SBATCH --wrap=id"),
    ("time_limit", "`id`"),
    ("time_limit", "1:00 --uid=0"),
    ("name", "job\nrm -rf ~"),
    ("name", "job name"),
    ("name", "jöb"),
])
def test_an_sbatch_directive_value_that_could_end_its_line_is_refused(field, value, tmp_path):
    with pytest.raises(Failure) as caught:
        sbatch_script(tmp_path / "c.yaml", (), nodes=2, gpus_per_node=1, workdir=tmp_path,
                      **{field: value})
    message = caught.value.message
    assert "cannot go into an #SBATCH line" in message and "\n" not in message


def test_counts_that_are_not_numbers_never_reach_the_script(tmp_path):
    with pytest.raises(Failure, match="--port must be a whole number"):
        sbatch_script(tmp_path / "c.yaml", (), nodes=2, gpus_per_node=1, port="1; id")
    with pytest.raises(Failure, match="--nodes must be a whole number"):
        sbatch_script(tmp_path / "c.yaml", (), nodes="2\nid", gpus_per_node=1)
    with pytest.raises(Failure, match="at most 65535"):
        sbatch_script(tmp_path / "c.yaml", (), nodes=2, gpus_per_node=1, port=99999)
    with pytest.raises(Failure, match="NUL character"):
        sbatch_script(tmp_path / "c.yaml", ("name=a\0b",), nodes=2, gpus_per_node=1)


def test_slurm_cli_refuses_hostile_directives_and_quotes_the_rest(stand_ins, tmp_path: Path,
                                                                  monkeypatch):
    marks, tool, records, env = stand_ins
    config = tmp_path / "cfg.yaml"
    config.write_text("name: tiny\nmodel: {id: org/tiny-model}\n"
                      "head: {task: text-classification}\ndata: {train: train.csv}\n")
    out = tmp_path / "job.sbatch"
    runner = CliRunner()
    base = ["slurm", str(config), "--nodes", "2", "--gpus-per-node", "1", "--out", str(out)]
    for option in (["--partition", "gpu\ntouch x"], ["--time", "10\nid"],
                   ["--partition", "a b"]):
        bad = runner.invoke(cli, [*base, *option])
        assert bad.exit_code == 1, bad.output
        assert bad.output.startswith("Error: ") and bad.output.count("\n") == 1
        assert "cannot go into an #SBATCH line" in bad.output
        assert not out.exists()  # nothing written
    # a run name from the config with shell in it: the job name keeps only safe letters,
    # the override reaches hubtune word for word
    name = "tiny$(cd;touch name)`cd;touch tick` ñ"
    monkeypatch.chdir(tmp_path)
    made = runner.invoke(cli, [*base, "--set", f"name={name}", "--partition", "gpu",
                               "--time", "30"])
    assert made.exit_code == 0, made.output
    text = out.read_text()
    assert "#SBATCH --job-name=hubtune-tiny--cd-touch-name--cd-touch-tick---\n" in text
    job = next(line for line in text.splitlines() if line.startswith("#SBATCH --job-name="))
    assert slurm_cli.JOB_NAME.fullmatch(job.split("=", 1)[1])
    done = run_script(out, env)
    assert done.returncode == 0, done.stderr
    assert list(marks.iterdir()) == []
    argv = json.loads(records["hubtune"].read_text())
    assert argv[argv.index("--set") + 1] == f"name={name}"


# -- class 8: the queue never stalls or orphans ---------------------------------------


def wait_until(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def cpu_box() -> GpuMonitor:
    return GpuMonitor(FakeNvml([], driver=False))


@pytest.fixture
def quick(tmp_path: Path, tiny_bert: Path, sentiment_csv: Path) -> RunConfig:
    """A run that trains a few steps of the tiny model and ends."""
    return config_for(tmp_path, tiny_bert, sentiment_csv, max_steps=2)


@pytest.fixture
def light_config(tmp_path: Path, sentiment_csv: Path) -> Path:
    """A config `train` accepts without loading a model: nothing here trains it."""
    model = tmp_path / "model"
    model.mkdir()
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": "q", "model": {"id": str(model)}, "head": {"task": "text-classification"},
        "data": {"train": str(sentiment_csv)}, "train": {"epochs": 1}}))
    return path


@pytest.fixture
def light(light_config: Path) -> RunConfig:
    return load_config(light_config)


def two_waiting(store, cfg: RunConfig) -> tuple[int, int]:
    """Two runs waiting for the one CPU slot, none started."""
    store.set_queue_paused(True)
    a = start_run(store, cfg, queue=True, gpus=cpu_box())
    b = start_run(store, cfg, queue=True, gpus=cpu_box())
    store.set_queue_paused(False)
    return a, b


def give_slot(store, run_id: int) -> str:
    """What start_queued does before it spawns: the run at the head gets the slot."""
    (given,) = assign_waiting(store, monitor=cpu_box(), settings=QueueSettings())
    assert given.run_id == run_id and given.devices == ("cpu0",)
    return given.lease


@pytest.fixture
def launches(monkeypatch) -> list[int]:
    """The runs whose worker launch was asked for, recorded instead of run: what the
    queue decides is the subject here, not the training (tests/tui/test_run_queue.py
    does the same)."""
    asked: list[int] = []
    monkeypatch.setattr(engine.launch.start, "spawn_worker", lambda store, run_id, *a, **k:
                        asked.append(run_id))
    return asked


@pytest.mark.slow  # run_worker's environment capture imports torch in this process
def test_a_run_deleted_before_its_worker_claims_it_lets_the_next_start(store, light, launches):
    a, b = two_waiting(store, light)
    lease = give_slot(store, a)
    store.delete_run(a)  # as the TUI deletes, after its worker was spawned
    # its worker starts, finds its run gone, and is the only process left to notice
    assert run_worker(a, store.path, lease) == EXIT_NOT_OURS
    assert launches == [b], "the next run in line never got the freed slot"
    assert store.get_run(b).devices == ("cpu0",)


def test_a_run_deleted_between_its_slot_and_its_spawn_lets_the_next_start(
        store, light, monkeypatch):
    a, b = two_waiting(store, light)
    spawn = engine.launch.start.spawn_worker  # the real one: a's launch finds its run gone
    asked: list[int] = []

    def rm_lands_first(store_, run_id, *args, **kw):
        if run_id == a:  # `runs rm` lands between the slot and the worker's launch
            store.delete_run(a)
            return spawn(store_, run_id, *args, **kw)
        asked.append(run_id)

    monkeypatch.setattr(engine.launch.start, "spawn_worker", rm_lands_first)
    assert start_queued(store, monitor=cpu_box()) == [b]
    assert asked == [b] and store.get_run(b).devices == ("cpu0",)


def test_runs_rm_of_a_run_that_holds_its_slot_starts_the_next(store, light, launches):
    a, b = two_waiting(store, light)
    give_slot(store, a)  # and the process that was to launch it died
    result = hubtune("runs", "rm", str(a))
    assert result.returncode == 0, result.stderr
    assert launches == [b] and store.get_run(b).devices == ("cpu0",)


@pytest.mark.slow
async def test_deleting_a_run_that_holds_its_slot_in_the_tui_starts_the_next(
        store, light, launches, monkeypatch):
    from textual.widgets import DataTable

    from tests.support.pilot_wait import select_run, wait_for
    from tui.app import make_app

    monkeypatch.setattr("tui.gpu.GpuMonitor", cpu_box)
    monkeypatch.setattr("engine.launch.start.GpuMonitor", cpu_box)
    a, b = two_waiting(store, light)
    give_slot(store, a)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        await select_run(pilot, a)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: launches == [b])
    assert store.get_run(b).devices == ("cpu0",)


@pytest.mark.parametrize("breakage", ["slots setting", "worker log"])
def test_a_plain_train_that_cannot_launch_ends_failed_not_queued(store, light_config,
                                                                 monkeypatch, breakage):
    if breakage == "slots setting":
        monkeypatch.setenv("HUBTUNE_CPU_SLOTS", "zero")
        why = "HUBTUNE_CPU_SLOTS must be a whole number"
    else:  # the next run's worker log cannot be opened
        (data_dir() / "runs" / "1" / "worker.log").mkdir(parents=True)
        why = "Cannot write the worker log"
    result = hubtune("train", str(light_config))
    assert result.returncode == 1 and why in result.stderr
    assert result.stderr.count("\n") == 1
    (run,) = store.list_runs(limit=None)
    assert run.status == "failed" and why in run.error and run.finished_utc
    assert store.queue_state().held == {}  # its slot is free again
    assert why in store.events(run.id)[-1].message


def test_a_queued_run_whose_worker_died_before_claiming_it_is_followed_to_failed(store):
    run_id = store.create_run({"name": "x"}, name="x")
    gone = subprocess.Popen(["true"])
    gone.wait()
    store.set_pid(run_id, gone.pid, store.get_run(run_id).lease)
    out: list[str] = []
    follower = threading.Thread(target=lambda: out.append(follow(store_copy(store), run_id)),
                                daemon=True)
    follower.start()
    follower.join(timeout=15)
    assert out == ["failed"], "follow waited on a run whose worker was gone"
    assert "exited before it started training" in store.get_run(run_id).error


def store_copy(store) -> RunStore:
    return RunStore(store.path)  # the follower's own connection, as in its own process


@pytest.mark.slow
def test_a_resume_that_cannot_launch_leaves_the_run_resumable(store, tmp_path, tiny_bert,
                                                              sentiment_csv, monkeypatch):
    run_id = train_in_process(config_for(tmp_path, tiny_bert, sentiment_csv, epochs=1))
    store.finish(run_id, "stopped")  # stopped with its checkpoints
    assert store.checkpoints(run_id)
    monkeypatch.setenv("HUBTUNE_CPU_SLOTS", "0")
    failed = hubtune("runs", "resume", str(run_id), "--detach")
    assert failed.returncode == 1 and "HUBTUNE_CPU_SLOTS" in failed.stderr
    run = store.get_run(run_id)
    assert run.status == "failed" and "HUBTUNE_CPU_SLOTS" in run.error
    assert store.checkpoints(run_id)  # nothing of the run was lost
    monkeypatch.delenv("HUBTUNE_CPU_SLOTS")
    again = hubtune("runs", "resume", str(run_id), "--detach")
    assert again.returncode == 0, again.stderr
    # its worker claims it: the resume really started, from the checkpoint kept
    wait_until(lambda: store.get_run(run_id).status in ("running", "completed"),
               what="the resumed run's worker")


def shared_homes(tmp_path: Path) -> tuple[Path, Path]:
    """Two homes, the second's database a symlink to the first's."""
    first, second = tmp_path / "first", tmp_path / "second"
    RunStore(first / "hubtune.db").close()
    second.mkdir()
    (second / "hubtune.db").symlink_to(first / "hubtune.db")
    return first, second


def test_homes_sharing_a_database_through_a_symlink_are_one_store(tmp_path, monkeypatch):
    first, second = shared_homes(tmp_path)
    monkeypatch.setenv("HUBTUNE_HOME", str(second))
    run_id = RunStore().create_run({"name": "x"})
    (second / "runs" / str(run_id)).mkdir(parents=True)
    monkeypatch.setenv("HUBTUNE_HOME", str(first))
    assert RunStore().recorded_home(run_id) == second
    assert not (second / "hubtune.db.lock").exists()  # one store, one migration lock
    # a copy of the database is another store: its runs' folders are its own home's
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "hubtune.db").write_bytes((first / "hubtune.db").read_bytes())
    assert RunStore(copy / "hubtune.db").recorded_home(run_id) is None


@pytest.mark.slow
def test_a_run_queued_from_one_home_starts_from_the_other(tmp_path, monkeypatch, quick):
    first, second = shared_homes(tmp_path)
    monkeypatch.setenv("HUBTUNE_HOME", str(second))
    store = RunStore()
    store.set_queue_paused(True)
    run_id = start_run(store, quick, queue=True, gpus=cpu_box())
    monkeypatch.setenv("HUBTUNE_HOME", str(first))
    other = RunStore()
    other.set_queue_paused(False)
    assert start_queued(other, monitor=cpu_box()) == [run_id]
    wait_until(lambda: other.get_run(run_id).status not in ("queued", "running"),
               what="the run")
    run = other.get_run(run_id)
    assert run.status == "completed", run.error
    assert (second / "runs" / str(run_id) / "worker.log").is_file()
    assert not (first / "runs").exists()  # the run's files stayed in its own home


def test_slurm_out_never_replaces_the_config_it_reads(tmp_path: Path):
    config = tmp_path / "cfg.yaml"
    text = ("name: tiny\nmodel: {id: org/tiny-model}\n"
            "head: {task: text-classification}\ndata: {train: train.csv}\n")
    config.write_text(text)
    alias = tmp_path / "alias.yaml"
    alias.symlink_to(config)
    for out in (config, alias):
        result = CliRunner().invoke(cli, ["slurm", str(config), "--nodes", "2",
                                          "--gpus-per-node", "1", "--out", str(out),
                                          "--force"])
        assert result.exit_code == 1, result.output
        assert "which this command reads" in result.output
        assert result.output.count("\n") == 1
    assert config.read_text() == text
