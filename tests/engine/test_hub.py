"""Hub access through huggingface_hub against the loopback hub server."""

from __future__ import annotations

import threading

import pytest

from engine.hub.client import (
    DownloadCancelled,
    GatedRepo,
    HubError,
    HubUnavailable,
    RepoNotFound,
    RevisionNotFound,
    download_model,
    list_cached,
    model_details,
    remove_cached,
    search_models,
    torchvision_backbones,
    verify_cached,
)


def ids(results):
    return [r.id for r in results]


def test_search_by_query_task_library_and_sort(hub_server):
    assert ids(search_models("tiny", sort="downloads")) == [
        "hubtune-test/tiny-bert", "hubtune-test/tiny-vit", "hubtune-test/tiny-bart"]
    assert ids(search_models("tiny", sort="likes")) == [
        "hubtune-test/tiny-bart", "hubtune-test/tiny-bert", "hubtune-test/tiny-vit"]
    assert ids(search_models("tiny", sort="updated")) == [
        "hubtune-test/tiny-bart", "hubtune-test/tiny-vit", "hubtune-test/tiny-bert"]
    assert ids(search_models(task="image-classification")) == ["hubtune-test/tiny-vit"]
    assert ids(search_models("tiny", library="timm")) == ["hubtune-test/tiny-vit"]
    assert ids(search_models("tiny", limit=1)) == ["hubtune-test/tiny-bert"]
    first = search_models("tiny-bert")[0]
    assert (first.task, first.downloads, first.likes, first.cached) == ("fill-mask", 300, 5,
                                                                        False)
    with pytest.raises(HubError, match="Cannot sort by 'stars'"):
        search_models(sort="stars")


def test_details_show_card_files_sizes_parameters_and_heads(hub_server, tiny_bert):
    d = model_details("hubtune-test/tiny-bert")
    assert d.card.startswith("# tiny-bert") and "license:" not in d.card
    assert d.license == "apache-2.0"
    paths = {f.path: f.size for f in d.files}
    assert paths["model.safetensors"] == (tiny_bert / "model.safetensors").stat().st_size
    assert "pytorch_model.bin" in paths
    # The default download skips other frameworks' weights.
    assert d.download_size == sum(size for p, size in paths.items() if p != "pytorch_model.bin")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert)
    assert d.parameters == sum(p.numel() for p in model.parameters())
    from engine.tasks.fit import guessed_heads

    assert "text-classification" in guessed_heads(d) and "question-answering" in guessed_heads(d)
    assert not d.needs_remote_code and d.has_safetensors
    assert model_details("hubtune-test/remote-code").needs_remote_code


