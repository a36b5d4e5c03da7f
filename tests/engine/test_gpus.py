"""Which GPUs a run uses and what they read (issue #24, points 6 and 7).

NVML is the one thing faked: `FakeNvml` has the functions of the pynvml module that
`engine.cluster.gpus` calls, over a made-up machine, and raises as the real library does
for what a device cannot report (a MIG slice's utilisation). Everything above it (the
device resolution, the panel line, the run watcher, the launch check, `start_run`) is
the real code.
"""

from __future__ import annotations

import os
import re

import pytest

from engine.cluster.gpus import GpuMonitor, check_process_count, visible_gpu_count
from engine.core.config import RunConfig
from engine.core.environment import capture_environment
from engine.core.errors import HubtuneError
from tests.support.fake_nvml import GIB, FakeGpu, FakeNvml
from tui.formatting import human_bytes
from tui.gpu import gpu_line


def uuid(n: int) -> str:
    return f"GPU-{n:08x}-1111-2222-3333-444455556666"


def machine(count: int = 8, **fake) -> GpuMonitor:
    gpus = [FakeGpu(uuid(i), util=10 * i, used=(i + 1) * GIB) for i in range(count)]
    return GpuMonitor(FakeNvml(gpus, **fake))


def worker_env(*cuda_indices_and_uuids: tuple[int, str], cvd: str | None = None,
               local: int = 1) -> dict:
    """The device part of a run's env as `capture_environment` records it."""
    return {"cuda_visible_devices": cvd, "local_processes": local,
            "gpus": ["NVIDIA H100 80GB HBM3"] * len(cuda_indices_and_uuids),
            "gpu_devices": [{"cuda_index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": u}
                            for i, u in cuda_indices_and_uuids]}


# -- point 7: the GPU panel follows the run's own devices ----------------------


def test_the_panel_names_the_runs_gpus_by_uuid_not_the_first_four():
    monitor = machine(8)
    # Launched with CUDA_VISIBLE_DEVICES=6,5 under torchrun with 2 local processes: its
    # cuda:0 and cuda:1 are physical GPUs 6 and 5, recorded by UUID.
    env = worker_env((0, uuid(6)), (1, uuid(5)), cvd="6,5", local=2)
    assert monitor.run_devices(env) == [6, 5]
    readings = monitor.read(monitor.run_devices(env))
    assert [(r.index, r.utilisation, r.memory_used) for r in readings] == [
        (6, 60, 7 * GIB), (5, 50, 6 * GIB)]
    assert [r.uuid for r in readings] == [uuid(6), uuid(5)]
    line = gpu_line(readings)
    assert line.startswith("GPU6 60% · ") and "  GPU5 50% · " in line
    assert "GPU0" not in line


def test_only_the_gpus_the_runs_processes_train_on():
    """One process with four GPUs visible trains on the first of them only."""
    monitor = machine(8)
    env = worker_env(*[(i, uuid(p)) for i, p in enumerate((4, 5, 6, 7))], cvd="4,5,6,7")
    assert monitor.run_devices(env) == [4]


def test_uuid_order_wins_over_index_guessing():
    """CUDA's default order (fastest first) need not be NVML's: the UUIDs decide."""
    monitor = machine(4)
    env = worker_env((0, uuid(3)), cvd="0")  # cuda:0 was physical GPU 3
    assert monitor.run_devices(env) == [3]


def test_without_uuids_cuda_visible_devices_decides_indices_or_uuids():
    monitor = machine(8)
    assert monitor.run_devices({"cuda_visible_devices": "3,1", "local_processes": 2,
                                "gpu_devices": [{"cuda_index": 0, "uuid": None}]}) == [3, 1]
    # UUIDs, whole or a unique prefix, as CUDA accepts them.
    assert monitor.run_devices({"cuda_visible_devices": f"{uuid(2)},GPU-00000007",
                                "local_processes": 2}) == [2, 7]
    # The UUIDs recorded are not on this machine: fall back to the variable.
    env = worker_env((0, "GPU-not-here"), cvd="5")
    assert monitor.run_devices(env) == [5]


def test_cuda_visible_devices_parsed_as_cuda_parses_it():
    monitor = machine(4)
    assert monitor.visible(None) == [0, 1, 2, 3]
    assert monitor.visible("") == []
    assert monitor.visible("2,0") == [2, 0]
    assert monitor.visible("1,7,2") == [1]  # an index past the last GPU ends the list
    assert monitor.visible("1,-1,2") == [1]  # so does a negative one
    assert monitor.visible("1,1") == []  # a repeat hides every GPU
    assert monitor.visible("GPU-00000000") == [0]
    assert monitor.visible("GPU-0000") == []  # ambiguous prefix: CUDA sees nothing
    assert monitor.visible("GPU-00000003,GPU-bogus") == [3]


def test_an_old_run_without_device_records_shows_every_gpu():
    monitor = machine(2)
    assert monitor.run_devices({"gpus": ["NVIDIA H100 80GB HBM3"] * 2}) == [0, 1]
    assert monitor.run_devices({}) == [0, 1]


def test_a_run_whose_worker_saw_no_gpu_shows_none():
    monitor = machine(2)
    env = {"cuda_visible_devices": "", "local_processes": 1, "gpus": [], "gpu_devices": []}
    assert monitor.run_devices(env) == []
    assert gpu_line(monitor.read(monitor.run_devices(env))) == "no GPU"


