"""The CUDA training path, proved on the CPU where its mechanism runs here (issue #30).

Each defect and speed setting has a CPU test of its mechanism: where batches live
and whether they are pinned, fp16 overflow steps under fused AdamW (torch's CPU
gradient scaler), deterministic kernels, the /dev/shm check, data workers that
outlive an epoch, token-budget batches and bucket padding, channels-last, TF32
and the attention kernel a run records. The `cuda_` tests run the same on a GPU
and skip cleanly without one.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from engine.core.events import Note, RunPrepared, StepLogged
from engine.training.backends import (
    attention_implementation,
    is_convolutional,
    set_determinism,
    set_tf32,
    use_channels_last,
)
from engine.training.buckets import (
    PadToBucket,
    TokenBudgetBatches,
    bucket_of,
    length_buckets,
    raise_recompile_limit,
    recompile_budget,
)
from engine.training.features import FeatureCollator
from engine.training.loader import (
    EpochCollate,
    batch_device,
    choose_loader,
    fit_workers,
    pin_batches,
    shm_free_bytes,
)
from engine.training.optim import OverflowSteps, is_fused

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
MIB = 1 << 20


def _cfg(tmp_path, model, data, *, max_steps=4, **train):
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, model, data, max_steps=max_steps)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def _head_only(cfg):
    return dataclasses.replace(cfg, freeze=dataclasses.replace(cfg.freeze, policy="head_only"))


# -- 1. pinning follows where the batches live ------------------------------------------


def test_only_cpu_batches_headed_to_a_gpu_are_pinned():
    assert pin_batches("cpu", "cuda") is True
    assert pin_batches("cpu", "cpu") is False
    assert pin_batches(torch.device("cuda", 0), "cuda") is False  # pinning those raises
    assert pin_batches("meta", "cuda") is False


def test_cached_features_on_the_device_are_neither_pinned_nor_sent_to_workers():
    """The meta device stands in for a GPU: features computed on the device stay there."""
    on_device = FeatureCollator(torch.zeros(6, 4, device="meta"), [0, 1, 0, 1, 0, 1], False)
    assert batch_device(on_device).type == "meta"
    assert on_device([0, 2])["features"].device.type == "meta"
    choice = choose_loader(on_device, "cuda", wanted_workers=2, batch_bytes=1024)
    assert (choice.pin_memory, choice.workers, choice.persistent) == (False, 0, False)
    assert "already on meta" in choice.warnings[0]

    on_cpu = FeatureCollator(torch.zeros(6, 4), [0, 1, 0, 1, 0, 1], False)
    assert choose_loader(on_cpu, "cuda", 0, 1024).pin_memory is True
    assert choose_loader(on_cpu, "cpu", 0, 1024).pin_memory is False


def test_token_collators_build_cpu_batches():
    from engine.data.loading import SequenceCollator, SequenceExamples

    examples = SequenceExamples(input_ids=[[1, 2, 3], [1, 2]], token_type_ids=None, labels=[0, 1])
    collate = SequenceCollator(examples, 0, False)
    assert batch_device(collate) == torch.device("cpu")
    assert {v.device.type for v in collate([0, 1]).values()} == {"cpu"}
    assert choose_loader(collate, "cuda", 0, 1024).pin_memory is True


@pytest.mark.slow
def test_a_head_only_run_on_cached_features_records_no_pinning(tmp_path, tiny_bert,
                                                               sentiment_csv):
    from engine.training.loop import train

    events = []
    cfg = _head_only(_cfg(tmp_path, tiny_bert, sentiment_csv, data_workers=2))
    outcome = train(cfg, events.append, threading.Event())
    assert outcome.status == "completed", outcome.error
    speed = next(e for e in events if isinstance(e, RunPrepared)).speed
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert speed["device"] == device and speed["pin_memory"] is False
    # Features on a GPU never reach worker processes; on the CPU they may.
    assert speed["data_workers"] == (0 if device == "cuda" else 2)


# -- 2. an fp16 overflow step under fused AdamW ----------------------------------------


def _poisoned_steps(optimizer, scaler, scheduler, model, poison_at: int, steps: int = 4):
    """Scaled steps with an infinite gradient at `poison_at`; (skipped flags, weights)."""
    watch = OverflowSteps(scaler, optimizer)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    flags, weights = [], []
    for step in range(steps):
        scaler.scale(model(x).pow(2).mean()).backward()
        if step == poison_at:
            model.weight.grad[0, 0] = float("inf")
        watch.before_step()
        scaler.step(optimizer)
        scaler.update()
        skipped = watch.skipped(True)
        if not skipped:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        flags.append(skipped)
        weights.append(model.weight.detach().clone())
    return flags, weights


def test_an_overflow_under_fused_adamw_is_a_skipped_step_on_the_cpu_scaler():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: s + 1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    assert is_fused(optimizer)
    flags, weights = _poisoned_steps(optimizer, scaler, scheduler, model, poison_at=1)
    assert flags == [False, True, False, False]
    assert torch.equal(weights[1], weights[0])  # the kernel itself skipped the update
    assert scheduler.last_epoch == 3  # three real steps, not four
    assert int(optimizer.state[model.weight]["step"]) == 3


def test_unfused_optimizers_are_left_to_accelerate():
    model = torch.nn.Linear(3, 2)
    plain = torch.optim.AdamW(model.parameters(), fused=False)
    assert not OverflowSteps(torch.amp.GradScaler("cpu"), plain).active
    assert not OverflowSteps(None, torch.optim.AdamW(model.parameters(), fused=True)).active


def _scaled_loop(cfg):
    """The real training loop with torch's CPU gradient scaler in accelerate's place
    (accelerate makes one only for fp16 on a GPU): the same optimizer wrapper, scaler
    calls and scheduler as an fp16 run on CUDA."""
    from engine.training.setup import RunSetup
    from tests.support.tests_helpers import prepared_loop

    class ScaledSetup(RunSetup):
        def _start_accelerator(self):
            super()._start_accelerator()
            self.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)

    return prepared_loop(cfg, setup=ScaledSetup(cfg, lambda e: None, threading.Event(), None))


def _run_with_an_overflow_at_step_two(loop):
    calls = {"n": 0}
    real_step = loop._step

    def step(batch):
        calls["n"] += 1
        return real_step(batch)

    def poison(grad):
        return grad * float("inf") if calls["n"] == 2 else grad

    for p in loop.run.model.parameters():
        if p.requires_grad:
            p.register_hook(poison)
    loop._step = step
    lrs = []
    real_log = loop._log
    loop._log = lambda: (lrs.append(loop.run.scheduler.get_last_lr()[0]), real_log())[1]
    loop.train()
    return lrs


@pytest.mark.slow  # trains four steps of a tiny model
def test_the_schedule_stands_still_on_an_overflow_step_of_the_training_loop(
        tmp_path, tiny_bert, sentiment_csv):
    # Three warmup steps of four: every real step moves the rate.
    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, warmup_ratio=0.9, max_grad_norm=None)
    loop = _scaled_loop(cfg)
    assert is_fused(loop.run.optimizer) and loop.run.overflow.active
    lrs = _run_with_an_overflow_at_step_two(loop)
    assert len(lrs) == 4
    assert lrs[1] == lrs[0]  # the skipped step left the warmup where it was
    assert lrs[2] > lrs[1]  # and the next real step moved it on


@cuda
def test_cuda_fp16_overflow_with_fused_adamw_does_not_advance_the_schedule(
        tmp_path, tiny_bert, sentiment_csv):
    from tests.support.tests_helpers import prepared_loop

    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, precision="fp16", warmup_ratio=0.9)
    loop = prepared_loop(cfg)
    assert loop.run.accelerator.scaler is not None and is_fused(loop.run.optimizer)
    lrs = _run_with_an_overflow_at_step_two(loop)
    assert lrs[1] == lrs[0] and lrs[2] > lrs[1]


# -- 3. deterministic kernels -----------------------------------------------------------


def test_deterministic_kernels_are_switched_on_and_off(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        set_determinism(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        set_determinism(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_an_operation_without_a_deterministic_kernel_is_named_in_a_sentence():
    from torch._prims_common import alert_not_deterministic

    from engine.training.loop import no_deterministic_kernel

    try:
        set_determinism(True)
        with pytest.raises(RuntimeError) as raised:  # torch's own refusal, as a GPU op gives
            alert_not_deterministic("upsample_bilinear2d_backward_out_cuda")
    finally:
        set_determinism(False)
    sentence = no_deterministic_kernel(raised.value)
    assert sentence.startswith("train.deterministic is on, but "
                               "upsample_bilinear2d_backward_out_cuda has no deterministic")
    assert "set train.deterministic=false" in sentence and "\n" not in sentence


@pytest.mark.slow
def test_a_deterministic_run_puts_the_process_back_afterwards(tmp_path, tiny_bert,
                                                              sentiment_csv):
    from engine.training.loop import train
    from tests.support.tests_helpers import prepared_loop

    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, max_steps=2, deterministic=True)
    loop = prepared_loop(cfg)
    assert torch.are_deterministic_algorithms_enabled() and loop.run.speed.deterministic
    assert train(cfg, lambda e: None, threading.Event()).status == "completed"
    assert not torch.are_deterministic_algorithms_enabled()


@cuda
@pytest.mark.slow
def test_cuda_deterministic_runs_end_bit_exact(tmp_path, tiny_bert, sentiment_csv):
    from safetensors.torch import load_file

    from engine.training.loop import train

    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, max_steps=6, deterministic=True)
    for name in ("a", "b"):
        outcome = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / name)
        assert outcome.status == "completed", outcome.error
    a = load_file(tmp_path / "a" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


# -- 6. a container's small /dev/shm ------------------------------------------------------


def test_a_small_shm_cuts_the_workers_with_what_to_do():
    images = 32 * 3 * 224 * 224 * 4  # a batch of 32 images at 224: 18 MiB
    none_fit = fit_workers(8, images, free=64 * MIB)  # Docker's default
    assert none_fit.workers == 0
    assert "--ipc=host" in none_fit.warning and "--shm-size" in none_fit.warning
    assert "64 MiB free" in none_fit.warning and "Bus error" in none_fit.warning
    some = fit_workers(8, images, free=600 * MIB)
    assert 0 < some.workers < 8 and f"reading batches in {some.workers} data" in some.warning
    assert fit_workers(8, images, free=8 << 30) == type(some)(8)  # --ipc=host: all of them
    assert fit_workers(2, 100_000, free=64 * MIB).warning is None  # text fits in 64 MB
    assert fit_workers(4, images, free=None).workers == 4  # no /dev/shm to read: no cut
    assert fit_workers(0, images, free=0).workers == 0


def test_the_shm_reading_and_the_loader_choice_follow_the_path(tmp_path, monkeypatch):
    import shutil

    assert shm_free_bytes(tmp_path) > 0
    assert shm_free_bytes(tmp_path / "missing") is None
    small = tmp_path / "shm"
    small.mkdir()
    real = shutil.disk_usage

    def usage(path):  # a 64 MB tmpfs at `small`, the real file systems elsewhere
        if str(path) == str(small):
            return type(real(tmp_path))(64 * MIB, 0, 64 * MIB)
        return real(path)

    monkeypatch.setattr("engine.training.loader.shutil.disk_usage", usage)
    collate = FeatureCollator(torch.zeros(4, 2), [0, 1, 0, 1], False)
    cut = choose_loader(collate, "cuda", 8, 19 * MIB, shm=small)
    assert cut.workers == 0 and not cut.persistent and "--shm-size" in cut.warnings[0]
    kept = choose_loader(collate, "cuda", 8, 19 * MIB, shm=tmp_path / "missing")
    assert kept.workers == 8 and kept.persistent and kept.warnings == ()


def test_the_run_environment_records_the_free_shared_memory():
    from engine.core.environment import capture_environment

    free = capture_environment()["shm_free_mib"]
    assert free is None or (isinstance(free, int) and free >= 0)


@pytest.mark.slow
def test_an_image_run_in_a_small_shm_trains_without_workers_and_says_so(
        tmp_path, tiny_vit, monkeypatch):
    from engine.core.config import RunConfig
    from engine.training.loop import train
    from tests.support import task_data as td

    monkeypatch.setattr("engine.training.loader.shm_free_bytes", lambda path=None: 64 * MIB)
    data = td.write_digits_folder(tmp_path / "digits", per_class=4, classes=range(2))
    cfg = RunConfig.from_dict({
        "model": {"id": str(tiny_vit)}, "head": {"task": "image-classification"},
        "data": {"train": str(data), "validation_split": 0.25},
        "train": {"max_steps": 2, "batch_size": 32, "data_workers": 4, "log_every": 1},
        "base_dir": str(tmp_path)})
    events = []
    outcome = train(cfg, events.append, threading.Event())
    assert outcome.status == "completed", outcome.error
    warnings = [e.message for e in events if isinstance(e, Note) and e.level == "warning"]
    assert any("/dev/shm" in w and "--ipc=host" in w for w in warnings), warnings
    assert next(e for e in events if isinstance(e, RunPrepared)).speed["data_workers"] == 0


# -- speed: persistent workers, token budgets, buckets, compile ------------------------


class _EpochEcho:
    """A collator that reports the epoch it was told, as image augmentation reads it."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, indices):
        return torch.full((len(indices),), self.epoch)


