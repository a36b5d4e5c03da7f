"""Several machines without starting any (issue #20): the NodeSpec's checks, torchrun's
options, the join-failure sentences, `hubtune train`'s argument checks and the sbatch
script `hubtune slurm` writes. The real launches are in tests/reliability/test_nodes.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cluster.rendezvous import NodeSpec, join_failure, torchrun_args
from engine.core.errors import HubtuneError
from tui.cli.main import cli
from tui.cli.slurm import sbatch_script


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A config that loads: nothing here trains, so no model need exist (the shared
    fixture builds one, seconds of torch)."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nmodel: {id: org/tiny-model}\n"
                    "head: {task: text-classification}\ndata: {train: train.csv}\n")
    return path


def test_node_spec_checks_name_the_option_and_the_fix():
    with pytest.raises(HubtuneError, match=r"--node-rank 2 is outside 0..1 for --nnodes 2"):
        NodeSpec(2, 2, "h:29500")
    with pytest.raises(HubtuneError, match=r"--rdzv-endpoint 'node0' is not HOST:PORT"):
        NodeSpec(2, 1, "node0")
    with pytest.raises(HubtuneError, match="not HOST:PORT"):
        NodeSpec(2, 1, "node0:99999")
    with pytest.raises(HubtuneError, match="give 2 or more"):
        NodeSpec(1, 0, "h:1")
    # A host is a name or an address: nothing torchrun could read as an option or a
    # shell as a command.
    for hostile in ("-rdzv:1", "$(id):1", "a b:1", "node0\n:1", "`id`:1", ":29500"):
        with pytest.raises(HubtuneError, match="not HOST:PORT"):
            NodeSpec(2, 1, hostile)
    assert NodeSpec(2, 1, "[fe80::1]:29500").host == "[fe80::1]"
    spec = NodeSpec(3, 1, "node0.cluster:29500", 60)
    assert spec.host == "node0.cluster"
    assert NodeSpec.from_dict(spec.to_dict(), node_rank=1) == spec


def test_torchrun_gets_static_rendezvous_with_the_node_rank_and_timeout():
    args = torchrun_args(NodeSpec(2, 1, "10.0.0.1:29400", 45), 4)
    joined = " ".join(args)
    assert "--rdzv-backend static" in joined  # node 0 is rank 0: c10d orders by host name
    assert "--nnodes 2 --node-rank 1" in joined and "--nproc-per-node=4" in joined
    assert "--rdzv-endpoint=10.0.0.1:29400" in joined and "--rdzv-conf timeout=45" in joined
    assert "--max-restarts 0" in joined


def test_join_failures_are_one_sentence_with_the_endpoint_and_the_count():
    log = ("torch.distributed.DistStoreError: Timed out after 7 seconds waiting for "
           "clients. 1/3 clients joined.\n")
    said = join_failure(log, NodeSpec(3, 0, "n0:29500", 6), "/x/worker.log")
    assert said.startswith("Only 1 of 3 nodes joined the rendezvous at n0:29500 within 6 s;")
    assert said.count(". ") == 0 and said.endswith(".")
    log = ("torch.distributed.DistNetworkError: The client socket has timed out after "
           "5000ms while trying to connect to (n0, 29500).")
    said = join_failure(log, NodeSpec(3, 2, "n0:29500", 5), "/x/worker.log")
    assert said.startswith("Node 2 could not reach node 0 at n0:29500 within 5 s;")
    said = join_failure("something else", NodeSpec(2, 0, "n0:1", 5), "/x/worker.log")
    assert "n0:1" in said and "/x/worker.log" in said


@pytest.mark.parametrize(("args", "said"), [
    (["--nnodes", "2"], "--nnodes 2 needs --node-rank"),
    (["--nnodes", "2", "--node-rank", "0"], "--nnodes 2 needs --node-rank"),
    (["--node-rank", "1"], "--node-rank only apply to several machines; add --nnodes N"),
    (["--rdzv-endpoint", "h:1", "--join-timeout", "5"],
     "--rdzv-endpoint and --join-timeout only apply"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "outside 0..1"),
    (["--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", "h"], "is not HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", "h:1", "--queue"],
     "--queue cannot wait for slots on several machines"),
])
def test_train_refuses_node_options_that_cannot_work(tiny_config, store, args, said):
    result = CliRunner().invoke(cli, ["train", str(tiny_config), *args])
    assert result.exit_code == 1, result.output
    assert said in result.output
    assert store.list_runs(limit=None) == []  # nothing recorded


def test_the_sbatch_script_runs_the_same_train_on_every_node(tiny_config, tmp_path):
    text = sbatch_script(tiny_config, ("train.epochs=2",), nodes=4, gpus_per_node=8,
                         partition="gpu", time_limit="1-00:00:00", port=29555,
                         join_timeout=600, workdir=tmp_path, name="hubtune-x")
    assert text.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu",
                 "#SBATCH --time=1-00:00:00", "#SBATCH --job-name=hubtune-x"):
        assert line in text.splitlines()
    assert f"train {tiny_config.resolve()} --set train.epochs=2 --processes 8" in text
    assert "--join-timeout 600" in text
    assert '--nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID"' in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in text
    assert '--rdzv-endpoint "$head:29555"' in text
    assert ("srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'hubtune_node \"$@\"' "
            "hubtune_node ") in text
    assert "NCCL_SOCKET_IFNAME" in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    cpu = sbatch_script(tiny_config, (), nodes=2, gpus_per_node=0, workdir=tmp_path)
    assert "--gpus-per-node" not in cpu and "--processes 1" in cpu


def test_slurm_never_overwrites_and_says_when_sbatch_is_missing(tiny_config, tmp_path,
                                                                 monkeypatch):
    out = tmp_path / "job.sbatch"
    runner = CliRunner()
    made = runner.invoke(cli, ["slurm", str(tiny_config), "--nodes", "2", "--gpus-per-node",
                               "1", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert out.read_text().startswith("#!/bin/bash")
    again = runner.invoke(cli, ["slurm", str(tiny_config), "--nodes", "2", "--gpus-per-node",
                                "1", "--out", str(out)])
    assert again.exit_code == 1 and "already exists; pass --force" in again.output
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    sub = runner.invoke(cli, ["slurm", str(tiny_config), "--nodes", "2", "--gpus-per-node",
                              "1", "--out", str(out), "--force", "--submit"])
    assert sub.exit_code == 1
    assert f"sbatch is not on PATH, so the job was not submitted; run `sbatch {out}`" \
        in sub.output
    one = runner.invoke(cli, ["slurm", str(tiny_config), "--nodes", "1", "--gpus-per-node",
                              "1", "--out", str(tmp_path / "b.sbatch")])
    assert one.exit_code == 2  # click: --nodes is 2 or more


def test_submit_records_the_job_id_from_a_stand_in_sbatch(tiny_config, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "4242;cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    out = tmp_path / "job.sbatch"
    done = CliRunner().invoke(cli, ["slurm", str(tiny_config), "--nodes", "2",
                                    "--gpus-per-node", "2", "--out", str(out), "--submit"])
    assert done.exit_code == 0, done.output
    assert "Submitted SLURM job 4242" in done.output


def test_runs_show_json_has_world_size_for_runs_from_before(store, tiny_config):
    run_id = store.create_run({"name": "x"}, name="x", model_id="m", task="t", dataset="d")
    result = CliRunner().invoke(cli, ["runs", "show", str(run_id), "--json"])
    assert result.exit_code == 0, result.output
    import json

    shown = json.loads(result.output)
    assert shown["world_size"] == 1 and shown["nnodes"] == 1


def test_layers_keep_the_rendezvous_module_torch_free():
    import sys

    code = ("import sys, engine.cluster.rendezvous, tui.cli.slurm; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False", out.stderr
