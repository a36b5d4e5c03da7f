"""The new-run form in a real 80x24 terminal (tmux): where the form and its preview
stack, a loaded config's data preview and layer plan are one key away each (#33), and
stay in view while their contents arrive."""

from __future__ import annotations

import pytest

from tests.support.tmux import needs_tmux, terminal

pytestmark = [pytest.mark.slow, needs_tmux]  # a whole app process in a terminal


def test_preview_and_plan_of_a_loaded_config_in_two_keys_at_80x24(tmp_path, tiny_bert,
                                                                   sentiment_csv, hubtune_home):
    cfg = tmp_path / "loaded.yaml"
    cfg.write_text(f"name: stacked-form\nmodel: {{id: {tiny_bert}}}\n"
                   f"data: {{train: {sentiment_csv}, max_length: 32}}\n"
                   "train: {epochs: 1, seed: 7, warmup_ratio: 0.1}\n")
    with terminal(tmp_path, hubtune_home) as term:
        shown = "\n".join
        term.keys_until([], lambda s: "No runs yet" in shown(s), timeout=60)
        term.keys_until(["3"], lambda s: "new run" in shown(s), timeout=60)
        term.keys_until(["C-l"], lambda s: "Type the path of a YAML config" in shown(s))
        term.type(str(cfg))
        loaded = shown(term.keys_until(["C-l"], lambda s: "Loaded" in shown(s), timeout=60))
        preview = shown(term.keys_until(["F2"], lambda s: "rows, " in shown(s) and
                                        "columns" in shown(s), timeout=60))
        plan = shown(term.keys_until(["F3"], lambda s: "trainable" in shown(s) and
                                     "● trains" in shown(s), timeout=120))
    assert "stacked-form" not in preview.split("rows, ")[0].splitlines()[-1]  # scrolled away
    assert "● trains" in plan and "Loaded" in loaded
