"""Dtypes and mixed precision (issue #24, points 1, 3 and 5), proven on the CPU.

Float32 master weights whatever the checkpoint stores; losses in float32 under bf16
autocast; `auto` precision by native bf16 support, asked of NVML (faked at that
boundary only) so no CUDA context is made; evaluation and feature caching under the
training autocast; the fp16 gradient scaler kept in checkpoints. CPU autocast in
bfloat16 is real here; the fp16 overflow path needs a GPU and skips without one.
"""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

from engine.cluster.gpus import GpuMonitor
from engine.core.errors import HubtuneError
from engine.training.precision import native_bf16, resolve_precision
from tests.support.fake_nvml import FakeGpu, FakeNvml


@pytest.fixture(scope="module")
def bf16_bert(tiny_bert, tmp_path_factory):
    """The tiny BERT as many hub checkpoints are stored: bfloat16 weights."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("bf16") / "bert-bf16"
    BertModel.from_pretrained(tiny_bert).to(torch.bfloat16).save_pretrained(folder)
    for f in tiny_bert.iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            shutil.copy(f, folder / f.name)
    return folder


def _cfg(tmp_path, model, data, **train):
    from engine.core.config import RunConfig
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, model, data, max_steps=4).to_dict()
    cfg["train"].update(train)
    return RunConfig.from_dict(cfg)


def test_a_bf16_checkpoint_trains_in_float32_master_weights(tmp_path, bf16_bert,
                                                            sentiment_csv):
    from safetensors.torch import load_file

    from engine.training.loop import train

    assert "bfloat16" in (bf16_bert / "config.json").read_text()
    outcome = train(_cfg(tmp_path, bf16_bert, sentiment_csv), lambda e: None,
                    threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    saved = load_file(tmp_path / "out" / "model" / "model.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.float32}


def test_the_planner_counts_a_bf16_checkpoint_at_float32(bf16_bert, tiny_bert):
    from engine.core.config import HeadSpec, ModelSpec
    from engine.modeling.loading import build_model, on_meta_device

    with on_meta_device():
        stored_bf16 = build_model(ModelSpec(id=str(bf16_bert)), HeadSpec(), 2).model
    assert {p.dtype for p in stored_bf16.parameters()} == {torch.float32}
    built = build_model(ModelSpec(id=str(bf16_bert)), HeadSpec(), 2).model
    assert {p.dtype for p in built.parameters()} == {torch.float32}


@pytest.mark.parametrize("problem", ["regression", "multi_label"])
def test_losses_are_float32_under_bf16_autocast(problem):
    from engine.modeling.loading import task_loss

    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 1 if problem == "regression" else 3)
    x = torch.randn(4, 8)
    labels = (torch.tensor([1234.5, -987.25, 3.0, 0.5]) if problem == "regression"
              else torch.tensor([[1.0, 0.0, 1.0]] * 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        loss = task_loss(problem, logits, labels)
    assert loss.dtype == torch.float32
    # The target is not rounded to bfloat16 (1234.5 would become 1232.0).
    if problem == "regression":
        exact = torch.nn.functional.mse_loss(logits.float().squeeze(-1), labels)
    else:
        exact = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
    assert torch.equal(loss, exact)


def _monitor(*capabilities) -> GpuMonitor:
    gpus = [FakeGpu(f"GPU-{i:08x}-0000-0000-0000-000000000000", capability=c)
            for i, c in enumerate(capabilities)]
    return GpuMonitor(FakeNvml(gpus))


def test_auto_precision_is_bf16_only_where_the_gpu_computes_it_natively(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert native_bf16(_monitor((9, 0))) is True      # H100
    assert native_bf16(_monitor((8, 0))) is True      # A100
    assert native_bf16(_monitor((7, 5))) is False     # T4: emulated only
    assert native_bf16(_monitor((7, 0), (9, 0))) is False  # the first visible GPU decides
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert native_bf16(_monitor((7, 0), (9, 0))) is True
    assert resolve_precision("auto", cuda=True, bf16=lambda: True) == "bf16"
    assert resolve_precision("auto", cuda=True, bf16=lambda: False) == "fp16"
    assert resolve_precision("auto", cuda=False) == "no"
    assert resolve_precision("fp32", cuda=True) == "no"
    assert resolve_precision("bf16", cuda=False) == "bf16"  # CPU autocast
    with pytest.raises(HubtuneError, match="fp16 needs a GPU"):
        resolve_precision("fp16", cuda=False)


def test_probing_precision_creates_no_cuda_context():
    """The planner (and the TUI, which runs it) asks for `auto` without touching CUDA."""
    import subprocess
    import sys

    code = ("import torch; from engine.training.precision import resolve_precision; "
            "resolve_precision('auto'); print(torch.cuda.is_initialized())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_evaluation_and_feature_caching_run_under_the_training_autocast(
        tmp_path, tiny_bert, sentiment_csv):
    """A bf16 run on the CPU: every forward pass, training or not, runs in autocast."""
    from engine.core.events import StepLogged
    from engine.training.setup import RunSetup
    from tests.support.tests_helpers import prepared_loop

    seen: dict[str, set] = {"train": set(), "eval": set()}

    def record(module, args, output):
        kind = "train" if module.training else "eval"
        # The device the run trains on (cuda on a GPU box): autocast is per device type.
        device = next(module.parameters()).device.type
        seen[kind].add(torch.is_autocast_enabled(device)
                       and torch.get_autocast_dtype(device) == torch.bfloat16)

    for cached in (False, True):
        cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, precision="bf16")
        if cached:
            cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, precision="bf16", cache_features=True)
            from engine.core.config import RunConfig

            data = cfg.to_dict()
            data["freeze"] = {"policy": "head_only"}
            cfg = RunConfig.from_dict(data)
        events = []
        setup = RunSetup(cfg, events.append, threading.Event(), None)
        # The backbone's encoder: it runs in training steps, in evaluation, and (frozen
        # backbone) while its features are cached before the first step.
        original = setup._build_model

        def build(path, original=original):
            model = original(path)
            model.backbone.encoder.register_forward_hook(record)
            return model

        setup._build_model = build
        loop = prepared_loop(cfg, setup=setup)
        outcome = loop.train()
        assert outcome.status == "completed", outcome.error
        assert loop.run.precision == "bf16"
        assert any(isinstance(e, StepLogged) for e in events)
    assert seen["eval"] == {True}
    assert seen["train"] == {True}


def test_the_gradient_scaler_state_is_checkpointed(tmp_path):
    from engine.training.checkpoint import LoopState, load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=96.0, growth_interval=7)
    state = LoopState(step=3, epoch=0, batches_in_epoch=3, best_metric=None, best_step=0,
                      evals_without_gain=0)
    folder = save_checkpoint(tmp_path / "step-3", model, optimizer, scheduler, state,
                             scaler=scaler)
    fresh = torch.amp.GradScaler("cpu", init_scale=65536.0)
    load_checkpoint(folder, model, optimizer, scheduler, scaler=fresh)
    assert fresh.get_scale() == 96.0
    assert fresh.get_growth_interval() == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: fp16 autocast with a "
                    "gradient scaler")
def test_an_fp16_overflow_step_does_not_advance_the_schedule(tmp_path, tiny_bert,
                                                            sentiment_csv):
    from tests.engine.test_cuda_ready import _run_with_an_overflow_at_step_two
    from tests.support.tests_helpers import prepared_loop

    # Three warmup steps of four, so that every real step moves the rate (with two, the
    # rate after a wrongly counted step would equal the right one by chance).
    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, precision="fp16", warmup_ratio=0.9)
    loop = prepared_loop(cfg)
    # An infinite gradient at the second step: the scaler skips it.
    lrs = _run_with_an_overflow_at_step_two(loop)
    assert lrs[1] == lrs[0]  # the skipped step left the warmup where it was
    assert lrs[2] > lrs[1]  # the next real step moved it on