def test_a_mig_slice_reads_na_for_utilisation_and_blanks_nothing_else():
    gpus = [FakeGpu(uuid(0), util=35, used=3 * GIB), FakeGpu(uuid(1), util=None)]
    mig = FakeGpu("MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                  name="NVIDIA A100 MIG 1g.10gb", used=2 * GIB, total=10 * GIB, mig_of=1)
    monitor = GpuMonitor(FakeNvml(gpus, [mig]))
    # torch reports the slice's UUID bare; the worker records it GPU-prefixed.
    env = worker_env((0, "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), (1, uuid(0)),
                     cvd="MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee,0", local=2)
    devices = monitor.run_devices(env)
    assert devices == [mig.uuid, 0]
    slice_, whole = monitor.read(devices)
    assert (slice_.index, slice_.mig, slice_.utilisation) == (1, True, None)
    assert (slice_.memory_used, slice_.memory_total) == (2 * GIB, 10 * GIB)
    assert (whole.index, whole.utilisation, whole.memory_used) == (0, 35, 3 * GIB)
    line = gpu_line([slice_, whole])
    assert line.startswith(f"GPU1 MIG n/a · {human_bytes(2 * GIB)}/{human_bytes(10 * GIB)}"
                           "  GPU0 35% · "), line
    # A whole GPU whose utilisation is unsupported: only that field is n/a.
    (lone,) = monitor.read([1])
    assert lone.utilisation is None and lone.memory_total == 80 * GIB
    assert gpu_line([lone]).startswith("GPU1 n/a · ")


def test_readings_carry_what_a_queue_needs():
    gpus = [FakeGpu(uuid(0), used=70 * GIB, pids=(4242, 4343)), FakeGpu(uuid(1))]
    (busy, idle) = GpuMonitor(FakeNvml(gpus)).read(processes=True)
    assert busy.processes == (4242, 4343) and busy.memory_free == 10 * GIB
    assert idle.processes == () and idle.memory_free == 79 * GIB


def test_no_driver_means_no_gpu():
    monitor = GpuMonitor(FakeNvml([FakeGpu(uuid(0))], driver=False))
    assert not monitor.available and monitor.count == 0
    assert monitor.read() == [] and monitor.run_devices(worker_env((0, uuid(0)))) == []
    assert gpu_line(monitor.read()) == "no GPU"


def test_more_than_four_devices_are_counted():
    monitor = machine(6)
    line = gpu_line(monitor.read())
    assert line.count("GPU") == 4 and line.endswith("+2 more")


def test_the_run_watcher_reads_the_selected_runs_gpus(store):
    from tui.run_watcher import RunWatcher

    run_id = store.create_run({"name": "x"}, name="x")
    env = worker_env((0, uuid(2)), cvd="2")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="here", env=env)
    posted = []
    watcher = RunWatcher(store, posted.append, lambda s: s.list_runs(), monitor=machine(4))
    watcher.poll_detail(run_id)
    (detail,) = posted
    assert detail.gpu.startswith("GPU2 20% · ") and "GPU0" not in detail.gpu


# -- the environment a run records --------------------------------------------


def test_the_environment_records_the_devices_the_worker_saw(monkeypatch):
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun sets it for two ranks
    env = capture_environment()
    assert env["cuda_visible_devices"] == "" and env["local_processes"] == 2
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    env = capture_environment()
    assert env["cuda_visible_devices"] is None and env["local_processes"] == 1
    assert [d["name"] for d in env["gpu_devices"]] == env["gpus"]
    if not torch.cuda.is_available():  # and nothing touched CUDA to find that out
        assert env["gpu_devices"] == [] and not torch.cuda.is_initialized()
    for device in env["gpu_devices"]:
        assert re.fullmatch(r"(GPU|MIG)-[0-9a-f-]{36}", device["uuid"]), device


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_recorded_uuids_name_the_same_gpus_to_nvml():
    """On a CUDA machine: torch's UUIDs, as recorded, are the ones real NVML knows."""
    env = capture_environment()
    monitor = GpuMonitor()
    assert env["gpu_devices"] and monitor.available
    devices = monitor.run_devices(env)
    assert len(devices) == 1  # one process: the first visible GPU
    (reading,) = monitor.read(devices)
    assert reading.uuid == env["gpu_devices"][0]["uuid"]
    assert reading.memory_total and reading.memory_total > 0
    assert visible_gpu_count(monitor) == len(env["gpu_devices"])


# -- point 6: no more processes than visible GPUs -------------------------------


def test_more_processes_than_visible_gpus_is_refused(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    two = machine(2)
    check_process_count(2, two)
    with pytest.raises(HubtuneError) as refused:
        check_process_count(3, two)
    message = str(refused.value)
    assert message.startswith("--processes 3 needs one GPU per process, but only 2 GPUs "
                              "are visible: ")
    assert "NCCL" in message and "Use --processes 2" in message
    assert "CUDA_VISIBLE_DEVICES" in message

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert visible_gpu_count(two) == 1
    with pytest.raises(HubtuneError, match=r"only 1 GPU is visible with "
                                           r"CUDA_VISIBLE_DEVICES=1: .* --processes 1,"):
        check_process_count(2, two)
    with pytest.raises(HubtuneError, match=r"^Run 7 was launched with --processes 2"):
        check_process_count(2, two, run_id=7)


def test_cpu_processes_over_gloo_stay_allowed(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    check_process_count(4, GpuMonitor(FakeNvml([], driver=False)))  # no driver
    check_process_count(4, GpuMonitor(FakeNvml([])))  # a driver, no GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden: gloo, as the test does
    check_process_count(4, machine(2))


def test_start_run_refuses_before_recording_a_run(store, monkeypatch, tmp_path):
    from engine.launch.start import start_run

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = RunConfig.from_dict({"model": {"id": "prajjwal1/bert-tiny"},
                               "data": {"train": str(tmp_path / "train.csv")}})
    with pytest.raises(HubtuneError, match="--processes 4 needs one GPU per process"):
        start_run(store, cfg, processes=4, gpus=machine(2))
    assert store.list_runs() == []
