"""The pre-launch plan: exact byte counts for weights, gradients and optimizer state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.config import FreezeSpec, HeadSpec, ModelSpec
from engine.modeling.freeze import plan_freeze
from engine.modeling.loading import build_model
from engine.training.plan import MemoryEstimate, estimate_memory

REPO = Path(__file__).resolve().parents[2]


def test_static_parts_are_exact_and_activations_follow_the_plan(tiny_bert):
    model = build_model(ModelSpec(id=str(tiny_bert)), HeadSpec(), 2).model
    params = list(model.named_parameters())
    full = estimate_memory(model, plan_freeze(model, FreezeSpec()), batch_size=8, seq_len=16)
    assert full.weights == sum(p.numel() * 4 for _, p in params)
    assert full.gradients == full.weights
    assert full.optimizer == 2 * full.weights
    head = plan_freeze(model, FreezeSpec(policy="head_only"))
    head_only = estimate_memory(model, head, batch_size=8, seq_len=16)
    trainable_bytes = sum(p.numel() * 4 for n, p in params if n in head.trainable)
    assert head_only.gradients == trainable_bytes
    assert head_only.optimizer == 2 * trainable_bytes
    # The head's own input (8 pooled vectors) and dropout mask are activations: the old
    # formula said 0 here, but a step does keep them.
    assert 0 < head_only.activations < full.activations / 20
    half = estimate_memory(model, plan_freeze(model, FreezeSpec(policy="freeze_first_n", n=1)),
                           batch_size=8, seq_len=16)
    # Block 0 saves nothing; block 1 saves its own and the head's (no longer exactly half:
    # the head's tensors are counted once whatever is frozen).
    assert 0.3 * full.activations < half.activations < 0.7 * full.activations
    assert full.activations_checkpointed < full.activations
    assert all(p.requires_grad for _, p in params)  # the plan left the model as it was


def test_plan_cli_json(tmp_path, tiny_bert, sentiment_csv):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"model: {{id: {tiny_bert}}}\ndata: {{train: {sentiment_csv}}}\n"
                   "freeze: {policy: freeze_first_n, n: 1}\n")
    from tests.support.cli_runner import hubtune

    out = hubtune("plan", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    groups = {g["name"]: g for g in data["groups"]}
    assert groups["embeddings"]["trainable"] == 0 and groups["block.0"]["trainable"] == 0
    assert groups["block.1"]["frozen"] == 0 and groups["head"]["params"] == 32 * 2 + 2
    assert data["trainable"] + data["frozen"] == sum(g["params"] for g in data["groups"])
    # The total is the replayed peak: every term, less what is never live at once (the
    # old total summed four terms and left out the loss buffers and fixed costs).
    memory = data["memory_bytes"]
    assert memory["total"] == sum(memory[k] for k in MemoryEstimate.TERMS) - memory["overlap"]
    assert memory["total_low"] < memory["total"] < memory["total_high"]
    assert data["memory_margin"] == 0.15 and data["activations_counted"] is True
    assert data["batch_shape"]["input_ids"][0] == data["batch_size"] == 32
    assert data["device"] == "cpu" and data["attention"] == "sdpa"
    bad = hubtune("plan", str(cfg), "--set", "freeze.n=9")
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("Error: freeze.n is 9 but the model has only 2 blocks; use "
                                  "at most 2 (or head_only).")


def test_plan_reads_no_weights_and_lists_every_gradual_stage(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from engine.training.plan import make_plan
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, freeze=FreezeSpec(policy="gradual", every_epochs=2))
    plan = make_plan(cfg)
    assert [s.starts for s in plan.stages] == ["start", "epoch 2", "epoch 4", "epoch 6"]
    trainable = [s.trainable for s in plan.stages]
    assert trainable == sorted(trainable) and len(set(trainable)) == 4
    assert plan.stages[-1].trainable == sum(plan.sizes.values())
    # Each stage's static part is exact: 4 bytes of gradient and 8 of AdamW state per weight.
    for s in plan.stages:
        assert s.memory.gradients == 4 * s.trainable and s.memory.optimizer == 8 * s.trainable
    assert plan.labels == ("negative", "positive")

    # Built on the meta device: planning reads no weights, even from a folder without any.
    import shutil

    hollow = tmp_path / "hollow"
    shutil.copytree(tiny_bert, hollow)
    (hollow / "model.safetensors").write_bytes(b"not weights")
    same = make_plan(dataclasses.replace(cfg, model=ModelSpec(id=str(hollow))))
    assert same.sizes == plan.sizes


def test_plan_for_lora_counts_only_adapters_and_head(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from engine.core.config import LoraSpec
    from engine.training.plan import make_plan
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, freeze=FreezeSpec(lora=LoraSpec(r=2)))
    plan = make_plan(cfg)
    # BERT's query and value projections (32 wide, 2 blocks) get A (2x32) and B (32x2).
    adapters = 2 * 2 * (2 * 32 + 32 * 2)
    head = 32 * 2 + 2
    assert plan.freeze.trainable_count == adapters + head


# -- max_length beyond the model's positions ------------------------------------


def long_text_csv(path: Path) -> Path:
    """Learnable rows and two far longer than the tiny BERT's 128 positions."""
    rows = [("the film was good", "positive"), ("the day was bad", "negative")] * 8
    rows += [("good " * 300, "positive"), ("bad " * 300, "negative")]
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    return path


