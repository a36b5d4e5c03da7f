"""Mistakes a careless user makes, through the engine API: each ends in its own sentence.

The worker reports any exception that is not a `HubtuneError` as "Internal error (...);
see worker.log", which reads as a bug in hubtune. So every case here must raise a
`HubtuneError` of the right kind (another exception fails the test) whose one-line
message names the problem. Most are caught before the model loads; the few that need
the model's layers (freezing, LoRA, learning-rate groups) fail before the first step.
A last group are slips that are not errors: those runs must simply complete.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.core.config import RunConfig
from engine.core.errors import ConfigError, DataError, HubtuneError, ModelError
from engine.training.loop import train

CORPUS = Path(__file__).parent / "bad_inputs"


@dataclass
class Ctx:
    tmp: Path
    bert: Path
    bart: Path
    vit: Path
    sentiment: Path

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        return self.write(name, "".join(json.dumps(r) + "\n" for r in rows))

    def images(self, name: str, classes: dict[str, int]) -> Path:
        from PIL import Image

        root = self.tmp / name
        for i, (label, count) in enumerate(classes.items()):
            (root / label).mkdir(parents=True, exist_ok=True)
            for j in range(count):
                Image.new("RGB", (16, 16), (40 * i, 80, 20 * j)).save(root / label / f"{j}.png")
        return root

    def model_copy(self, name: str, drop: tuple[str, ...] = (),
                   replace: dict[str, bytes] | None = None) -> Path:
        """The tiny BERT's folder, with files left out or overwritten."""
        target = self.tmp / name
        shutil.copytree(self.bert, target)
        for item in drop:
            (target / item).unlink()
        for item, content in (replace or {}).items():
            (target / item).write_bytes(content)
        return target

    def folder(self, name: str, *files: str) -> Path:
        """A folder holding empty files at the given relative paths."""
        root = self.tmp / name
        root.mkdir(parents=True, exist_ok=True)
        for item in files:
            self.write(f"{name}/{item}", "")
        return root


def config(ctx: Ctx, *, model=None, task="text-classification", data=None, train=None,
           freeze=None, **data_keys) -> dict:
    spec = {"train": str(data or ctx.sentiment), "validation_split": 0.25, "max_length": 16}
    spec.update(data_keys)
    settings = {"epochs": 1, "max_steps": 2, "batch_size": 8, "learning_rate": 1e-3,
                "log_every": 1, "seed": 0}
    settings.update(train or {})
    cfg = {"name": "mistake", "model": {"id": str(model or ctx.bert)}, "head": {"task": task},
           "data": spec, "train": settings, "base_dir": str(ctx.tmp)}
    if freeze is not None:
        cfg["freeze"] = freeze
    return cfg


def _text_rows(n: int = 12) -> str:
    return "".join(f"the movie was {'good' if i % 2 else 'bad'}\n" for i in range(n))


def _torchvision_run(ctx: Ctx) -> dict:
    from store import run_dir

    model = run_dir(7) / "model"
    model.mkdir(parents=True)
    (model / "hubtune_head.json").write_text(json.dumps({
        "task": "image-classification", "labels": ["a", "b"], "arch": "resnet18",
        "base_model": "torchvision:resnet18"}))
    (model / "model.safetensors").write_bytes(b"\0" * 16)
    return config(ctx, model="run:7", task="image-classification",
                  data=ctx.images("imgs", {"a": 4, "b": 4}))


