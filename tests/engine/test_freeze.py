"""Freezing plans: after a real optimizer step frozen weights are bit-identical."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.config import FreezeSpec, HeadSpec, ModelSpec
from engine.errors import ConfigError
from engine.freeze import apply_freeze, layer_groups, plan_freeze
from engine.models import build_model


@pytest.fixture
def model(tiny_bert):
    return build_model(ModelSpec(id=str(tiny_bert)), HeadSpec(), 2).model


def test_groups_find_embeddings_blocks_and_head(model):
    names = [g.name for g in layer_groups(model)]
    # The tiny BERT has no sentence-transformers pooling config, so BERT's pooler is used.
    assert names == ["embeddings", "block.0", "block.1", "other", "head"]


@pytest.mark.parametrize(("spec", "trainable_groups"), [
    (FreezeSpec(policy="full"), {"embeddings", "block.0", "block.1", "other", "head"}),
    (FreezeSpec(policy="head_only"), {"head"}),
    (FreezeSpec(policy="freeze_embeddings"), {"block.0", "block.1", "other", "head"}),
    (FreezeSpec(policy="freeze_first_n", n=1), {"block.1", "other", "head"}),
    (FreezeSpec(policy="modules", patterns=["*.attention.*"]),
     {"embeddings", "block.0", "block.1", "other", "head"}),
])
def test_policy_freezes_exactly_its_groups_through_a_real_step(model, spec, trainable_groups):
    plan = plan_freeze(model, spec)
    apply_freeze(model, plan)
    learning = {g for g, t, _ in plan.group_rows() if t}
    assert learning == trainable_groups
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(plan.trainable)
    ids = torch.randint(5, 40, (4, 7))
    loss, _ = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    labels=torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        if name in plan.trainable:
            if p.grad is not None and p.grad.abs().sum() > 0:
                assert not torch.equal(p, before[name]), name
        else:
            assert torch.equal(p, before[name]), name
    if spec.policy == "modules":
        assert not any("attention" in n for n in plan.trainable)


def test_bad_plans_are_named(model):
    with pytest.raises(ConfigError, match="freeze.n is 5 but the model has only 2 blocks"):
        plan_freeze(model, FreezeSpec(policy="freeze_first_n", n=5))
    with pytest.raises(ConfigError, match="freeze.patterns 'decoder.*' matches no parameter"):
        plan_freeze(model, FreezeSpec(policy="modules", patterns=["decoder.*"]))
    with pytest.raises(ConfigError, match="leaves nothing to train"):
        plan_freeze(model, FreezeSpec(policy="modules", patterns=["*"]))


def test_head_only_training_keeps_the_backbone_bit_identical(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from safetensors.torch import load_file
    from tests_helpers import config_for

    from engine.train import train

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=2)
    cfg = dataclasses.replace(cfg, freeze=FreezeSpec(policy="head_only"))
    outcome = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed"
    trained = load_file(tmp_path / "out" / "model" / "model.safetensors")
    original = load_file(tiny_bert / "model.safetensors")
    for name, tensor in original.items():
        assert torch.equal(trained[f"backbone.{name}"], tensor), name


def test_param_groups_carry_the_rates_asked_for(model, tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from tests_helpers import config_for

    from engine.optim import layer_rates, param_groups

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, learning_rate=1e-3, head_learning_rate=1e-2, layer_lr_decay=0.5,
        weight_decay=0.1))
    rates = layer_rates(model, cfg)
    groups = {g.name: g for g in layer_groups(model)}
    assert {rates[p] for p in groups["head"].params} == {1e-2}
    assert {rates[p] for p in groups["block.1"].params} == {1e-3}
    assert {rates[p] for p in groups["block.0"].params} == {5e-4}
    assert {rates[p] for p in groups["embeddings"].params} == {2.5e-4}
    optim_groups = param_groups(model, cfg)
    assert sum(len(g["params"]) for g in optim_groups) == len(list(model.parameters()))
    for g in optim_groups:
        assert all((p.ndim >= 2) == (g["weight_decay"] == 0.1) for p in g["params"])
    # A frozen embedding never reaches the optimizer.
    apply_freeze(model, plan_freeze(model, FreezeSpec(policy="freeze_embeddings")))
    kept = {id(p) for g in param_groups(model, cfg) for p in g["params"]}
    assert not any(id(p) in kept for n, p in model.named_parameters()
                   if n in groups["embeddings"].params)


def test_cached_features_match_the_plain_frozen_loop(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from tests_helpers import config_for

    from engine.events import Note
    from engine.train import train

    base = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=10)
    # Mean pooling: the frozen random tiny BERT's averaged token states still carry
    # which adjective a sentence holds, so a linear head can learn the rule.
    base = dataclasses.replace(base, freeze=FreezeSpec(policy="head_only"),
                               head=HeadSpec(pooling="mean", dropout=0.0),
                               train=dataclasses.replace(base.train, learning_rate=1e-1))
    results = {}
    for cached in (True, False):
        cfg = dataclasses.replace(base, train=dataclasses.replace(base.train,
                                                                  cache_features=cached))
        notes = []
        outcome = train(cfg, notes.append, threading.Event(), out_dir=tmp_path / str(cached))
        assert outcome.status == "completed"
        assert any(isinstance(n, Note) and "Cached frozen-backbone features" in n.message
                   for n in notes) == cached
        results[cached] = outcome.summary["final_accuracy"]
    assert results[True] > 0.6 and abs(results[True] - results[False]) <= 0.1, results
