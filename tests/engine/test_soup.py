"""Weight soups (engine/trained/soup.py, `hubtune runs soup`, #35): the runs' weights
averaged tensor by tensor, scored on the runs' own validation examples, recorded as a
run whose lineage names its ingredients, and predicted with like any run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from engine.core.errors import HubtuneError
from engine.trained.soup import Ingredient, check_ingredients
from tests.support.cli_runner import hubtune, ok
from tests.support.tests_helpers import config_for, train_in_process

pytestmark = pytest.mark.slow  # three tiny runs trained in this process


@pytest.fixture
def three_runs(tmp_path, tiny_bert, sentiment_csv, store):
    base = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=3)
    ids = []
    for lr, seed in ((3e-3, 0), (2e-3, 1), (4e-3, 2)):
        cfg = dataclasses.replace(base, name=f"r{seed}", train=dataclasses.replace(
            base.train, learning_rate=lr, seed=seed))
        ids.append(train_in_process(cfg))
    return ids


def test_uniform_and_greedy_soups_and_what_cannot_be_averaged(three_runs, store, tmp_path):
    """One test: the three runs train once (seconds each on the CPU)."""
    out = json.loads(ok("runs", "soup", *map(str, three_runs), "--json").stdout)
    soup = store.get_run(out["id"])
    assert soup.status == "completed" and soup.tags == ("soup",)
    assert sorted(soup.summary["soup"]["ingredients"]) == sorted(three_runs)
    assert soup.summary["soup"]["method"] == "uniform" and 0 <= out["accuracy"] <= 1
    assert set(out["alone"]) == {str(i) for i in three_runs}
    assert soup.parent_id in three_runs
    weights = [load_file(f"{store.get_run(i).output_dir}/model/model.safetensors")
               for i in three_runs]
    mixed = load_file(f"{soup.output_dir}/model/model.safetensors")
    key = next(k for k, v in mixed.items() if v.is_floating_point() and v.numel() > 10)
    mean = sum(w[key].double() for w in weights) / 3
    assert (mixed[key].double() - mean).abs().max() < 1e-6
    events = [e.message for e in store.events(out["id"])]
    assert any(m.startswith("A uniform soup of runs") for m in events)
    predicted = ok("predict", str(out["id"]), "a lovely, warm film")
    assert predicted.stdout.strip()

    # Greedy: best first, a run kept only if it helps; never below the best alone.
    out = json.loads(ok("runs", "soup", *map(str, three_runs), "--greedy", "--json").stdout)
    assert 1 <= len(out["ingredients"]) <= 3
    assert out["accuracy"] >= max(out["alone"].values())
    assert out["ingredients"][0] == int(max(out["alone"], key=out["alone"].get))

    # Runs that cannot be averaged: one sentence each.
    runs = [store.get_run(i) for i in three_runs]
    items = [Ingredient(r.id, tmp_path.parent / "x", r.config) for r in runs]
    with pytest.raises(HubtuneError, match="has no trained model"):
        check_ingredients(items)
    real = [Ingredient(r.id, Path(r.output_dir) / "model", r.config) for r in runs]
    other = dict(real[1].config, model={"id": "another/model"})
    with pytest.raises(HubtuneError, match="fine-tuned another model"):
        check_ingredients([real[0], Ingredient(real[1].run_id, real[1].model_dir, other)])
    # A sweep over a size (head.custom.hidden, say): the same files, other shapes.
    import shutil

    from safetensors.torch import save_file

    wider = tmp_path / "wider"
    shutil.copytree(real[1].model_dir, wider)
    tensors = load_file(str(wider / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.dim() == 2)
    tensors[name] = tensors[name].repeat(2, 1)
    save_file(tensors, str(wider / "model.safetensors"))
    with pytest.raises(HubtuneError, match=rf"shaped unlike run {real[0].run_id}'s \({name}"):
        check_ingredients([real[0], Ingredient(real[1].run_id, wider, real[1].config)])
    lone = hubtune("runs", "soup", str(three_runs[0]))
    assert lone.returncode == 1 and "two or more completed runs" in lone.stderr
    both = hubtune("runs", "soup", "1", "2", "--sweep", "abc")
    assert both.returncode == 1 and "not both" in both.stderr