# (id, config builder, error class, key phrase)
MISTAKES = [
    # -- the model reference ---------------------------------------------------
    ("model-folder-without-config", lambda c: config(c, model=c.model_copy(
        "m", drop=("config.json",))), ModelError, "has no config.json"),
    ("model-folder-without-weights", lambda c: config(c, model=c.model_copy(
        "m", drop=("model.safetensors",))), ModelError, "holds no weights"),
    ("model-folder-empty", lambda c: config(c, model=c.folder("m")),
     ModelError, "has no config.json"),
    ("model-is-a-file", lambda c: config(c, model=c.bert / "model.safetensors"),
     ModelError, "is a file; give the folder that holds the model's config.json"),
    ("model-folder-missing", lambda c: config(c, model="./no/such/model"),
     ModelError, "does not exist"),
    ("model-config-not-json", lambda c: config(c, model=c.model_copy(
        "m", replace={"config.json": b"{model_type: bert"})), ModelError,
     "config.json of model"),
    ("model-weights-damaged", lambda c: config(c, model=c.model_copy(
        "m", replace={"model.safetensors": b"<html>Bad gateway</html>"})), ModelError,
     "model.safetensors of model"),
    ("model-without-tokenizer", lambda c: config(c, model=c.model_copy(
        "m", drop=("tokenizer.json", "tokenizer_config.json", "vocab.txt"))), ModelError,
     "has no tokenizer files"),
    ("run-that-does-not-exist", lambda c: config(c, model="run:9999"), ModelError,
     "Run 9999 has no trained model"),
    ("run-of-a-torchvision-model", _torchvision_run, ModelError,
     "start from torchvision:resnet18 instead"),
    ("torchvision-unknown", lambda c: config(
        c, model="torchvision:not_a_model", task="image-classification",
        data=c.images("imgs", {"a": 4, "b": 4})), ModelError,
     "torchvision:not_a_model is not an offered torchvision backbone"),
    # -- a model that does not fit the task -------------------------------------
    ("bert-for-seq2seq", lambda c: config(c, task="seq2seq", data=c.write(
        "s.csv", "source,target\n" + "the movie,a film\n" * 8)), ModelError,
     "head.task seq2seq does not fit"),
    ("bert-for-causal-lm", lambda c: config(c, task="causal-lm", data=c.write(
        "t.csv", "text\n" + _text_rows())), ModelError, "head.task causal-lm does not fit"),
    ("vit-for-text-classification", lambda c: config(c, model=c.vit), ModelError,
     "needs a text model, but"),
    ("bert-for-images", lambda c: config(c, task="image-classification",
                                         data=c.images("imgs", {"a": 4, "b": 4})),
     ModelError, "needs a vision model, but"),
    ("seq2seq-model-for-token-classification", lambda c: config(
        c, model=c.bart, task="token-classification", data=c.jsonl(
            "ner.jsonl", [{"tokens": ["the", "movie"], "tags": ["O", "B-X"]}] * 8)),
     ModelError, "head.task token-classification does not fit"),
    ("seq2seq-model-for-text-classification", lambda c: config(c, model=c.bart),
     ModelError, "an encoder-decoder trains with head.task seq2seq"),
    ("seq2seq-model-for-embeddings", lambda c: config(c, model=c.bart,
                                                      task="feature-extraction"),
     ModelError, "head.task feature-extraction does not fit"),
    # -- the data file ----------------------------------------------------------
    ("text-data-is-a-folder", lambda c: config(c, data=c.folder("d")),
     DataError, "is a folder; give a CSV"),
    ("binary-file-named-csv", lambda c: config(c, data=c.write(
        "data.csv", bytes(range(256)) * 8)), DataError, "is not valid utf-8 text"),
    ("excel-file", lambda c: config(c, data=c.write("data.xlsx", b"PK\x03\x04")),
     DataError, "Cannot tell the format"),
    ("unknown-extension", lambda c: config(c, data=c.write("data.dat", "text,label\n")),
     DataError, "Cannot tell the format"),
    ("json-array-of-lists", lambda c: config(c, data=CORPUS / "array_of_lists.json"),
     DataError, "is a JSON array holding list items"),
    ("decimal-labels-for-classification", lambda c: config(
        c, data=CORPUS / "decimal_labels.csv"), DataError,
     "holds decimal numbers in its label column 'label' (row 1 has 0.844"),
    ("names-as-regression-targets", lambda c: config(c, task="regression"), DataError,
     "Regression needs numbers in 'label'"),
    ("label-lists-for-single-label", lambda c: config(c, data=CORPUS / "list_labels.jsonl"),
     DataError, "use head.task multi-label-classification"),
    ("numbers-as-text", lambda c: config(c, data=CORPUS / "number_text.csv"), DataError,
     "holds only numbers in its column 'text' (data.text_column), e.g. 1000"),
    ("no-text-anywhere", lambda c: config(c, data=CORPUS / "blank_text.csv"), DataError,
     "has no text in its column 'text' (data.text_column): every row is empty"),
    ("no-source-text-for-seq2seq", lambda c: config(c, model=c.bart, task="seq2seq", data=(
        c.write("s.csv", "source,target\n" + ",a film\n" * 8))), DataError,
     "has no text in its column 'source'"),
    ("label-column-missing", lambda c: config(c, label_column="sentiment"), DataError,
     "has no column 'sentiment' (data.label_column)"),
    ("validation-split-takes-everything", lambda c: config(
        c, validation_split=0.99, data=c.write("twenty.csv", "text,label\n" + "".join(
            f"the movie,{'good' if i % 2 else 'bad'}\n" for i in range(20)))),
     DataError, "data.validation_split 0.99 of 20 rows leaves none to train on"),
    ("validation-split-takes-everything-regression", lambda c: config(
        c, task="regression", validation_split=0.99, data=c.write(
            "r.csv", "text,label\n" + "".join(f"the movie,{i / 10}\n" for i in range(10)))),
     DataError, "leaves none to train on"),
    ("validation-split-takes-everything-lm", lambda c: config(
        c, task="masked-lm", validation_split=0.99, data=c.write(
            "t.csv", "text\n" + _text_rows())), DataError, "leaves none to train on"),
    ("qa-without-answers", lambda c: config(c, task="question-answering", data=c.jsonl(
        "qa.jsonl", [{"question": "how was it", "context": "the movie was good"}] * 8),
        max_length=64, doc_stride=8), DataError, "has no answers column"),
    ("qa-answers-without-start", lambda c: config(c, task="question-answering", data=c.jsonl(
        "qa.jsonl", [{"question": "how was it", "context": "the movie was good",
                      "answers": {"text": ["good"]}}] * 8), max_length=64, doc_stride=8),
     DataError, "answers must look like"),
    ("tokens-and-tags-of-different-lengths", lambda c: config(
        c, task="token-classification", data=c.jsonl(
            "ner.jsonl", [{"tokens": ["the", "movie", "was", "good"], "tags": ["O", "O"]}] * 8)),
     DataError, "4 words but 2 tags"),
    ("token-rows-without-words", lambda c: config(c, task="token-classification", data=c.jsonl(
        "ner.jsonl", [{"tokens": [], "tags": []}] * 8)), DataError,
     "The training rows of"),
    # -- image folders ----------------------------------------------------------
    ("image-folder-with-one-class", lambda c: config(
        c, model=c.vit, task="image-classification", data=c.images("imgs", {"cat": 6})),
     DataError, "has only one class (cat)"),
    ("image-folder-with-empty-class-folders", lambda c: config(
        c, model=c.vit, task="image-classification",
        data=c.folder("imgs", "cat/sub/.keep", "dog/sub/.keep")), DataError,
     "has class folders (cat, dog) but no files"),
    ("image-folder-with-one-class-filled", lambda c: config(
        c, model=c.vit, task="image-classification",
        data=c.folder(c.images("imgs", {"cat": 4}).name, "dog/.keep")), DataError,
     "has images only in cat (dog is empty)"),
    ("image-folder-without-class-folders", lambda c: config(
        c, model=c.vit, task="image-classification",
        data=c.folder("flat", "a.png", "b.png")), DataError, "has no class sub-folders"),
    ("image-size-the-model-cannot-take", lambda c: config(
        c, model=c.vit, task="image-classification", image_size=7,
        data=c.images("imgs", {"a": 4, "b": 4})), ConfigError,
     "data.image_size 7 does not fit"),
    # -- settings that need the model's layers ----------------------------------
    ("freeze-patterns-match-nothing", lambda c: config(
        c, freeze={"policy": "modules", "patterns": ["*encoder.block*"]}), ConfigError,
     "freeze.patterns '*encoder.block*' matches no parameter"),
    ("freeze-more-blocks-than-there-are", lambda c: config(
        c, freeze={"policy": "freeze_first_n", "n": 12}), ConfigError,
     "freeze.n is 12 but the model has only 2 blocks"),
    ("lora-targets-match-nothing", lambda c: config(
        c, freeze={"lora": {"target_modules": ["q_proj", "v_proj"]}}), ConfigError,
     "freeze.lora.target_modules ['q_proj', 'v_proj'] do not fit this model"),
    ("learning-rate-for-a-block-that-is-not-there", lambda c: config(
        c, train={"group_learning_rates": {"block.99": 1e-4}}), ConfigError,
     "train.group_learning_rates names block.99"),
    ("early-stopping-on-a-metric-never-reported", lambda c: config(
        c, train={"early_stopping": {"metric": "bleu"}}), ConfigError,
     "train.early_stopping.metric 'bleu' is not reported by head.task text-classification"),
]