@pytest.mark.slow  # starts a data worker process
def test_workers_that_outlive_an_epoch_see_the_new_epoch():
    collate = EpochCollate(_EpochEcho())
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2, collate_fn=collate,
                                         num_workers=1, persistent_workers=True)
    seen = []
    for epoch in range(3):
        collate.set_epoch(epoch)
        seen.append(sorted({int(v) for batch in loader for v in batch}))
    assert seen == [[0], [1], [2]]


def test_token_budget_batches_fill_a_budget_per_bucket_and_repeat_per_epoch():
    import random

    rng = random.Random(0)
    lengths = [rng.choice([5, 14, 30, 60, 120]) for _ in range(500)]
    sampler = TokenBudgetBatches(lengths, budget=512, max_length=128, seed=3)
    assert length_buckets(128) == (16, 32, 48, 64, 96, 128)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert len(batches) == len(sampler)
    for batch in batches:
        bucket = {bucket_of(lengths[i], sampler.buckets) for i in batch}
        assert len(bucket) == 1
        assert len(batch) * bucket.pop() <= 512
    rows = {len(b) for b in batches if lengths[b[0]] < 16}
    assert max(rows) == 32  # short texts: 32 rows of 16 tokens, not batch_size rows
    assert sampler.batches() == batches  # a pure function of (seed, epoch)
    sampler.set_epoch(1)
    assert sampler.batches() != batches
    assert not hasattr(sampler, "batch_size")  # accelerate would take them for equal ones


