"""The private parts of torch, accelerate and transformers that training relies on.

Each has no public equivalent (the reason is under each function), so it is reached
here and nowhere else: an upgrade that moves one breaks this module, and
tests/engine/test_compat.py, which exercises each one for real, fails with the
library's name and version instead of a run failing half-way.

Checked against torch 2.14.1, accelerate 1.16.0 and transformers 5.25.0.

Must not: import torch, accelerate or transformers at module level (each function
imports what it reaches, so a module using one adapter pays for no other library).
"""

from __future__ import annotations

CHECKED = {"torch": "2.14.1", "accelerate": "1.16.0", "transformers": "5.25.0"}
"""The versions each adapter below was checked against (tests name them when one fails)."""


# -- accelerate ---------------------------------------------------------------------

def reset_accelerator_state() -> None:
    """Forget this process's accelerate settings (precision, gradient accumulation) so a
    new `Accelerator` may take others; the process group (PartialState) stays.

    accelerate keeps one precision per process and refuses a second, and a process may
    train several runs one after another (the benchmarks, the tests). Its only way to
    start over is `AcceleratorState._reset_state`, which its own tests use.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


def replace_prepared_model(accelerator, old, new) -> None:
    """Put `new` where `old` was among the models `accelerator` prepared.

    accelerate keeps the models it prepared (`Accelerator._models`, for save_state,
    unwrap and freeing memory) and offers no public way to swap one; preparing the new
    one would keep the old wrapper, and its gradient buckets, alive beside it.
    """
    accelerator._models = [new if m is old else m for m in accelerator._models]


def prepared_models(accelerator) -> list:
    """The models `accelerator` prepared, in order (a copy, for reading)."""
    return list(accelerator._models)


# -- torch --------------------------------------------------------------------------

def release_ddp_hooks(ddp) -> None:
    """Take the gradient hooks a DistributedDataParallel wrapper put on its module's
    parameters off them, so a new wrapper of the same module is the only one that
    all-reduces their gradients.

    The hooks otherwise go only when the wrapper's reducer is garbage collected, which
    nothing guarantees while a reference to it remains; torch has no public way.
    """
    ddp._remove_autograd_hooks()


def storage_key(tensor) -> int:
    """Identity of a tensor's storage, for meta tensors too (whose `data_ptr()` is 0
    for all of them, so the public address cannot tell two storages apart)."""
    return tensor.untyped_storage()._cdata


def cpu_flash_attention(query, key, value, dropout_p: float, is_causal: bool, *,
                        attn_mask=None, scale=None):
    """The output of the CPU flash-attention kernel (`torch.ops.aten.
    _scaled_dot_product_flash_attention_for_cpu`). On meta tensors it saves for
    backward what the GPU's fused kernels save (q, k, v, output, log-sum-exp), where
    the public `scaled_dot_product_attention` on meta tensors takes the math path,
    which keeps the whole attention matrix."""
    import torch

    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return fused(query, key, value, dropout_p, is_causal, attn_mask=attn_mask,
                 scale=scale)[0]


def dynamo_config():
    """torch.compile's settings module (`torch._dynamo.config`): where its recompile
    limit lives, as torch's compile troubleshooting guide documents; there is no
    public setter."""
    import torch._dynamo.config as dynamo_config

    return dynamo_config


# -- transformers -------------------------------------------------------------------

_MISSING = object()


def config_attention(config, default=None):
    """The attention kernel a transformers config selects ("sdpa", "eager",
    "flash_attention_2", ...): `default` for an object that is no transformers config
    (None, a torchvision model's), None for a config that has not chosen one yet.

    transformers 5 keeps the choice in `config._attn_implementation` and offers no
    public getter (only `PreTrainedModel.set_attn_implementation`).
    """
    value = getattr(config, "_attn_implementation", _MISSING)
    if value is _MISSING:
        return default
    return value if isinstance(value, str) else None
