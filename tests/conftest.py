"""Shared fixtures: an isolated data directory, offline hub, tiny real models,
a loopback hub server and a real store."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

# huggingface_hub and transformers read these at import time, so they are set
# before any test module imports them. Nothing in the suite reaches the network.
_HF_HOME = tempfile.mkdtemp(prefix="hubtune-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
if "HUBTUNE_HOME" not in os.environ:
    os.environ["HUBTUNE_HOME"] = tempfile.mkdtemp(prefix="hubtune-home-")
    atexit.register(shutil.rmtree, os.environ["HUBTUNE_HOME"], ignore_errors=True)
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
# torchrun started by a test itself (not by a run, which names its own folder) keeps its
# per-launch logs there too, rather than a torchelastic_* folder in /tmp per launch.
os.environ.setdefault("PET_LOG_DIR", os.path.join(_HF_HOME, "torchelastic"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the cores, and most tests start workers of their own:
    # one compute thread per process (inherited by those workers) instead of one per core
    # in each, whose spinning threads then wait on each other. Halves `make test` on 2 cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.support.hub_server import HubServer, Repo  # noqa: E402 - after the environment
from tests.support.tiny_models import (  # noqa: E402
    make_tiny_bert,
    make_tiny_seq2seq,
    make_tiny_vit,
    write_sentiment_csv,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def hubtune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own data directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("HUBTUNE_HOME", str(home))
    yield home
    _kill_leftover_workers(home)


def _is_worker(pid: int) -> bool:
    """Only real training workers: tests also record runs with their own pid."""
    if pid == os.getpid():
        return False
    try:
        return b"engine.launch.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_leftover_workers(home: Path) -> None:
    """A failed test may leave a worker training; never let it outlive the test."""
    import signal

    db = home / "hubtune.db"
    if not db.exists():
        return
    from store import RunStore, StoreError

    try:
        store = RunStore(db)
    except StoreError:
        return  # a test left the database unopenable on purpose; no workers to find
    try:
        for run in store.list_runs(limit=None):
            if run.status in ("queued", "running") and run.pid and _is_worker(run.pid):
                try:
                    os.kill(run.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    finally:
        store.close()


@pytest.fixture(scope="session", autouse=True)
def warm_workers():
    """Workers started from this process are forked from one that has imported torch
    (tests/support/warm_worker.py); HUBTUNE_COLD_WORKERS=1 execs each one instead."""
    if os.environ.get("HUBTUNE_COLD_WORKERS") == "1":
        yield None
        return
    import engine.launch.start
    from tests.support.warm_worker import WarmLauncher

    launcher = WarmLauncher(engine.launch.start.popen)
    engine.launch.start.popen = launcher
    yield launcher
    engine.launch.start.popen = launcher._popen
    launcher.close()


@pytest.fixture
def store(hubtune_home: Path):
    from store import RunStore

    s = RunStore()
    yield s
    s.close()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_seq2seq(tmp_path_factory.mktemp("models") / "tiny-bart")


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_vit(tmp_path_factory.mktemp("models") / "tiny-vit")


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sentiment_csv(tmp_path_factory.mktemp("data") / "sentiment.csv", rows=160)


@pytest.fixture(scope="session")
def hub_repos(tmp_path_factory, tiny_bert: Path, tiny_seq2seq: Path, tiny_vit: Path):
    """Repo folders for the loopback hub: tiny models plus a card, and problem repos."""
    import json
    import shutil

    root = tmp_path_factory.mktemp("hub")
    bert = root / "tiny-bert"
    shutil.copytree(tiny_bert, bert)
    (bert / "README.md").write_text(
        "---\nlicense: apache-2.0\n---\n# tiny-bert\n\nA two-layer BERT for tests.\n")
    (bert / "pytorch_model.bin").write_bytes(b"\0" * 4096)  # another framework's weights
    remote = root / "remote-code"
    shutil.copytree(tiny_bert, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "modeling_custom.py").write_text("raise SystemExit('remote code ran')\n")
    big = root / "big"
    big.mkdir()
    (big / "config.json").write_text('{"model_type": "bert"}')
    import torch
    from safetensors.torch import save_file

    # 24 MiB: huggingface_hub reports progress per 10 MB chunk, so this makes three reports.
    save_file({"weight": torch.randn(6144, 1024)}, big / "model.safetensors")
    return [
        Repo("hubtune-test/tiny-bert", bert, pipeline_tag="fill-mask", downloads=300,
             likes=5, last_modified="2026-03-01T00:00:00.000Z", tags=["license:apache-2.0"]),
        Repo("hubtune-test/tiny-bart", tiny_seq2seq, pipeline_tag="text2text-generation",
             downloads=100, likes=9, last_modified="2026-05-01T00:00:00.000Z"),
        Repo("hubtune-test/tiny-vit", tiny_vit, pipeline_tag="image-classification",
             library="timm", downloads=200, likes=1, last_modified="2026-04-01T00:00:00.000Z"),
        Repo("hubtune-test/remote-code", remote, pipeline_tag="feature-extraction"),
        Repo("hubtune-test/gated", tiny_bert, gated=True),
        Repo("hubtune-test/broken", tiny_bert, error_status=500),
        Repo("hubtune-test/big", big),
        *dataset_repos(root),
    ]


def dataset_repos(root: Path) -> list:
    """Dataset repos (parquet shards; a README declaring the subsets reviews and short):
    open, gated (401 without a token, 403 with a token not granted) and one with no README."""
    from tests.support.hub_datasets import write_plain_repo, write_sentiment_repo

    sentiment = write_sentiment_repo(root / "sentiment-data")
    return [
        Repo("hubtune-test/sentiment", sentiment, repo_type="dataset", downloads=50,
             tags=["task_categories:text-classification", "license:mit"]),
        Repo("hubtune-test/gated-data", sentiment, repo_type="dataset", gated=True,
             token="hf_granted_token_for_tests"),
        Repo("hubtune-test/plain-data", write_plain_repo(root / "plain-data"),
             repo_type="dataset"),
    ]


def _serve(repos, monkeypatch, **kwargs):
    import huggingface_hub.constants as hf_constants

    server = HubServer(repos, **kwargs)
    server.__enter__()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
        server.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    return server


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty huggingface_hub cache for this test."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def hub_server(hub_repos, hf_cache, monkeypatch):
    """A loopback hub holding the tiny models; huggingface_hub goes online to it."""
    server = _serve(hub_repos, monkeypatch)
    yield server
    server.__exit__(None, None, None)


@pytest.fixture
def slow_hub_server(hub_repos, hf_cache, monkeypatch):
    """The same hub sending file bodies at 8 MiB/s, so a download can be cancelled midway."""
    server = _serve(hub_repos, monkeypatch, throttle_bytes_per_s=8 << 20)
    yield server
    server.__exit__(None, None, None)


def write_config(path: Path, model: Path | str, data: Path, **train) -> Path:
    """A small run config for the tiny model and data."""
    import yaml

    settings = {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "log_every": 2,
                "warmup_ratio": 0.0, "seed": 0}
    settings.update(train)
    cfg = {
        "name": "tiny-sentiment",
        "model": {"id": str(model)},
        "head": {"task": "text-classification"},
        "data": {"train": str(data), "validation_split": 0.25, "max_length": 32},
        "train": settings,
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_bert: Path, sentiment_csv: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml", tiny_bert, sentiment_csv)


# -- tiers --------------------------------------------------------------------

def _needs_cuda(item) -> bool:
    """A test that skips without CUDA (a skipif naming CUDA or a GPU): the GPU check
    (bench/gpu_check.py) runs every such test with `-m gpu`."""
    return any(re.search(r"\bcuda\b|\bgpu\b", str(mark.kwargs.get("reason", "")), re.I)
               for mark in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config, items):
    # The `slow` tier is marked on the tests themselves (`pytestmark` or `@pytest.mark.slow`);
    # tests/test_tiers.py keeps name lists from coming back here.
    for item in items:
        if _needs_cuda(item):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on loopback (tests/support/sshd.py) for the remote tests; skips where
    this machine has none."""
    from tests.support.sshd import start_sshd

    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    if server is None:
        pytest.skip("no sshd here (apt-get install openssh-server)")
    yield server
    server.stop()
