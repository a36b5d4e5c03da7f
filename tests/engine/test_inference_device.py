"""Where inference runs and in which precision (issue #30, defect 5).

`place_inference` is the one decision every inference path takes (predict, predict
--file, the playground, the embedding run). Real store rows and the real queue code
say which GPU a run holds; NVML is the one thing faked (tests/support/fake_nvml.py),
and so is torch's view of CUDA (`cuda_available`, `cuda_uuids`), which the CPU machine
lacks. The precision half runs for real on the CPU: bf16 under CPU autocast.
The tests at the end need CUDA and skip without it (bench/gpu_check.py runs them).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from engine.cluster.gpus import GpuMonitor
from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from engine.runs.queue import QueueSettings, assign_waiting, read_slots
from engine.training.inference import CPU, InferencePlacement, place_inference
from tests.support.fake_nvml import GIB, FakeGpu, FakeNvml

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TEXTS = ["the food was good", "awful service and a sad day", "i love this film",
         "the worst show", "a very nice place", "boring and ugly", "great fun today",
         "not really fine"]


def uuid(n: int) -> str:
    return f"GPU-{n:08x}-aaaa-bbbb-cccc-ddddeeeeffff"


def box(count: int = 4, capability=(9, 0), **per_gpu) -> GpuMonitor:
    gpus = [FakeGpu(uuid(i), used=GIB // 4, capability=capability) for i in range(count)]
    for index, fields in per_gpu.items():
        for key, value in fields.items():
            setattr(gpus[int(index[3:])], key, value)
    return GpuMonitor(FakeNvml(gpus))


def hold(store, monitor: GpuMonitor, *gpus: int) -> list[int]:
    """Queued runs given the slots `gpus` by the real scheduler (one run per GPU): a
    GPU that is not wanted is made busy for the assignment only."""
    runs = []
    for gpu in gpus:
        run = store.create_run({"i": gpu}, queue_slots=1)
        others = [i for i in range(monitor.count) if i != gpu]
        blocked = GpuMonitor(FakeNvml([
            FakeGpu(uuid(i), used=(40 if i in others else 0) * GIB) for i in range(monitor.count)
        ]))
        got = assign_waiting(store, monitor=blocked, settings=QueueSettings())
        assert [(a.run_id, a.devices) for a in got] == [(run, (f"gpu{gpu}",))]
        runs.append(run)
    return runs


def place(store, monitor, *, cvd: str | None = None, order=None, **kw) -> InferencePlacement:
    """What `hubtune predict` decides on this fake machine (torch's UUID order given by
    `order`, default NVML's order of the visible GPUs)."""
    environ = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
    visible = monitor.visible(environ.get("CUDA_VISIBLE_DEVICES"))
    uuids = [uuid(i) for i in (order if order is not None else visible)]
    slots = read_slots(store, monitor, QueueSettings())
    return place_inference(kw.pop("precision", "auto"), slots=slots, monitor=monitor,
                           environ=environ, cuda_available=True, cuda_uuids=lambda: uuids,
                           **kw)


# -- which GPU ------------------------------------------------------------------


def test_a_gpu_no_run_holds_is_picked_over_the_one_a_training_run_holds(store):
    monitor = box(4)
    run, = hold(store, monitor, 0)
    placement = place(store, monitor)
    assert (placement.device, placement.gpu) == ("cuda:1", 1)
    assert placement.reason == "no run holds it"
    # Before any run held GPU 0, it was the first choice.
    store.finish(run, "completed")
    assert place(store, monitor).device == "cuda:0"


def test_another_users_busy_gpu_is_avoided_too(store):
    monitor = box(3, gpu0={"used": 30 * GIB}, gpu1={"util": 95})
    hold(store, box(3), 2)
    placement = place(store, monitor)
    # gpu0 and gpu1 are busy (another process), gpu2 is held by a run: the least bad is a
    # GPU no run holds; between the two busy ones, the one with more free memory.
    assert (placement.gpu, placement.device) == (1, "cuda:1")
    assert "another process" in placement.reason


def test_when_every_gpu_is_held_the_one_with_most_free_memory(store):
    monitor = box(2, gpu0={"used": 70 * GIB}, gpu1={"used": 20 * GIB})
    runs = hold(store, box(2), 0, 1)
    placement = place(store, monitor)
    assert placement.gpu == 1 and f"#{runs[1]}" in placement.reason


def test_cuda_visible_devices_limits_the_choice_and_ordinals_follow_uuids(store):
    monitor = box(4)
    hold(store, monitor, 3)
    # The user shows GPUs 3 and 1: 3 is held, so 1, which is cuda:1 in this process.
    assert place(store, monitor, cvd="3,1").device == "cuda:1"
    # CUDA's own order (fastest first) need not be NVML's: the UUID decides the ordinal.
    placement = place(store, monitor, cvd="3,1", order=[1, 3])
    assert (placement.gpu, placement.device) == (1, "cuda:0")
    # A GPU the user hid is never chosen, free or not.
    assert place(store, monitor, cvd="3").gpu == 3


def test_no_queue_known_means_the_first_visible_gpu(store):
    """A run's own worker (the embedding run): its CUDA_VISIBLE_DEVICES is its slot."""
    placement = place_inference("auto", monitor=box(2), environ={"CUDA_VISIBLE_DEVICES": "1"},
                                cuda_available=True, cuda_uuids=lambda: [uuid(1)])
    assert placement.device == "cuda:0" and placement.precision == "bf16"


def test_the_device_a_user_names(store):
    monitor = box(4)
    hold(store, monitor, 2)
    assert place(store, monitor, device="gpu2").device == "cuda:2"  # held, but asked for
    assert place(store, monitor, device="cuda:3").gpu == 3
    assert place(store, monitor, device="CPU") == InferencePlacement(
        "cpu", "fp32", None, True, "asked for the CPU")
    with pytest.raises(HubtuneError, match="not a device; use cpu, cuda"):
        place(store, monitor, device="tpu")
    with pytest.raises(HubtuneError, match="gpu1 is not a GPU this process can use"):
        place(store, monitor, device="gpu1", cvd="2,3")
    with pytest.raises(HubtuneError, match=r"sees 4 GPUs \(cuda:0 to cuda:3\)"):
        place(store, monitor, device="cuda:7")
    with pytest.raises(HubtuneError, match="needs a GPU, but torch sees none"):
        place_inference("auto", device="cuda", cuda_available=False)


def test_without_a_gpu_inference_stays_on_the_cpu():
    placement = place_inference("auto", cuda_available=False)
    assert (placement.device, placement.precision, placement.gpu) == ("cpu", "fp32", None)


# -- which precision ---------------------------------------------------------------


@pytest.mark.parametrize(("requested", "capability", "cuda", "expected"), [
    ("auto", (9, 0), True, "bf16"),   # H100: bf16 natively
    ("auto", (7, 5), True, "fp16"),   # T4: bf16 only by emulation
    ("auto", None, False, "fp32"),
    ("bf16", None, False, "bf16"),    # CPU autocast, as training on the CPU does
    ("fp16", None, False, "fp32"),    # no fast fp16 CPU kernels
    ("fp16", (9, 0), True, "fp16"),
    ("fp32", (9, 0), True, "fp32"),
])
def test_the_autocast_precision_follows_the_runs_precision_on_the_device(
        requested, capability, cuda, expected):
    monitor = box(1, capability=capability or (9, 0))
    placement = place_inference(requested, monitor=monitor, environ={}, cuda_available=cuda,
                                cuda_uuids=lambda: [uuid(0)])
    assert placement.precision == expected
    assert placement.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}.get(expected)