def test_download_reports_monotone_bytes_and_loads_offline(hub_server, monkeypatch):
    seen = []
    path = download_model("hubtune-test/tiny-bert", progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen
    expected = model_details("hubtune-test/tiny-bert").download_size
    assert seen[-1] == (expected, expected)
    assert not (path / "pytorch_model.bin").exists()
    assert (path / "model.safetensors").is_file()

    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    from engine.core.config import ModelSpec
    from engine.modeling.loading import load_tokenizer, resolve_model_path

    local = resolve_model_path(ModelSpec(id="hubtune-test/tiny-bert"))
    assert local == path
    tokenizer, _ = load_tokenizer(ModelSpec(id="hubtune-test/tiny-bert"))
    assert tokenizer("good movie")["input_ids"]
    assert [m.id for m in list_cached()] == ["hubtune-test/tiny-bert"]
    assert search_models  # offline search is covered below


def test_cancel_midway_leaves_no_partial_file_and_a_retry_completes(slow_hub_server, hf_cache):
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done > (512 << 10):
            stop.set()

    with pytest.raises(DownloadCancelled):
        download_model("hubtune-test/big", progress=progress, stop=stop)
    assert 0 < seen[-1] < 24 << 20
    assert not list(hf_cache.rglob("*.incomplete"))
    assert not [p for p in hf_cache.rglob("snapshots/*/model.safetensors") if p.exists()]
    path = download_model("hubtune-test/big")
    assert (path / "model.safetensors").stat().st_size > 24 << 20
    assert verify_cached("hubtune-test/big").ok


@pytest.mark.parametrize(("repo", "revision", "kind", "message"), [
    ("hubtune-test/nope", None, RepoNotFound, "Model hubtune-test/nope was not found on the hub"),
    ("hubtune-test/tiny-bert", "v9", RevisionNotFound,
     "Model hubtune-test/tiny-bert has no revision 'v9'"),
    ("hubtune-test/gated", None, GatedRepo, "Model hubtune-test/gated is gated"),
    ("hubtune-test/broken", None, HubUnavailable, "The hub answered with an error (HTTP 500)"),
])
def test_hub_errors_are_typed_and_one_sentence(hub_server, repo, revision, kind, message):
    with pytest.raises(kind) as err:
        download_model(repo, revision=revision)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_offline_search_says_so(hf_cache, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailable, match="offline mode"):
        search_models("bert")


def test_unreachable_hub_says_so(hf_cache, monkeypatch):
    import socket

    import huggingface_hub.constants as hf_constants

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(HubError, match="cannot be reached"):
        search_models("bert", endpoint=f"http://127.0.0.1:{port}")


def test_cache_ls_verify_detects_corruption_and_rm_frees(hub_server):
    download_model("hubtune-test/tiny-bert")
    download_model("hubtune-test/tiny-bart")
    cached = {m.id: m for m in list_cached()}
    assert set(cached) == {"hubtune-test/tiny-bert", "hubtune-test/tiny-bart"}
    assert cached["hubtune-test/tiny-bert"].size > 0
    report = verify_cached("hubtune-test/tiny-bert")
    assert report.ok and report.checked >= 5
    from pathlib import Path

    weights = Path(cached["hubtune-test/tiny-bert"].path).glob("snapshots/*/model.safetensors")
    blob = next(weights).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    report = verify_cached("hubtune-test/tiny-bert")
    assert report.corrupted == ("model.safetensors",) or report.corrupted[0].endswith(
        "model.safetensors")
    assert remove_cached("hubtune-test/tiny-bert") > 0
    assert [m.id for m in list_cached()] == ["hubtune-test/tiny-bart"]
    with pytest.raises(HubError, match="is not in the local cache"):
        verify_cached("hubtune-test/tiny-bert")


def test_torchvision_backbones_are_listed_without_the_hub(hf_cache):
    found = search_models("resnet", library="torchvision")
    assert [m.id for m in found] == ["torchvision:resnet18", "torchvision:resnet34",
                                     "torchvision:resnet50"]
    # A check mark means weights on disk: none are cached here, and a backbone without
    # offered weights has none to have (#22: it used to show one).
    assert [m.cached for m in found] == [False, False, False]
    assert not search_models("mobilenet_v3_small", library="torchvision")[0].cached


def test_torchvision_details_come_from_torchvision_not_the_hub(hf_cache):
    d = model_details("torchvision:resnet18", endpoint="http://127.0.0.1:9")  # never asked
    from engine.tasks.fit import guessed_heads

    assert (d.task, d.library, guessed_heads(d)) == ("image-classification", "torchvision",
                                                     ("image-classification",))
    assert d.parameters == 11_689_512 and not d.cached
    assert "timm/resnet18.tv_in1k" in d.card and "last linear layer" in d.card
    random = model_details("torchvision:vit_b_16")
    assert not random.cached and "random weights" in random.card
    with pytest.raises(HubError, match="not an offered torchvision backbone.*resnet18"):
        model_details("torchvision:alexnet")


def test_download_chosen_files_only(hub_server):
    path = download_model("hubtune-test/tiny-bert", files=["config.json"])
    assert sorted(p.name for p in path.iterdir()) == ["config.json"]


def test_torchvision_backbones_have_exact_parameter_counts():
    found = {b.id: b.parameters for b in torchvision_backbones()}
    assert found["torchvision:resnet18"] == 11_689_512
    assert found["torchvision:mobilenet_v3_small"] == 2_542_856
