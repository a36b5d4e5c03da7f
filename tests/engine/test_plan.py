"""The pre-launch plan: exact byte counts for weights, gradients and optimizer state."""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.config import FreezeSpec, HeadSpec, ModelSpec
from engine.modeling.freeze import plan_freeze
from engine.modeling.loading import build_model
from engine.training.plan import estimate_memory

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
    assert head_only.activations == 0 < full.activations
    half = estimate_memory(model, plan_freeze(model, FreezeSpec(policy="freeze_first_n", n=1)),
                           batch_size=8, seq_len=16)
    assert half.activations * 2 == full.activations
    assert full.activations_checkpointed < full.activations


def test_plan_cli_json(tmp_path, tiny_bert, sentiment_csv):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"model: {{id: {tiny_bert}}}\ndata: {{train: {sentiment_csv}}}\n"
                   "freeze: {policy: freeze_first_n, n: 1}\n")
    from cli_runner import hubtune

    out = hubtune("plan", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    groups = {g["name"]: g for g in data["groups"]}
    assert groups["embeddings"]["trainable"] == 0 and groups["block.0"]["trainable"] == 0
    assert groups["block.1"]["frozen"] == 0 and groups["head"]["params"] == 32 * 2 + 2
    assert data["trainable"] + data["frozen"] == sum(g["params"] for g in data["groups"])
    assert data["memory_bytes"]["total"] == sum(
        data["memory_bytes"][k] for k in ("weights", "gradients", "optimizer", "activations"))
    bad = hubtune("plan", str(cfg), "--set", "freeze.n=9")
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("Error: freeze.n is 9 but the model has only 2 blocks; use "
                                  "at most 2 (or head_only).")


def test_plan_reads_no_weights_and_lists_every_gradual_stage(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from tests_helpers import config_for

    from engine.training.plan import make_plan

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

    from tests_helpers import config_for

    from engine.core.config import LoraSpec
    from engine.training.plan import make_plan

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, freeze=FreezeSpec(lora=LoraSpec(r=2)))
    plan = make_plan(cfg)
    # BERT's query and value projections (32 wide, 2 blocks) get A (2x32) and B (32x2).
    adapters = 2 * 2 * (2 * 32 + 32 * 2)
    head = 32 * 2 + 2
    assert plan.freeze.trainable_count == adapters + head


def test_cuda_peak_memory_is_within_a_quarter_of_the_estimate(tmp_path):
    """On a GPU, one real training step's peak beside the plan's estimate (skips on CPU)."""
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: compares the estimate with torch.cuda.max_memory_allocated")
    from transformers import BertConfig, BertModel

    from engine.modeling.loading import SequenceClassifier

    torch.manual_seed(0)
    backbone = BertModel(BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=4,
                                    num_attention_heads=4, intermediate_size=1024,
                                    max_position_embeddings=256, attn_implementation="eager"))
    model = SequenceClassifier(backbone, 2, pooling="cls", dropout=0.1,
                               problem_type="single_label").cuda()
    batch, seq = 32, 128
    estimate = estimate_memory(model, plan_freeze(model, FreezeSpec()), batch_size=batch,
                               seq_len=seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, 1000, (batch, seq), device="cuda")
    labels = torch.randint(0, 2, (batch,), device="cuda")
    for _ in range(2):  # the second step has optimizer state in place, as every later one
        torch.cuda.reset_peak_memory_stats()
        loss, _ = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated()
    assert abs(estimate.total - peak) <= 0.25 * peak, (estimate.as_dict(), peak)


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

    from tests_helpers import config_for

    from engine.core.events import Note
    from engine.modeling.lengths import effective_max_length, position_limit
    from engine.training.loop import train

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