def test_strict_fp32_is_passed_on_and_bad_precisions_refused():
    assert not place_inference("fp32", tf32=False, cuda_available=False).tf32
    with pytest.raises(HubtuneError, match="train.precision 'fp8'"):
        place_inference("fp8", cuda_available=False)


def test_autocast_is_on_for_the_placements_device_type():
    with InferencePlacement("cpu", "bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with CPU.autocast():
        assert not torch.is_autocast_enabled("cpu")


# -- the inference paths use it --------------------------------------------------


def _model_dir(tmp_path, tiny_bert, task: str = "text-classification",
               labels=("negative", "positive"), target=None):
    """A model folder as a run saves it, with a head far from zero so labels are clear."""
    from engine.modeling.export import save_model
    from engine.modeling.loading import build_model

    cfg = RunConfig.from_dict({"model": {"id": str(tiny_bert)},
                               "head": {"task": task, "pooling": "mean"},
                               "data": {"train": str(tmp_path / "train.csv")}})
    torch.manual_seed(0)
    built = build_model(cfg.model, cfg.head, max(1, len(labels)))
    for p in built.model.head.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return save_model(built.model.eval(), built.tokenizer, labels, built.pooling, cfg,
                      target or tmp_path / "run" / "model"), cfg


def _autocast_seen(predictor) -> list:
    """Record, at each forward pass, whether autocast was on and in which dtype."""
    seen: list = []
    predictor.model.register_forward_hook(lambda *_: seen.append(
        (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    return seen


def test_bf16_predictions_on_the_cpu_match_fp32_labels(tmp_path, tiny_bert):
    from engine.trained.predict import Predictor

    model_dir, _ = _model_dir(tmp_path, tiny_bert)
    fp32 = Predictor(model_dir)
    bf16 = Predictor(model_dir, place_inference("bf16", cuda_available=False))
    seen = _autocast_seen(bf16)
    ours, theirs = bf16.predict(TEXTS), fp32.predict(TEXTS)
    assert seen == [(True, torch.bfloat16)]
    assert [p.label for p in ours] == [p.label for p in theirs]
    assert len({p.label for p in theirs}) == 2  # both labels occur: the match means something
    for a, b in zip(ours, theirs, strict=True):
        assert a.score == pytest.approx(b.score, abs=0.05)
        assert a.score != b.score  # bf16 really ran


@pytest.mark.slow  # reads a file through datasets: seconds on the 2-core machine
def test_predict_file_runs_in_the_runs_precision(tmp_path, tiny_bert):
    from engine.trained.predict import Predictor, predict_file

    model_dir, cfg = _model_dir(tmp_path, tiny_bert)
    data = tmp_path / "rows.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text"], *[[t] for t in TEXTS * 3]])
    bf16_cfg = RunConfig.from_dict({**cfg.to_dict(), "train": {"precision": "bf16"}})
    ours = predict_file(model_dir, bf16_cfg, data, batch_size=5)  # default placement
    fp32 = Predictor(model_dir).score_batches(TEXTS * 3, batch_size=5)
    assert list(ours.table["predicted"]) == Predictor(model_dir).readable(fp32)[0]
    assert not torch.equal(torch.tensor(list(ours.table["score"])), fp32.max(-1).values)


def test_embeddings_under_bf16_point_the_same_way(tmp_path, tiny_bert):
    from engine.trained.predict import Predictor

    model_dir, _ = _model_dir(tmp_path, tiny_bert, "feature-extraction", ())

    def vectors(predictor) -> torch.Tensor:
        return torch.tensor([list(p.scores.values()) for p in predictor.predict(TEXTS)])

    a = vectors(Predictor(model_dir, InferencePlacement("cpu", "bf16")))
    b = vectors(Predictor(model_dir))
    assert not torch.equal(a, b)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99


def test_the_cli_refuses_an_unknown_device_in_one_sentence(store, tmp_path, tiny_bert):
    from tests.support.cli_runner import hubtune

    _, cfg = _model_dir(tmp_path, tiny_bert)
    run_id = store.create_run(cfg.to_dict(), name="done")
    _model_dir(tmp_path, tiny_bert, target=Path(store.get_run(run_id).output_dir) / "model")
    store.finish(run_id, "completed")
    refused = hubtune("predict", str(run_id), "good", "--device", "tpu")
    assert refused.returncode != 0
    assert "--device 'tpu' is not a device; use cpu, cuda" in refused.stderr
    assert "Traceback" not in refused.stderr
    ok = hubtune("predict", str(run_id), "the food was good", "--device", "cpu", "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"label": "' in ok.stdout


# -- on a GPU (bench/gpu_check.py runs these) -----------------------------------------


@CUDA
def test_on_a_gpu_predictions_run_under_cuda_autocast_and_match_fp32(tmp_path, tiny_bert):
    from engine.trained.predict import Predictor

    model_dir, _ = _model_dir(tmp_path, tiny_bert)
    placement = place_inference("auto")
    assert placement.device.startswith("cuda") and placement.precision in ("bf16", "fp16")
    gpu = Predictor(model_dir, placement)
    seen: list = []
    gpu.model.register_forward_hook(lambda *_: seen.append(
        (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))))
    labels = [p.label for p in gpu.predict(TEXTS)]
    assert seen == [(True, placement.dtype)]
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert labels == [p.label for p in Predictor(model_dir).predict(TEXTS)]


@CUDA
def test_on_a_gpu_fp32_inference_runs_on_tf32_unless_strict(tmp_path, tiny_bert):
    from engine.trained.predict import Predictor

    model_dir, _ = _model_dir(tmp_path, tiny_bert)
    ampere = torch.cuda.get_device_capability() >= (8, 0)
    Predictor(model_dir, place_inference("fp32"))
    assert (torch.backends.cuda.matmul.fp32_precision == "tf32") == ampere
    Predictor(model_dir, place_inference("fp32", tf32=False))
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"


def _transformers_head(tmp_path, family: str, task: str) -> Path:
    """A tiny transformers task model saved as a run saves one (hubtune_head.json beside)."""
    import json

    import transformers as tf

    from tests.support.tiny_models import make_tiny_family

    folder = make_tiny_family(family, tmp_path / f"{family}-{task}")
    loader = {"masked-lm": tf.AutoModelForMaskedLM, "token-classification":
              tf.AutoModelForTokenClassification, "question-answering":
              tf.AutoModelForQuestionAnswering}.get(task)
    if loader is not None:  # a bare backbone: the task head starts random, as in a run
        torch.manual_seed(0)
        loader.from_pretrained(folder).save_pretrained(folder)
    (folder / "hubtune_head.json").write_text(json.dumps(
        {"task": task, "labels": [], "pooling": "mean"}))
    return folder


PLACEMENTS = [pytest.param(InferencePlacement("cpu", "bf16"), id="cpu-bf16"),
              pytest.param("cuda", id="cuda", marks=CUDA)]


@pytest.mark.slow  # five tiny models built and loaded: a minute on the 2-core machine
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_every_task_path_runs_on_the_placement_under_its_autocast(tmp_path, placement):
    """Tags, answers, fills and generated text each build their own inputs: each must
    reach the model's device and run under the placement's autocast."""
    from engine.trained.predict import Predictor

    if placement == "cuda":
        placement = place_inference("auto")
    cases = [("bert", "token-classification", "the movie was good"),
             ("bert", "question-answering", "what was good ? ||| the movie was good ."),
             ("bert", "masked-lm", "the movie was [MASK]"),
             ("gpt2", "causal-lm", "the movie"),
             ("t5", "seq2seq", "the food was good")]
    for family, task, text in cases:
        predictor = Predictor(_transformers_head(tmp_path, family, task), placement)
        seen: list = []
        predictor.model.register_forward_hook(lambda *_, seen=seen: seen.append(
            torch.get_autocast_dtype(placement.device_type)
            if torch.is_autocast_enabled(placement.device_type) else None))
        out = predictor.predict([text])[0]
        assert seen and set(seen) == {placement.dtype}, task
        assert next(predictor.model.parameters()).device.type == placement.device_type
        assert isinstance(out.label, str), task