def test_max_length_is_clamped_to_the_model_positions(tmp_path, tiny_bert):
    import dataclasses
    import threading

    from engine.core.events import Note
    from engine.modeling.lengths import effective_max_length, position_limit
    from engine.training.loop import train
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, long_text_csv(tmp_path / "long.csv"), max_steps=2,
                     max_length=1024)
    limit = effective_max_length(cfg)  # the model looked up locally, as the form does
    notice = (f"data.max_length 1024 is beyond the 128 positions of {tiny_bert}; "
              "using 128")
    assert (limit.requested, limit.used, limit.limit, limit.notice) == (1024, 128, 128, notice)
    fits = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_length=64))
    assert effective_max_length(fits).notice is None
    # Positions as each family's config.json states them.
    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514}) == 512
    assert position_limit({"model_type": "gpt2", "n_positions": 1024}) == 1024
    assert position_limit({"model_type": "t5", "n_positions": 512}) is None  # relative

    events = []  # 302 tokens would index past the 128 position embeddings and crash
    outcome = train(cfg, events.append, threading.Event())
    assert outcome.status == "completed", outcome.error
    warnings = [e.message for e in events if isinstance(e, Note) and e.level == "warning"]
    assert warnings[0] == notice


def test_plan_cli_shows_the_clamped_max_length(tmp_path, tiny_bert):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"model: {{id: {tiny_bert}}}\n"
                   f"data: {{train: {long_text_csv(tmp_path / 'long.csv')}, max_length: 1024}}\n")
    notice = f"data.max_length 1024 is beyond the 128 positions of {tiny_bert}; using 128"

    def plan(*args):  # in this process: torch is loaded already, a subprocess takes 10 s
        from click.testing import CliRunner

        from tui.cli.plan import plan as command

        out = CliRunner().invoke(command, [str(cfg), *args], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return out.output

    data = json.loads(plan("--json"))
    assert data["notices"] == [notice] and data["seq_len"] == 128
    text = plan()
    assert f"  Notice: {notice}" in text.splitlines()
    assert "batch 32 x 128 tokens" in text
    assert any(line.startswith("  total") and "(±15%)" in line for line in text.splitlines())


# -- every family, planned from its own batch ------------------------------------


@pytest.fixture(scope="module")
def family_models(tmp_path_factory):
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("plan-models")
    return {f: make_tiny_family(f, root / f) for f in ("gpt2", "t5")}


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    from tests.support import task_data as td

    root = tmp_path_factory.mktemp("plan-data")
    return {"text": td.write_text_csv(root / "text.csv"),
            "seq2seq": td.write_seq2seq_csv(root / "s2s.csv"),
            "images": td.write_digits_folder(root / "digits", per_class=6, classes=range(3))}


def _plan(tmp_path, model, task, file, **sections):
    from engine.core.config import RunConfig
    from engine.training.plan import make_plan

    model_cfg = {"id": str(model)}
    if str(model).startswith("torchvision:"):
        model_cfg["weights"] = "none"
    raw = {"model": model_cfg, "head": {"task": task},
           "data": {"train": str(file), "validation_split": 0.25, "max_length": 32},
           "train": {"batch_size": 4, "precision": "fp32"}, "base_dir": str(tmp_path)}
    for key, values in sections.items():
        raw[key].update(values)
    return make_plan(RunConfig.from_dict(raw))


def test_language_models_count_their_logits(tmp_path, family_models, family_files):
    causal = _plan(tmp_path, family_models["gpt2"], "causal-lm", family_files["text"])
    batch, length = causal.batch_shapes["input_ids"]
    vocab = causal.sizes["transformer.wte.weight"] // 32
    memory = causal.stages[0].memory
    # Two float32 logits-sized gradient buffers at the top of the backward pass; the
    # log-softmax of the logits is saved (an activation) as well.
    assert memory.logits == 2 * batch * length * vocab * 4
    assert memory.activations > batch * length * vocab * 4
    assert causal.batch_text == f"4 x {length} tokens" and batch == 4

    s2s = _plan(tmp_path, family_models["t5"], "seq2seq", family_files["seq2seq"])
    b, target = s2s.batch_shapes["labels"]
    vocab = s2s.sizes["shared.weight"] // 32
    assert s2s.stages[0].memory.logits == 2 * b * target * vocab * 4
    source = s2s.batch_shapes["input_ids"][1]
    assert s2s.batch_text == (f"4 x {source} -> {target} target tokens" if target != source
                              else f"4 x {source} tokens")


def test_vision_plans_use_the_image_not_the_text_length(tmp_path, tiny_vit, family_files):
    small = _plan(tmp_path, tiny_vit, "image-classification", family_files["images"])
    assert small.batch_shapes["pixel_values"] == (4, 3, 16, 16)
    assert small.batch_text == "4 x 16x16 images"
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    wide = tmp_path / "vit-32"  # the same ViT for 32x32 images: 64 patches, not 16
    ViTModel(ViTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)).save_pretrained(wide)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(wide)
    large = _plan(tmp_path, wide, "image-classification", family_files["images"],
                  data={"max_length": 4096})
    assert large.batch_text == "4 x 32x32 images"
    # Four times the patches: activations grow about fourfold; max_length plays no part.
    ratio = large.stages[0].memory.activations / small.stages[0].memory.activations
    assert 3 < ratio < 5 and large.stages[0].memory.counted

    cnn = _plan(tmp_path, "torchvision:resnet18", "image-classification",
                family_files["images"])
    memory = cnn.stages[0].memory
    assert cnn.batch_shapes["pixel_values"] == (4, 3, 224, 224)
    # A CNN's activations at 224 px outweigh its gradients (the old plan counted ~0).
    assert memory.activations > memory.gradients > 0
    assert memory.counted