def test_batches_are_padded_up_to_their_bucket():
    from engine.tasks.base import FieldCollator

    class Fields:
        fields = {"input_ids": [[5, 6, 7], [5, 6, 7, 8, 9]],
                  "labels": [[1, 2, 3], [1, 2, 3, 4, 5]]}

    pad = PadToBucket(FieldCollator(Fields(), {"input_ids": 0, "labels": -100}), 0, 128)
    batch = pad([0, 1])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][1].tolist() == [1] * 5 + [0] * 11
    assert batch["labels"][1, 5:].eq(-100).all() and batch["input_ids"][1, 5:].eq(0).all()


def test_the_recompile_limit_is_raised_to_the_graphs_a_static_run_needs():
    import torch._dynamo.config as dynamo_config

    before = dynamo_config.recompile_limit
    try:
        assert recompile_budget(12, 3) == 40
        assert raise_recompile_limit(40) == 40 == dynamo_config.recompile_limit
        assert raise_recompile_limit(2) == 40  # never lowered
    finally:
        dynamo_config.recompile_limit = before


def test_static_compile_plans_a_graph_per_bucket_and_stage(tmp_path, tiny_bert,
                                                         sentiment_csv):
    """Nothing compiles until the first call: the choice and the limit are checked here,
    the compiled run on a GPU (test_cuda_static_compile_over_token_budget_batches)."""
    import torch._dynamo.config as dynamo_config

    from engine.training.buckets import compile_model

    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, compile=True, compile_shapes="static",
               max_tokens_per_batch=512)
    sampler = TokenBudgetBatches([3, 20, 40, 100] * 10, 512, 128, seed=0)
    before = dynamo_config.recompile_limit
    try:
        compiled, mode = compile_model(torch.nn.Linear(2, 2), cfg, sampler, None, stages=5)
        assert mode == "static" and isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
        assert dynamo_config.recompile_limit >= recompile_budget(sampler.shapes(), 5) == 44
    finally:
        dynamo_config.recompile_limit = before
    plain = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=False))
    assert compile_model(torch.nn.Linear(2, 2), plain, sampler, None, 5)[1] == "off"


