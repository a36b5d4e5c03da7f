"""The loopback hub answers huggingface_hub for real: a tiny model downloads and loads."""

from __future__ import annotations

import pytest


def test_snapshot_download_from_loopback_hub_then_load_offline(hub_server, tmp_path):
    from huggingface_hub import snapshot_download
    from transformers import AutoModel, AutoTokenizer

    seen = []

    from tqdm.auto import tqdm

    class Recorder(tqdm):
        def update(self, n=1):
            seen.append(n)
            return super().update(n)

    path = snapshot_download(
        "hubtune-test/tiny-bert", cache_dir=tmp_path / "cache", endpoint=hub_server.url,
        tqdm_class=Recorder,
    )
    model = AutoModel.from_pretrained(path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    out = model(**tokenizer(["a good movie"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 32
    assert any(method == "GET" and "/resolve/" in p for method, p in hub_server.requests)
    assert seen, "the tqdm_class progress hook was never called"


def test_unknown_repo_is_a_typed_404(hub_server, tmp_path):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("hubtune-test/nope", cache_dir=tmp_path, endpoint=hub_server.url)


def test_search_filters_and_sorts(hub_server):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.url)
    by_downloads = [m.id for m in api.list_models(search="tiny", sort="downloads", limit=10)]
    assert by_downloads == ["hubtune-test/tiny-bert", "hubtune-test/tiny-vit",
                            "hubtune-test/tiny-bart"]
    vision = [m.id for m in api.list_models(pipeline_tag="image-classification")]
    assert vision == ["hubtune-test/tiny-vit"]


def test_tiny_seq2seq_and_vision_models_load_and_run(tiny_seq2seq, tiny_vit):
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_seq2seq)
    s2s = AutoModelForSeq2SeqLM.from_pretrained(tiny_seq2seq)
    batch = tok(["the movie was good"], return_tensors="pt")
    labels = tok(["the film was great"], return_tensors="pt").input_ids
    loss = s2s(**batch, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)

    proc = AutoImageProcessor.from_pretrained(tiny_vit)
    vit = AutoModel.from_pretrained(tiny_vit)
    pixels = proc(images=[torch.randint(0, 255, (3, 20, 20), dtype=torch.uint8)],
                  return_tensors="pt").pixel_values
    assert vit(pixel_values=pixels).last_hidden_state.shape == (1, 17, 32)