def test_checkpointing_precision_and_fixed_costs_are_in_the_total(tiny_bert):
    import dataclasses

    from torch import nn

    from engine.training.memory import CUDA_CONTEXT

    model = build_model(ModelSpec(id=str(tiny_bert)), HeadSpec(), 2).model
    plan = plan_freeze(model, FreezeSpec())
    base = estimate_memory(model, plan, batch_size=8, seq_len=32)
    ckpt = estimate_memory(model, plan, batch_size=8, seq_len=32, gradient_checkpointing=True)
    assert ckpt.activations == base.activations_checkpointed < base.activations
    assert ckpt.total < base.total and ckpt.gradient_checkpointing

    half = estimate_memory(model, plan, batch_size=8, seq_len=32, precision="bf16")
    # autocast caches a 16-bit copy of each trainable matrix that a matmul uses.
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert half.autocast_cache == 2 * linear
    assert half.activations < base.activations and half.margin > base.margin

    ddp = estimate_memory(model, plan, batch_size=8, seq_len=32, processes=2)
    # Gradients are views into DDP's buckets, made when the model is wrapped: live all
    # through the step, so the backward's overlap of gradients and activations is gone.
    assert ddp.ddp_buckets == 0 and ddp.overlap == 0
    assert ddp.total == base.total + base.overlap > base.total
    gpu = estimate_memory(model, plan, batch_size=8, seq_len=32, device_type="cuda")
    assert gpu.cuda_context == CUDA_CONTEXT and gpu.total > base.total + CUDA_CONTEXT / 2
    for m in (base, ckpt, half, ddp, gpu):
        parts = dataclasses.asdict(m)
        assert m.total == sum(parts[k] for k in MemoryEstimate.TERMS) - m.overlap
        assert 0 <= m.overlap


