"""Every head on every architecture family it fits: data loads, the model builds,
and one real forward and backward pass reaches the trainable weights."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from engine.core.config import RunConfig
from engine.core.errors import ModelError
from engine.modeling.freeze import layer_groups
from engine.tasks import task_for

ENCODERS = ("bert", "roberta", "distilbert", "electra")
ENCODER_TASKS = ("text-classification", "multi-label-classification", "regression",
                 "text-pair-classification", "token-classification", "question-answering",
                 "masked-lm")
CASES = (
    [(f, t) for f in ENCODERS for t in ENCODER_TASKS]
    + [(f, t) for f in ("gpt2", "llama") for t in ("text-classification", "causal-lm")]
    + [(f, "seq2seq") for f in ("t5", "marian")]
    + [(f, "image-classification") for f in ("vit", "resnet", "torchvision:resnet18",
                                              "torchvision:mobilenet_v3_small",
                                              "torchvision:vit_b_16")]
)
PARAMS = [pytest.param(f, t, id=f"{f}-{t}",
                       # torchvision has no smaller ViT than B/16: seconds of CPU per step
                       marks=pytest.mark.slow if f == "torchvision:vit_b_16" else ())
          for f, t in CASES]


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = make_tiny_family(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
    from tests.support import task_data as td

    root = tmp_path_factory.mktemp("task-data")
    regression = root / "regression.csv"
    with open(regression, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(40):
            w.writerow([f"the movie was {'good' if i % 2 else 'bad'}", i % 5 / 4])
    from tests.support.tiny_models import write_sentiment_csv

    return {
        "text-classification": write_sentiment_csv(root / "sentiment.csv", rows=40),
        "multi-label-classification": td.write_multilabel_csv(root / "multi.csv"),
        "regression": regression,
        "text-pair-classification": td.write_pair_csv(root / "pairs.csv"),
        "token-classification": td.write_token_jsonl(root / "ner.jsonl"),
        "question-answering": td.write_qa_jsonl(root / "qa.jsonl"),
        "masked-lm": td.write_text_csv(root / "text.csv"),
        "causal-lm": td.write_text_csv(root / "text.csv"),
        "seq2seq": td.write_seq2seq_csv(root / "pairs-s2s.csv"),
        "image-classification": td.write_digits_folder(root / "digits", per_class=6,
                                                       classes=range(3)),
    }


@pytest.fixture(scope="session")
def resnet18_weights(tmp_path_factory) -> Path:
    """A torchvision ResNet-18 state dict in safetensors, as the hub's copies hold it."""
    from safetensors.torch import save_file
    from torchvision.models import get_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "model.safetensors"
    save_file(get_model("resnet18", weights=None).state_dict(), str(path))
    return path


def case_config(tmp_path, model_id: str, task: str, data: Path, weights: str | None = None,
                **data_keys) -> RunConfig:
    data_cfg = {"train": str(data), "validation_split": 0.25, "max_length": 32,
                "doc_stride": 8}
    if task == "text-pair-classification":
        data_cfg["text_pair_column"] = "text_pair"
    if model_id == "torchvision:vit_b_16":
        data_cfg["image_size"] = 224
    elif model_id.startswith("torchvision:"):
        data_cfg["image_size"] = 32
    data_cfg.update(data_keys)
    return RunConfig.from_dict({
        "model": {"id": model_id, "weights": weights if weights else
                  "none" if model_id.startswith("torchvision:") else None},
        "head": {"task": task}, "data": data_cfg,
        "train": {"batch_size": 4, "seed": 0}, "base_dir": str(tmp_path),
    })


def forward_backward(cfg: RunConfig):
    task = task_for(cfg.head.task)
    processor, path = task.load_processor(cfg)
    data = task.load_data(cfg, processor)
    model = task.build(cfg, path, data)
    model.train()
    batch = task.collator(data.train, processor, cfg, train=True)(list(range(4)))
    loss = model(**batch)[0]
    loss.backward()
    return model, data, loss


