"""A real fine-tune of a tiny BERT on learnable data, through the engine API."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.core.config import load_config
from engine.core.errors import DataError, ModelError
from engine.core.events import EvalFinished, Note, RunPrepared, StepLogged
from engine.tasks.metrics import classification_scores, confusion_matrix
from engine.training.loop import train


def test_tiny_bert_learns_the_sentiment_rule(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["train.epochs=8"])
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")

    assert outcome.status == "completed", outcome.error
    prepared = [e for e in events if isinstance(e, RunPrepared)]
    assert len(prepared) == 1 and prepared[0].labels == ("negative", "positive")
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == sorted({e.step for e in steps})
    assert steps[-1].step == prepared[0].total_steps == outcome.summary["steps"]
    evals = [e for e in events if isinstance(e, EvalFinished)]
    assert len(evals) == 8  # one per epoch
    # The label follows one adjective: a real fine-tune beats the 50% baseline clearly.
    assert outcome.summary["final_accuracy"] >= 0.8
    assert outcome.summary["baseline_majority_accuracy"] == pytest.approx(0.5)
    assert steps[-1].metrics["loss"] < steps[0].metrics["loss"]
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()


def test_stop_event_ends_the_run_as_stopped(tiny_config):
    cfg = load_config(tiny_config)
    stop = threading.Event()

    def emit(event):
        if isinstance(event, StepLogged):
            stop.set()

    outcome = train(cfg, emit, stop)
    assert outcome.status == "stopped"
    assert outcome.summary["steps"] < 10


def test_mean_pooling_follows_sentence_transformers_config(tiny_bert, tmp_path, sentiment_csv):
    import shutil

    model_dir = tmp_path / "st-model"
    shutil.copytree(tiny_bert, model_dir)
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, model_dir, sentiment_csv, epochs=1, max_steps=1)
    notes = []
    train(cfg, notes.append, threading.Event())
    assert any(isinstance(n, Note) and "Pooling: mean" in n.message for n in notes)


def test_missing_column_is_named_with_the_columns_present(tmp_path, tiny_bert, sentiment_csv):
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, label_column="sentiment")
    with pytest.raises(DataError, match=r"has no column 'sentiment' \(data.label_column\); "
                                        r"its columns are text, label\."):
        train(cfg, lambda e: None, threading.Event())


def test_validation_label_unseen_in_training(tmp_path, tiny_bert, sentiment_csv):
    from tests.support.tests_helpers import config_for

    val = tmp_path / "val.csv"
    val.write_text("text,label\nthe food was good,positive\nit was fine,neutral\n")
    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, validation=str(val))
    with pytest.raises(DataError, match="Validation label 'neutral' never appears"):
        train(cfg, lambda e: None, threading.Event())


def test_non_utf8_file_suggests_an_encoding(tmp_path, tiny_bert):
    from tests.support.tests_helpers import config_for

    data = tmp_path / "latin.csv"
    data.write_bytes("text,label\ncaf\xe9 good,positive\nbad,negative\n".encode("latin-1") * 5)
    cfg = config_for(tmp_path, tiny_bert, data)
    with pytest.raises(DataError, match="is not valid utf-8 text .*set data.encoding"):
        train(cfg, lambda e: None, threading.Event())
    cfg = config_for(tmp_path, tiny_bert, data, encoding="latin-1", max_steps=1)
    assert train(cfg, lambda e: None, threading.Event()).status == "completed"


def test_pickle_only_model_is_refused_without_opt_in(tmp_path, tiny_bert, sentiment_csv):
    import shutil

    import torch
    from safetensors.torch import load_file

    model_dir = tmp_path / "pickle-model"
    shutil.copytree(tiny_bert, model_dir)
    weights = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(weights, model_dir / "pytorch_model.bin")
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, model_dir, sentiment_csv)
    with pytest.raises(ModelError, match=r"only pickle \(.bin\) weights.*model.allow_pickle"):
        train(cfg, lambda e: None, threading.Event())


def test_remote_code_is_refused_without_opt_in(tmp_path, tiny_bert, sentiment_csv):
    import json
    import shutil

    model_dir = tmp_path / "remote-model"
    shutil.copytree(tiny_bert, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (model_dir / "config.json").write_text(json.dumps(config))
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, model_dir, sentiment_csv)
    with pytest.raises(ModelError, match="model.trust_remote_code: true"):
        train(cfg, lambda e: None, threading.Event())


def test_metrics_match_hand_computed_values():
    import torch

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    scores = classification_scores(cm)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: 2*1/(2+2)=0.5, 2*2/(2+3)=0.8, 2*1/(2+1)=0.667
    assert scores["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_the_saved_model_is_the_best_evaluation(tmp_path, tiny_bert, sentiment_csv):
    """Evaluated every 2 steps, accuracy peaks before the end: the export is the peak."""
    from safetensors.torch import load_file

    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=3)
    cfg = load_config_dict(cfg, {"train": {"eval_every": 2, "learning_rate": 3e-3,
                                           "keep_checkpoints": 1}})
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed"
    s = outcome.summary
    accuracy = {e.step: e.metrics["val_accuracy"] for e in events if isinstance(e, EvalFinished)}
    best_step = s["best_step"]
    assert accuracy[best_step] == max(accuracy.values()) == s["best_accuracy"]
    assert s["model_step"] == best_step
    assert s["kept_eval"] == "best"  # the run's result is this evaluation's (store.kept_metrics)
    saved = load_file(tmp_path / "out" / "model" / "model.safetensors")
    best = load_file(tmp_path / "out" / "checkpoints" / f"step-{best_step}" / "model.safetensors")
    assert all(torch.equal(saved[k], best[k]) for k in best)
    if best_step != s["steps"]:
        assert any(isinstance(e, Note) and e.message.startswith("Restored the best weights")
                   for e in events)


def test_out_of_memory_fails_the_run_with_suggestions(tmp_path, tiny_bert, sentiment_csv):
    """A CUDA OOM injected at the third step: the run fails with reason and remedies."""
    from tests.support.tests_helpers import config_for, prepared_loop

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=2)
    loop = prepared_loop(cfg, out_dir=tmp_path / "out")
    real_forward, calls = loop.run.model.forward, {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(*args, **kwargs)

    loop.run.model.forward = forward
    outcome = loop.train()
    assert outcome.status == "failed"
    assert outcome.error.startswith("Out of GPU memory at step 2 with batch size 16; fork the "
                                    "run with train.batch_size=8 train.grad_accumulation=2")
    assert outcome.summary["failure_reason"] == "oom"
    assert any("gradient_checkpointing" in s for s in outcome.summary["suggestions"])
    assert any("freeze" in s for s in outcome.summary["suggestions"])


@pytest.mark.parametrize("where", ["preparing", "evaluating"])
def test_out_of_memory_outside_a_step_fails_the_run_the_same_way(tmp_path, tiny_bert,
                                                                 sentiment_csv, where,
                                                                 monkeypatch):
    """OOM while loading the model or caching features, or in an evaluation: the same
    failed outcome with its reason, not a crash."""
    from engine.training.setup import RunSetup
    from tests.support.tests_helpers import config_for, prepared_loop

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=1)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    if where == "preparing":  # caching a frozen backbone's features, say
        monkeypatch.setattr(RunSetup, "_batches", out_of_memory)
        outcome = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "out")
        assert outcome.error.startswith("Out of GPU memory while preparing the run")
        assert outcome.summary["steps"] == 0
    else:
        loop = prepared_loop(cfg, out_dir=tmp_path / "out")
        loop.run.task.evaluate = out_of_memory
        outcome = loop.train()
        assert outcome.error.startswith("Out of GPU memory while evaluating at step ")
    assert outcome.status == "failed"
    assert outcome.summary["failure_reason"] == "oom"


def load_config_dict(cfg, changes):
    from engine.core.config import RunConfig

    data = cfg.to_dict()
    for section, values in changes.items():
        data[section].update(values)
    return RunConfig.from_dict(data)


@pytest.mark.slow
def test_compiled_training_keeps_plain_weight_names(tmp_path, tiny_bert, sentiment_csv,
                                                    monkeypatch):
    """train.compile wraps the model in torch.compile; checkpoints and the export do not
    see the wrapper, so a compiled run resumes and exports like any other. The eager
    backend gives the same wrapper without running a C++ compiler (40 s on 2 cores)."""
    import functools

    import torch
    from safetensors.torch import load_file

    from tests.support.tests_helpers import config_for

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=1, max_steps=3)
    cfg = load_config_dict(cfg, {"train": {"compile": True, "checkpoint_every": 2}})
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    assert any(isinstance(e, Note) and "torch.compile" in e.message for e in events)
    saved = load_file(tmp_path / "out" / "checkpoints" / "step-2" / "model.safetensors")
    exported = load_file(tmp_path / "out" / "model" / "model.safetensors")
    assert saved.keys() == exported.keys()
    assert not any("_orig_mod" in k for k in exported)


# -- a stop while the run prepares ----------------------------------------------


def test_a_stop_before_the_start_ends_the_run_at_once(tiny_config, tmp_path):
    import time

    stop = threading.Event()
    stop.set()
    events = []
    started = time.perf_counter()
    outcome = train(load_config(tiny_config), events.append, stop, out_dir=tmp_path / "out")
    assert outcome.status == "stopped" and outcome.summary == {"steps": 0}
    assert time.perf_counter() - started < 5  # no model, no data: nothing was loaded
    assert not any(isinstance(e, (RunPrepared, StepLogged)) for e in events)
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("when", ["Loading", "Tokenised the data", "RunPrepared"])
def test_a_stop_while_preparing_ends_the_run_before_any_step(when, tiny_config, tmp_path):
    """Stop requested as the model loads, once the data is tokenised (before the model is
    built), and once everything is ready (before the first step): stopped, no step, no
    checkpoint."""
    stop = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if type(event).__name__ == when or (isinstance(event, Note)
                                            and event.message.startswith(when)):
            stop.set()

    outcome = train(load_config(tiny_config), emit, stop, out_dir=tmp_path / "out")
    assert outcome.status == "stopped" and outcome.summary["steps"] == 0
    assert not any(isinstance(e, StepLogged) for e in events)
    assert any(isinstance(e, RunPrepared) for e in events) == (when == "RunPrepared")
    assert not (tmp_path / "out" / "checkpoints").exists()
    assert not (tmp_path / "out" / "model").exists()


def test_tokenising_stops_between_chunks(monkeypatch):
    """Tokenising goes in chunks; a stop that arrives during one ends it at the next."""
    import engine.data.loading as data
    from engine.data.loading import PreparationStopped, stoppable, tokenise

    monkeypatch.setattr(data, "TOKENISE_CHUNK", 4)
    stop = threading.Event()
    calls = []

    def tokenizer(texts, pairs=None, **kwargs):
        calls.append(list(texts))
        if len(calls) == 2:
            stop.set()  # the request lands while the second chunk is tokenised
        return {"input_ids": [[len(t)] for t in texts]}

    texts = [f"text {i}" for i in range(20)]
    with stoppable(stop), pytest.raises(PreparationStopped):
        tokenise(tokenizer, texts)
    assert calls == [texts[:4], texts[4:8]]
    stop.clear()
    with stoppable(stop):  # unstopped, the chunks join up into one result
        assert tokenise(tokenizer, texts)["input_ids"] == [[len(t)] for t in texts]
    assert tokenise(tokenizer, texts[:3])["input_ids"] == [[6]] * 3  # no stop given: runs


def test_samples_per_second_leaves_out_evaluation_time(tmp_path, tiny_bert, sentiment_csv):
    """An evaluation after each of two steps that takes 4 s: the logged rate over those
    32 samples stays a training rate (it would be under 4 samples/s if they counted;
    over 6 leaves the two training steps 5 s even on a loaded machine)."""
    import time

    from engine.core.events import StepLogged
    from tests.support.tests_helpers import config_for, prepared_loop

    cfg = load_config_dict(config_for(tmp_path, tiny_bert, sentiment_csv, max_steps=2),
                           {"train": {"eval_every": 1, "log_every": 2}})
    events = []
    loop = prepared_loop(cfg, events.append)
    real = loop.run.task.evaluate

    def slow_evaluate(*args, **kwargs):
        time.sleep(4.0)
        return real(*args, **kwargs)

    loop.run.task.evaluate = slow_evaluate
    assert loop.train().status == "completed"
    logged = [e.metrics for e in events if isinstance(e, StepLogged)]
    rates = [m["samples_per_s"] for m in logged]
    assert len(rates) == 1 and rates[0] > 6, rates
    # The ETA's pace: the same interval's two steps over the same training-only time
    # (16 samples a step here), so the two rates agree.
    assert logged[0]["steps_per_s"] == pytest.approx(rates[0] / 16), logged
    from engine.core.events import FirstStepTaken

    # Step 1 is no logging step (log_every 2), yet it is reported: the counter starts there.
    assert [e.step for e in events if isinstance(e, FirstStepTaken)] == [1]