def test_attention_kernel_decides_the_squared_term(tiny_bert):
    """BERT keeps attention dropout: the CPU then runs SDPA's math path, which saves the
    tokens x tokens attention matrix, while a GPU's fused kernels save none of it."""
    import torch
    from transformers import BertConfig, BertModel

    from engine.modeling.loading import SequenceClassifier

    def build(**extra):
        with torch.device("meta"):
            backbone = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64,
                                            **extra))
            return SequenceClassifier(backbone, 2, pooling="cls", dropout=0.1,
                                      problem_type="single_label")

    batch, length = 4, 128
    squared = 2 * batch * 2 * length * length * 4  # probabilities and dropout mask, 2 heads

    def count(model, device):
        return estimate_memory(model, plan_freeze(model, FreezeSpec()), batch_size=batch,
                               seq_len=length, device_type=device).activations

    sdpa = build()
    assert count(sdpa, "cpu") - count(sdpa, "cuda") >= 2 * 0.9 * squared  # two blocks
    eager = build(attn_implementation="eager")
    assert count(eager, "cpu") == count(eager, "cuda") >= count(sdpa, "cpu")


def test_cached_features_plan_the_head_alone(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from engine.training.plan import make_plan
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, freeze=FreezeSpec(policy="head_only"))
    plan = make_plan(cfg)
    memory = plan.stages[0].memory
    rows = 160  # every example of the file is cached (train and validation)
    assert memory.features == rows * 32 * 4
    assert memory.gradients == 4 * (32 * 2 + 2) and memory.weights == 4 * sum(
        plan.sizes.values())
    assert plan.batch_shapes["features"] == (16, 32)
    assert any("cached features" in note for note in plan.notes)


def test_a_weight_two_layers_share_counts_two_more_copies_while_it_trains():
    """GPT-2's input and output embeddings are one tensor: its two gradients are summed at
    the end of the backward pass (tests/engine/test_plan_measured.py measures the peak this
    makes); untied, or frozen, nothing is added."""
    import transformers as tf

    from engine.training.memory import tied_gradient_bytes

    def gpt2(tie: bool):
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2,
                                                tie_word_embeddings=tie))

    tied = gpt2(True)
    embedding = tied.transformer.wte.weight.numel() * 4
    assert tied_gradient_bytes(tied, plan_freeze(tied, FreezeSpec())) == 2 * embedding
    assert tied_gradient_bytes(gpt2(False), plan_freeze(gpt2(False), FreezeSpec())) == 0
    frozen = plan_freeze(tied, FreezeSpec(policy="freeze_first_n", n=1))  # embeddings too
    assert tied_gradient_bytes(tied, frozen) == 0
    estimate = estimate_memory(tied, plan_freeze(tied, FreezeSpec()), batch_size=2, seq_len=8)
    assert estimate.tied_gradients == 2 * embedding
    assert estimate.as_dict()["tied_gradients"] == 2 * embedding


def test_an_image_head_only_run_on_cached_features_plans_the_last_layer_alone(tmp_path,
                                                                             tiny_vit):
    """As the run does (engine/training/image_features.py): the final linear layer fed its
    inputs, every image's features on the device; with augmentation the backbone runs
    every step and is planned so."""
    import dataclasses

    from engine.core.config import RunConfig
    from engine.training.plan import make_plan
    from tests.support.task_data import write_digits_folder

    root = write_digits_folder(tmp_path / "digits", per_class=10, classes=range(3))
    cfg = RunConfig.from_dict({
        "model": {"id": str(tiny_vit)}, "head": {"task": "image-classification"},
        "freeze": {"policy": "head_only"}, "data": {"train": str(root)},
        "train": {"batch_size": 4}, "base_dir": str(tmp_path)})
    plan = make_plan(cfg)
    memory = plan.stages[0].memory
    width = plan.batch_shapes["features"][1]
    assert plan.batch_shapes["features"] == (4, width) and "pixel_values" not in plan.batch_shapes
    assert memory.features == 30 * width * 4  # every image, train and validation
    assert memory.gradients == 4 * (width * 3 + 3)
    assert any("cached features of the 30 examples" in note for note in plan.notes)
    augmented = make_plan(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data,
                                                                            augment=True)))
    assert augmented.stages[0].memory.features == 0
    assert "pixel_values" in augmented.batch_shapes
    assert augmented.stages[0].memory.activations > memory.activations