@pytest.mark.parametrize(("family", "task"), PARAMS)
def test_head_builds_and_learns_on_family(family, task, family_dir, task_files, tmp_path,
                                          resnet18_weights):
    model_id = family if family.startswith("torchvision:") else str(family_dir(family))
    weights = str(resnet18_weights) if family == "torchvision:resnet18" else None
    cfg = case_config(tmp_path, model_id, task, task_files[task], weights)
    model, data, loss = forward_backward(cfg)

    assert torch.isfinite(loss) and loss.item() > 0
    reached = [n for n, p in model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(reached) > len(list(model.parameters())) // 2, "gradients reached too few weights"
    groups = {g.name: g for g in layer_groups(model)}
    blocks = [g for g in groups if g.startswith("block.")]
    assert len(blocks) >= 2, groups.keys()
    assert "embeddings" in groups
    if task not in ("causal-lm", "seq2seq"):  # LM heads there are tied to the embeddings
        assert groups["head"].count > 0
    if data.labels:
        assert len(data.labels) >= 2


def test_encoder_decoder_blocks_include_both_stacks(family_dir, task_files, tmp_path):
    cfg = case_config(tmp_path, str(family_dir("t5")), "seq2seq", task_files["seq2seq"])
    model, _, _ = forward_backward(cfg)
    groups = layer_groups(model)
    blocks = [g for g in groups if g.name.startswith("block.")]
    assert len(blocks) == 4  # two encoder and two decoder blocks
    assert any(".decoder." in p or p.startswith("decoder.") for p in blocks[-1].params)


def test_custom_mlp_head(family_dir, task_files, tmp_path):
    cfg = case_config(tmp_path, str(family_dir("bert")), "text-classification",
                      task_files["text-classification"])
    cfg = RunConfig.from_dict({**cfg.to_dict(), "head": {"task": "text-classification",
                                                         "custom": {"hidden": 24}}})
    model, _, _ = forward_backward(cfg)
    linear = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [24, 2]


@pytest.mark.parametrize(("family", "task", "message"), [
    ("vit", "question-answering", "needs a text model, but .* is a vision model"),
    ("bert", "image-classification", "needs a vision model, but .* is a text model"),
    ("bert", "seq2seq", "does not fit .*bert.*encoder-decoder such as T5"),
    ("gpt2", "masked-lm", "does not fit|mask token"),
])
def test_head_that_does_not_fit_is_refused(family, task, message, family_dir, task_files,
                                           tmp_path):
    cfg = case_config(tmp_path, str(family_dir(family)), task, task_files[task])
    with pytest.raises(ModelError, match=message):
        forward_backward(cfg)


def test_heads_offered_for_a_model_are_the_ones_that_build(family_dir):
    """`engine.tasks.fit.heads_for` (what the new-run form offers) includes every family x head
    case above that trains, and none of the misfits."""
    from engine.core.config import ModelSpec
    from engine.tasks.fit import heads_for

    def offered(family: str) -> tuple[str, ...]:
        ref = family if family.startswith("torchvision:") else str(family_dir(family))
        return heads_for(ModelSpec(id=ref))

    for family, task in CASES:
        assert task in offered(family), (family, task)
    for family, task in (("vit", "question-answering"), ("bert", "image-classification"),
                         ("bert", "seq2seq"), ("gpt2", "masked-lm"), ("t5", "causal-lm"),
                         ("bert", "causal-lm")):
        assert task not in offered(family), (family, task)
    assert heads_for(ModelSpec(id="hubtune-test/not-downloaded")) is None


def test_torchvision_weights_load_into_the_backbone(resnet18_weights, task_files, tmp_path):
    from safetensors.torch import load_file

    cfg = case_config(tmp_path, "torchvision:resnet18", "image-classification",
                      task_files["image-classification"], str(resnet18_weights))
    model, _, _ = forward_backward(cfg)
    saved = load_file(str(resnet18_weights))
    assert torch.equal(model.backbone.conv1.weight, saved["conv1.weight"])
    assert model.head.out_features == 3 and model.head.in_features == 512


def test_torchvision_without_weights_says_what_to_set(task_files, tmp_path):
    cfg = RunConfig.from_dict({
        "model": {"id": "torchvision:mobilenet_v3_small"},
        "head": {"task": "image-classification"},
        "data": {"train": str(task_files["image-classification"])}, "base_dir": str(tmp_path)})
    with pytest.raises(ModelError, match="no default pretrained weights; set model.weights"):
        forward_backward(cfg)
