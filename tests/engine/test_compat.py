"""Each private part of torch, accelerate, transformers and CPython that the engine
reaches (engine.training.compat, engine.core.compat), exercised for real: an upgrade
that moves or reshapes one fails here, naming the library, its version and the version
the adapter was checked against, before a run fails half-way."""

from __future__ import annotations

import contextlib
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from engine.core import compat as core_compat
from engine.training import compat

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def adapter(library: str, what: str):
    """Turn any failure inside into one naming the library and both versions."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 (an upgrade may break it any way at all)
        checked = compat.CHECKED.get(library, core_compat.CHECKED)
        installed = (f"Python {platform.python_version()}" if library == "python"
                     else f"{library} {version(library)}")
        pytest.fail(f"{installed}: {what} no longer works as the adapter expects (checked "
                    f"against {checked}); update engine/*/compat.py. {type(e).__name__}: {e}",
                    pytrace=False)


def test_accelerate_state_resets_so_a_second_precision_is_taken():
    from accelerate import Accelerator

    with adapter("accelerate", "AcceleratorState._reset_state"):
        compat.reset_accelerator_state()
        Accelerator(cpu=True, mixed_precision="no")
        with pytest.raises(ValueError):  # what the reset is for
            Accelerator(cpu=True, mixed_precision="bf16")
        compat.reset_accelerator_state()
        assert Accelerator(cpu=True, mixed_precision="bf16").mixed_precision == "bf16"
        compat.reset_accelerator_state()


def test_a_replaced_model_is_the_one_accelerate_saves(tmp_path):
    from accelerate import Accelerator
    from safetensors.torch import load_file

    with adapter("accelerate", "Accelerator._models"):
        compat.reset_accelerator_state()
        accelerator = Accelerator(cpu=True)
        old = accelerator.prepare(torch.nn.Linear(2, 2))
        new = torch.nn.Linear(2, 2)
        torch.nn.init.constant_(new.weight, 7.0)
        compat.replace_prepared_model(accelerator, old, new)
        assert compat.prepared_models(accelerator) == [new]
        accelerator.save_state(tmp_path)
        saved = load_file(tmp_path / "model.safetensors")["weight"]
        assert torch.equal(saved, torch.full((2, 2), 7.0))
        compat.reset_accelerator_state()


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from engine.training.compat import release_ddp_hooks

dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
module, x = torch.nn.Linear(4, 2), torch.randn(3, 4)
reduced = {"old": 0, "new": 0}

def counting(name):
    def hook(state, bucket):  # a comm hook runs once a bucket's gradients are all in
        reduced[name] += 1
        done = torch.futures.Future()
        done.set_result(bucket.buffer())
        return done
    return hook

old = DistributedDataParallel(module)
old.register_comm_hook(None, counting("old"))
release_ddp_hooks(old)
old(x).sum().backward()  # its gradients no longer reach the old wrapper's buckets
new = DistributedDataParallel(module)
new.register_comm_hook(None, counting("new"))
new(x).sum().backward()
dist.destroy_process_group()
print(reduced)
"""


def test_a_released_ddp_wrapper_reduces_no_more_gradients(tmp_path):
    """In a process of its own: a process group outlives the test otherwise."""
    out = subprocess.run([sys.executable, "-c", DDP_SCRIPT, str(tmp_path / "rendezvous")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    with adapter("torch", "DistributedDataParallel._remove_autograd_hooks"):
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "{'old': 0, 'new': 1}"


def test_storage_keys_tell_meta_storages_apart():
    with adapter("torch", "UntypedStorage._cdata"):
        a, b = torch.empty(4, 4, device="meta"), torch.empty(4, 4, device="meta")
        assert isinstance(compat.storage_key(a), int)
        assert compat.storage_key(a) == compat.storage_key(a.view(16)) == compat.storage_key(a[1])
        assert compat.storage_key(a) != compat.storage_key(b)


def test_the_cpu_flash_attention_kernel_matches_the_public_one():
    from torch.nn import functional as F

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    with adapter("torch", "aten._scaled_dot_product_flash_attention_for_cpu"):
        out = compat.cpu_flash_attention(q, k, v, 0.0, True)
        assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                              atol=1e-5)
        meta = compat.cpu_flash_attention(*(t.to("meta") for t in (q, k, v)), 0.0, False)
        assert meta.shape == (1, 2, 5, 8) and meta.device.type == "meta"


def test_the_compile_settings_hold_the_recompile_limit():
    with adapter("torch", "torch._dynamo.config.recompile_limit"):
        assert isinstance(compat.dynamo_config().recompile_limit, int)


def test_the_attention_kernel_is_read_from_a_transformers_config():
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=8)
    with adapter("transformers", "PretrainedConfig._attn_implementation"):
        model = BertModel(config)
        assert compat.config_attention(model.config) in ("sdpa", "eager")
        model.set_attn_implementation("eager")
        assert compat.config_attention(model.config) == "eager"
        assert compat.config_attention(None, default="none") == "none"
        assert compat.config_attention(object()) is None


EXIT_SCRIPT = """
import atexit
from engine.core.compat import run_exit_handlers
atexit.register(lambda: print("handler ran", flush=True))
print("ran early:", run_exit_handlers(), flush=True)
"""


def test_exit_handlers_run_early_and_only_once():
    out = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    with adapter("python", "atexit._run_exitfuncs"):
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["handler ran", "ran early: True"]
