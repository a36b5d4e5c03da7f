"""The help screen is true: every key a screen binds is listed in that screen's section of
the help (issue #22). In-process and without an app: the bindings are class attributes."""

from __future__ import annotations

import re

import pytest

from tui.app import HubtuneApp
from tui.screens.compare import CompareScreen
from tui.screens.file_picker import FilePickerScreen
from tui.screens.help import HELP
from tui.screens.hub import HubScreen
from tui.screens.models import LocalModelsScreen
from tui.screens.new_run import NewRunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.audit_pane import AuditPane
from tui.widgets.layer_plan import LayerPlan

NAMES = {"question_mark": "?", "slash": "/", "escape": "Esc", "delete": "Delete",
         "space": "space", "backspace": "Backspace", "pageup": "PgUp", "pagedown": "PgDn",
         "home": "Home", "end": "End", "shift+up": "Shift+↑", "shift+down": "Shift+↓"}
"""Textual's key names as the help writes them; ctrl+x is written Ctrl+X."""


def _shown(key: str) -> str:
    if key in NAMES:
        return NAMES[key]
    if key.startswith("ctrl+"):
        return f"Ctrl+{key[5:].upper()}"
    if key.startswith("alt+"):
        return f"Alt+{key[4:]}"
    if len(key) > 1 and key[0] == "f" and key[1:].isdigit():
        return key.upper()  # f2 is written F2
    return key


def _section(title: str) -> str:
    """The key column of the help's rows under **title** (up to the next section)."""
    rows = HELP.split(f"| **{title}** |", 1)[1].split("| **", 1)[0]
    return " ".join(line.split("|")[1] for line in rows.splitlines() if line.startswith("| "))


def _keys(bindings) -> set[str]:
    return {key.strip() for b in bindings for key in b.key.split(",")}


SECTIONS = [
    (HubtuneApp, ("Everywhere",), {"1", "2", "3", "4", "alt+2", "alt+3"}),
    (RunsScreen, ("Runs", "Queue"), set()),
    (CompareScreen, ("Compare",), set()),
    (HubScreen, ("Hub",), set()),
    (LocalModelsScreen, ("Local models",), set()),
    (NewRunScreen, ("New run",), set()),
    (FilePickerScreen, ("New run",), set()),
    (LayerPlan, ("New run",), set()),
    (AuditPane, ("New run",), set()),
]


@pytest.mark.parametrize(("owner", "titles", "elsewhere"), SECTIONS,
                         ids=[s[0].__name__ for s in SECTIONS])
def test_every_bound_key_is_in_its_help_section(owner, titles, elsewhere):
    text = " ".join(_section(t) for t in titles)
    listed = set(re.findall(r"`([^`]+)`", text))
    missing = {_shown(k) for k in _keys(owner.BINDINGS) - elsewhere} - listed
    assert not missing, f"{owner.__name__} binds {sorted(missing)}, not in the help's {titles}"


def test_the_help_names_the_run_panel_views_and_the_hub_kinds():
    runs, hub = _section("Runs"), HELP.split("| **Hub** |", 1)[1].split("| **Local", 1)[0]
    assert "`d`" in runs and "`e`" in runs
    assert "datasets" in hub and "dataset" in hub.split("`d`", 1)[1].split("\n", 1)[0]