@pytest.mark.slow
def test_a_token_budget_run_records_its_speed_settings(tmp_path, tiny_bert, sentiment_csv):
    from engine.training.loop import train

    events = []
    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, max_tokens_per_batch=256)
    outcome = train(cfg, events.append, threading.Event())
    assert outcome.status == "completed", outcome.error
    speed = next(e for e in events if isinstance(e, RunPrepared)).speed
    assert speed["max_tokens_per_batch"] == 256 and speed["fused_optimizer"] is True
    assert speed["attention"] in ("sdpa", "eager")
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any(n.startswith("Speed settings on ") and "max_tokens_per_batch=256" in n
               for n in notes)
    assert any(isinstance(e, StepLogged) for e in events)


# -- speed: channels-last, TF32, attention --------------------------------------------


def _tiny_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 4, 3), torch.nn.AdaptiveAvgPool2d(1))


def test_convolutional_networks_go_channels_last_with_cudnn_autotuning():
    seen = []
    cnn = _tiny_cnn()
    cnn[2].register_forward_pre_hook(lambda m, args: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))
    assert is_convolutional(cnn)
    assert not is_convolutional(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 16),
                                                    torch.nn.Linear(4, 4)))  # a ViT's patches
    assert use_channels_last(_tiny_cnn(), "cpu", False) == (False, False)
    before = torch.backends.cudnn.benchmark
    try:
        # The CUDA branch's work is device-free: weights and images change memory order.
        assert use_channels_last(cnn, "cuda", deterministic=False) == (True, True)
        assert torch.backends.cudnn.benchmark
        assert cnn[0].weight.is_contiguous(memory_format=torch.channels_last)
        cnn(torch.randn(2, 3, 8, 8))
        assert seen == [True]
        assert use_channels_last(_tiny_cnn(), "cuda", deterministic=True) == (True, False)
    finally:
        torch.backends.cudnn.benchmark = before


