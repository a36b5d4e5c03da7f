"""The pieces of the multi-process path that need no second process (issue #30, defect 4;
issue #29, class 7): the worker's environment, DDP's settings, what torchrun's verdict
on a killed rank reads as, what nodes compare. The CUDA test runs NCCL with one process
and skips cleanly without a GPU.
"""

from __future__ import annotations

import pytest
import torch


def test_cuda_device_order_follows_the_pci_bus_also_for_the_users_own_gpus():
    from engine.launch.start import worker_environment

    mine = worker_environment({"CUDA_VISIBLE_DEVICES": "1,0", "PATH": "/bin"}, keep_cuda=True)
    assert mine["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and mine["CUDA_VISIBLE_DEVICES"] == "1,0"
    # The user's own choice of order stands; slots the queue gives name the bus order too.
    theirs = worker_environment({"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"},
                                keep_cuda=True)
    assert theirs["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    slots = worker_environment({"RANK": "3", "MASTER_PORT": "1"}, ("gpu2", "gpu3"))
    assert slots == {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert "CUDA_DEVICE_ORDER" not in worker_environment({"PATH": "/bin"}, keep_cuda=True)


def test_ddp_keeps_gradients_in_its_buckets_and_waits_long_for_saves():
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    from engine.cluster.rendezvous import PROCESS_GROUP_TIMEOUT_S
    from engine.training.setup import ddp_settings

    ddp, group = ddp_settings()
    assert isinstance(ddp, DistributedDataParallelKwargs)
    assert ddp.to_kwargs() == {"gradient_as_bucket_view": True}
    assert isinstance(group, InitProcessGroupKwargs)
    assert group.timeout.total_seconds() == PROCESS_GROUP_TIMEOUT_S > 600  # NCCL's default


TORCHRUN_SUMMARY = """
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
engine.launch.worker FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-07_06:41:02
  host      : box
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 1235)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_06:41:00
  host      : box
  rank      : {rank} (local_rank: 1)
  exitcode  : {code} (pid: 1236)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 1236
============================================================
"""


def test_torchruns_verdict_on_a_killed_rank_reads_as_a_sentence():
    from engine.launch.nodes import killed_rank

    rank, sentence = killed_rank(TORCHRUN_SUMMARY.format(rank=3, code=-9))
    assert rank == 3
    assert sentence.startswith("Rank 3 was killed by SIGKILL, as the kernel's out-of-memory "
                               "killer does")
    assert killed_rank(TORCHRUN_SUMMARY.format(rank=1, code=-11)) == (1, "Rank 1 was ended "
                                                                         "by SIGSEGV")
    # An exit code is a rank that said why itself; no summary, nothing to say.
    assert killed_rank(TORCHRUN_SUMMARY.format(rank=1, code=1)) is None
    assert killed_rank("Traceback ...\nRuntimeError: boom\n") is None


def test_nodes_compare_settings_but_not_where_their_data_files_are_mounted():
    from engine.cluster.rendezvous import _comparable, code_version

    a = {"data": {"train": "/home/a/train.csv", "validation": None, "max_length": 32},
         "train": {"learning_rate": 0.003}}
    b = {"data": {"train": "/scratch/train.csv", "validation": None, "max_length": 32},
         "train": {"learning_rate": 0.003}}
    assert _comparable(a) == _comparable(b)
    assert "data.max_length" in _comparable(a) and "data.train" not in _comparable(a)
    hub = {"data": {"train": "hf:org/set"}}
    assert _comparable(hub) != _comparable({"data": {"train": "hf:org/other"}})
    assert code_version() == code_version() and code_version().startswith("hubtune ")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
def test_evaluation_pieces_cross_nccl_on_the_cpu(tmp_path):
    import torch.distributed as dist

    from engine.tasks import eval_shards

    dist.init_process_group("nccl", store=dist.FileStore(str(tmp_path / "store"), 1),
                            rank=0, world_size=1)
    try:
        torch.cuda.set_device(0)
        token = eval_shards._SHARD.set((0, 1))  # the gather path, with one rank
        try:
            found = eval_shards.gather({1: torch.ones(2, device="cuda"),
                                        0: [torch.zeros(1, device="cuda")]})
        finally:
            eval_shards._SHARD.reset(token)
        assert found[0][0].device.type == "cpu" and found[1].device.type == "cpu"
        assert found[1].tolist() == [1.0, 1.0]
    finally:
        dist.destroy_process_group()
