"""Freezing plans: after a real optimizer step frozen weights are bit-identical."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.core.config import FreezeSpec, HeadSpec, ModelSpec
from engine.core.errors import ConfigError
from engine.modeling.freeze import apply_freeze, layer_groups, plan_freeze
from engine.modeling.loading import build_model


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

    from engine.training.loop import train
    from tests.support.tests_helpers import config_for

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

    from engine.training.optim import layer_rates, param_groups
    from tests.support.tests_helpers import config_for

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


def test_a_head_on_a_frozen_backbone_gets_a_probe_rate_unless_one_was_chosen(
        model, tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from engine.core.config import DEFAULT_LEARNING_RATE, PROBE_LEARNING_RATE
    from engine.training.optim import layer_rates
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, learning_rate=DEFAULT_LEARNING_RATE))
    head = {g.name: g for g in layer_groups(model)}["head"].params

    def head_rate(policy: str, **train) -> float:
        c = dataclasses.replace(cfg, freeze=FreezeSpec(policy=policy),
                                train=dataclasses.replace(cfg.train, **train))
        (rate,) = {layer_rates(model, c)[p] for p in head}
        assert rate == c.head_rate()
        return rate

    assert head_rate("head_only") == PROBE_LEARNING_RATE
    assert head_rate("full") == DEFAULT_LEARNING_RATE  # fine-tuning keeps one rate
    assert head_rate("head_only", learning_rate=1e-2) == 1e-2  # a rate chosen is kept
    assert head_rate("head_only", head_learning_rate=2e-4) == 2e-4


def test_group_learning_rates_override_the_rules(model, tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from engine.core.config import RunConfig
    from engine.training.optim import layer_rates, make_optimizer
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, learning_rate=1e-3, layer_lr_decay=0.5,
        group_learning_rates={"block.0": 7e-5, "head": 3e-2}))
    rates = layer_rates(model, cfg)
    groups = {g.name: g for g in layer_groups(model)}
    assert {rates[p] for p in groups["block.0"].params} == {7e-5}
    assert {rates[p] for p in groups["head"].params} == {3e-2}
    assert {rates[p] for p in groups["block.1"].params} == {1e-3}  # the decay rule still holds
    assert {rates[p] for p in groups["embeddings"].params} == {2.5e-4}
    optimizer = make_optimizer(model, cfg)
    by_param = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert {by_param[id(named[p])] for p in groups["block.0"].params} == {7e-5}

    # A group this model lacks is named, with the groups it has.
    bad = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, group_learning_rates={"block.7": 1e-4}))
    with pytest.raises(ConfigError, match="names block.7, which .* does not have; its groups "
                                          "are embeddings, block.0, block.1"):
        layer_rates(model, bad)
    # The config refuses what is not a group name or not a positive rate.
    base = {"model": {"id": "m"}, "data": {"train": "x.csv"}}
    with pytest.raises(ConfigError, match="'blocks.0', which is not a layer group"):
        RunConfig.from_dict({**base, "train": {"group_learning_rates": {"blocks.0": 1e-4}}})
    with pytest.raises(ConfigError, match="group_learning_rates.head must be more than 0"):
        RunConfig.from_dict({**base, "train": {"group_learning_rates": {"head": 0}}})
    with pytest.raises(ConfigError, match="group_learning_rates.head must be a number"):
        RunConfig.from_dict({**base, "train": {"group_learning_rates": {"head": "fast"}}})
    parsed = RunConfig.from_dict({**base, "train": {"group_learning_rates": {"head": "1e-3"}}})
    assert parsed.train.group_learning_rates == {"head": 1e-3}
    assert RunConfig.from_dict(parsed.to_dict()) == parsed


def test_cached_features_match_the_plain_frozen_loop(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from engine.core.events import Note
    from engine.training.loop import train
    from tests.support.tests_helpers import config_for

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


def test_gradual_stages_open_one_group_at_a_time_from_the_top(model):
    plan = plan_freeze(model, FreezeSpec(policy="gradual", every_epochs=2))
    opened = [{g for g, t, _ in plan.group_rows(stage) if t} for stage in plan.schedule]
    assert opened == [
        {"head", "other"},
        {"head", "other", "block.1"},
        {"head", "other", "block.1", "block.0"},
        {"head", "other", "block.1", "block.0", "embeddings"},
    ]
    assert [plan.stage_at(epoch, 0) for epoch in range(9)] == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    by_steps = plan_freeze(model, FreezeSpec(policy="gradual", every_steps=5))
    assert [by_steps.stage_at(0, s) for s in (0, 4, 5, 12, 99)] == [0, 0, 1, 2, 3]


def test_gradual_run_opens_blocks_at_the_scheduled_steps(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from safetensors.torch import load_file

    from engine.core.events import Note
    from engine.training.loop import train
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=5, max_steps=7)
    cfg = dataclasses.replace(cfg, freeze=FreezeSpec(policy="gradual", every_steps=3))
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed"
    notes = [e.message for e in events if isinstance(e, Note) and "Gradual" in e.message]
    assert notes[0].startswith("Gradual unfreezing, stage 1: block.1 open")
    assert notes[1].startswith("Gradual unfreezing, stage 2: block.0 open")
    assert len(notes) == 2  # the embeddings' stage (step 9) is never reached
    trained = load_file(tmp_path / "out" / "model" / "model.safetensors")
    original = load_file(tiny_bert / "model.safetensors")
    for name, tensor in original.items():
        if name.startswith("embeddings."):
            assert torch.equal(trained[f"backbone.{name}"], tensor), name
    for layer in (0, 1):
        key = f"encoder.layer.{layer}.output.dense.weight"
        assert not torch.equal(trained[f"backbone.{key}"], original[key]), layer


def test_optimizer_state_exists_only_for_opened_parameters(model, tmp_path, tiny_bert,
                                                           sentiment_csv):
    from engine.training.optim import make_optimizer
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv)
    plan = plan_freeze(model, FreezeSpec(policy="gradual"))
    apply_freeze(model, plan, stage=0)
    opt = make_optimizer(model, cfg, plan.ever_trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(5, 40, (4, 7))
    loss, _ = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    labels=torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    with_state = {n for n, p in model.named_parameters() if p in opt.state}
    assert with_state and with_state <= plan.schedule[0]
    for name, p in model.named_parameters():
        if name not in plan.schedule[0]:
            assert torch.equal(p, before[name]), name


def test_lora_trains_adapters_and_head_and_exports_merged(tmp_path, tiny_bert, sentiment_csv):
    import dataclasses

    from safetensors.torch import load_file

    from engine.core.config import LoraSpec
    from engine.modeling.freeze import inject_lora
    from engine.training.loop import train
    from tests.support.tests_helpers import config_for

    spec = FreezeSpec(lora=LoraSpec(r=4, alpha=8))
    lora_model = build_model(ModelSpec(id=str(tiny_bert)), HeadSpec(), 2).model
    assert inject_lora(lora_model, spec.lora) == ["query", "value"]  # peft's pick for BERT
    plan = plan_freeze(lora_model, spec)
    assert all(".lora_" in n or n.startswith("head.") for n in plan.trainable)
    assert any(".lora_A" in n for n in plan.trainable)

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=2)
    cfg = dataclasses.replace(cfg, freeze=spec)
    outcome = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    trained = load_file(tmp_path / "out" / "model" / "model.safetensors")
    original = load_file(tiny_bert / "model.safetensors")
    assert not any("lora_" in k for k in trained)  # folded into the base weights
    q = "encoder.layer.0.attention.self.query.weight"
    k = "encoder.layer.0.attention.self.key.weight"
    assert not torch.equal(trained[f"backbone.{q}"], original[q])  # the merged update
    assert torch.equal(trained[f"backbone.{k}"], original[k])  # not a LoRA target
    from engine.trained.predict import Predictor

    assert Predictor(tmp_path / "out" / "model").predict(["the food was good"])[0].label


def test_lora_with_unknown_targets_is_named(model):
    from engine.core.config import LoraSpec
    from engine.modeling.freeze import inject_lora

    with pytest.raises(ConfigError, match="target_modules .*do not fit this model"):
        inject_lora(model, LoraSpec(target_modules=["nonexistent_proj"]))