def test_tf32_is_left_alone_on_the_cpu():
    before = torch.backends.cuda.matmul.fp32_precision
    assert set_tf32(True, "cpu") is False
    assert torch.backends.cuda.matmul.fp32_precision == before


def test_the_attention_kernel_is_read_from_the_model(tiny_bert):
    """The one read of transformers' private `_attn_implementation`: fails if it moves."""
    from engine.core.config import HeadSpec, ModelSpec
    from engine.modeling.loading import build_model

    model = build_model(ModelSpec(id=str(tiny_bert)), HeadSpec(), 2).model
    assert attention_implementation(model) in ("sdpa", "eager")
    model.backbone.set_attn_implementation("eager")
    assert attention_implementation(model) == "eager"
    assert attention_implementation(_tiny_cnn()) is None


# -- CUDA only --------------------------------------------------------------------------


@cuda
def test_cuda_tf32_follows_the_config():
    ampere = torch.cuda.get_device_capability() >= (8, 0)
    try:
        assert set_tf32(True, "cuda") is ampere
        assert (torch.backends.cuda.matmul.fp32_precision == "tf32") == ampere
        assert set_tf32(False, "cuda") is False
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    finally:
        set_tf32(True, "cuda")


@cuda
@pytest.mark.slow
def test_cuda_head_only_run_on_cached_features_trains(tmp_path, tiny_bert, sentiment_csv):
    """Defect 1: the features live on the GPU; pinning them crashed at step 0."""
    from tests.support.tests_helpers import prepared_loop

    loop = prepared_loop(_head_only(_cfg(tmp_path, tiny_bert, sentiment_csv)))
    run = loop.run
    assert run.cached and batch_device(run.collate).type == "cuda"
    assert run.speed.pin_memory is False and run.speed.tf32 is (
        torch.cuda.get_device_capability() >= (8, 0))
    assert loop.train().status == "completed"


@cuda
@pytest.mark.slow
def test_cuda_text_batches_are_pinned_and_report_the_attention_kernel(tmp_path, tiny_bert,
                                                                      sentiment_csv):
    from tests.support.tests_helpers import prepared_loop

    loop = prepared_loop(_cfg(tmp_path, tiny_bert, sentiment_csv))
    speed = loop.run.speed
    assert speed.device == "cuda" and speed.pin_memory is True
    assert speed.attention == "sdpa"
    assert loop.train().status == "completed"


@cuda
@pytest.mark.slow
def test_cuda_cnn_trains_channels_last_with_persistent_workers(tmp_path):
    from engine.core.config import RunConfig
    from tests.support import task_data as td
    from tests.support.tests_helpers import prepared_loop

    data = td.write_digits_folder(tmp_path / "digits", per_class=8, classes=range(2))
    cfg = RunConfig.from_dict({
        "model": {"id": "torchvision:resnet18", "weights": "none"},
        "head": {"task": "image-classification"},
        "data": {"train": str(data), "validation_split": 0.25, "image_size": 64,
                 "augment": True},
        "train": {"epochs": 2, "batch_size": 4, "data_workers": 2, "log_every": 1},
        "base_dir": str(tmp_path)})
    loop = prepared_loop(cfg)
    speed = loop.run.speed
    assert speed.channels_last and speed.cudnn_benchmark and speed.persistent_workers
    assert speed.attention is None
    assert loop.train().status == "completed"


@cuda
@pytest.mark.slow
def test_cuda_static_compile_over_token_budget_batches(tmp_path, tiny_bert, sentiment_csv):
    from engine.training.loop import train

    events = []
    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, max_steps=6, compile=True,
               compile_shapes="static", max_tokens_per_batch=512)
    outcome = train(cfg, events.append, threading.Event())
    assert outcome.status == "completed", outcome.error
    speed = next(e for e in events if isinstance(e, RunPrepared)).speed
    assert speed["compile"] == "static" and speed["max_tokens_per_batch"] == 512