@pytest.fixture
def ctx(tmp_path, tiny_bert, tiny_seq2seq, tiny_vit, sentiment_csv) -> Ctx:
    return Ctx(tmp_path, tiny_bert, tiny_seq2seq, tiny_vit, sentiment_csv)


def run(cfg: dict, tmp_path: Path, events: list | None = None):
    return train(RunConfig.from_dict(cfg), (events if events is not None else []).append,
                 threading.Event(), out_dir=tmp_path / "out")


@pytest.mark.parametrize(("build", "kind", "phrase"), [m[1:] for m in MISTAKES],
                         ids=[m[0] for m in MISTAKES])
def test_mistake_gets_its_own_sentence(build, kind, phrase, ctx):
    events = []
    with pytest.raises(HubtuneError) as err:
        run(build(ctx), ctx.tmp, events)
    message = str(err.value)
    assert isinstance(err.value, kind), (type(err.value).__name__, message)
    assert phrase in message and "\n" not in message, message
    assert not any(type(e).__name__ == "StepLogged" for e in events), "it trained first"


SLIPS = [
    ("batch-larger-than-the-data", {"train": {"batch_size": 1000}}),
    ("max-steps-below-grad-accumulation", {"train": {"max_steps": 1, "grad_accumulation": 4}}),
    ("eval-every-beyond-the-last-step", {"train": {"eval_every": 1000}}),
    ("validation-split-rounds-to-nothing", {"validation_split": 0.001}),
    ("early-stopping-named-as-charted", {"train": {"early_stopping": {"metric": "val_loss"}}}),
    ("json-array-of-records", {"data": CORPUS / "records.json"}),
]


@pytest.mark.parametrize("keys", [s[1] for s in SLIPS], ids=[s[0] for s in SLIPS])
def test_slip_that_still_trains(keys, ctx):
    outcome = run(config(ctx, **keys), ctx.tmp)
    assert outcome.status == "completed", outcome.error
    assert outcome.summary["steps"] >= 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert, tiny_vit, sentiment_csv):
    """A text and an image model, trained for one step and saved, for the predictor."""
    root = tmp_path_factory.mktemp("trained")
    ctx = Ctx(root, tiny_bert, tiny_bert, tiny_vit, sentiment_csv)
    text = config(ctx, train={"max_steps": 1})
    images = config(ctx, model=tiny_vit, task="image-classification",
                    data=ctx.images("imgs", {"a": 4, "b": 4}), train={"max_steps": 1})
    out = {}
    for name, cfg in (("text", text), ("image", images)):
        assert run(cfg, root / name).status == "completed"
        out[name] = root / name / "out" / "model"
    return out


@pytest.mark.parametrize(("model", "inputs", "phrase"), [
    ("text", [""], "The input is empty; give text"),
    ("text", ["fine", "   "], "Input 2 is empty"),
    ("image", [""], "The input is empty; give the path of an image"),
    ("image", ["no/such/image.png"], "Image no/such/image.png does not exist"),
], ids=["empty-text", "blank-second-text", "empty-image-path", "missing-image"])
def test_predictor_refuses_empty_or_missing_input(model, inputs, phrase, trained):
    from engine.trained.predict import Predictor

    with pytest.raises(DataError) as err:
        Predictor(trained[model]).predict(inputs)
    assert phrase in str(err.value)


def test_predictor_given_nothing_predicts_nothing(trained):
    from engine.trained.predict import Predictor

    assert Predictor(trained["text"]).predict([]) == []
