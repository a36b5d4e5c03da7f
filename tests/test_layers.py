"""The three layers stay apart: checked statically (import-linter) and at run time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_import_contracts_hold():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken" in result.stdout


def test_import_contracts_catch_a_violation(tmp_path):
    for pkg in ("tui", "engine", "store"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    records = tmp_path / "store" / "records.py"
    records.write_text(records.read_text() + "\nimport torch  # a layering bug\n")
    metrics = tmp_path / "engine" / "tasks" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nfrom store import RunStore  # a store bypass\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "store is plain SQLite" in result.stdout and "BROKEN" in result.stdout
    assert "engine.tasks is not allowed to import store" in result.stdout


def test_every_engine_module_sits_on_a_floor():
    """No loose modules at engine/'s root, and every engine package is named by the layers
    contract, so a new package cannot slip past the layering."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"
                 and c.get("containers") == ["engine"]]
    floors = {name.strip() for layer in layers for name in layer.split("|")}
    engine = REPO / "engine"
    loose = sorted(p.name for p in engine.glob("*.py") if p.name != "__init__.py")
    packages = {p.parent.name for p in engine.glob("*/__init__.py")}
    assert loose == [], f"engine/ has modules outside its floors: {loose}"
    assert packages == floors, f"packages not in the layers contract: {packages ^ floors}"


IMPORT_PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(m for m in ("torch", "transformers", "textual", "accelerate")
                        if m in sys.modules)))
"""


def _loaded_after_import(*modules: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *modules], capture_output=True,
                         text=True, check=True, timeout=120, cwd=REPO)
    return json.loads(out.stdout)


def test_tui_app_and_cli_start_without_torch():
    loaded = _loaded_after_import("tui.app", "tui.cli")
    assert "torch" not in loaded and "transformers" not in loaded
    assert "textual" in loaded  # the probe really imported the app


def test_engine_config_and_events_are_torch_free():
    assert _loaded_after_import("engine.core.config", "engine.core.events") == []


def test_store_imports_neither_torch_nor_textual():
    assert _loaded_after_import("store") == []


def test_the_store_loads_no_dataframe_library_and_leaves_them_importable():
    code = ("import sys, store, sqlite_utils.db as db\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules), "
            "db.pd, db.np)\n"
            "import pandas, numpy\nprint(pandas.DataFrame({'a': [1]}).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120, cwd=REPO)
    assert out.stdout.split("\n")[:2] == ["[] None None", "(1, 1)"]


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom tui.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='hubtune')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'CLEAN')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert "Usage: hubtune" in out.stdout
    assert out.stdout.strip().endswith("CLEAN")


def test_engine_layers_contract_catches_an_upward_import(tmp_path):
    for pkg in ("tui", "engine", "store"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "engine" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _late():\n    import engine.training.loop\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "engine.core is not allowed to import engine.training" in result.stdout


def _import_cycles() -> list[tuple[str, str]]:
    """Pairs of modules that import each other, directly or through others (imports
    deferred into functions count: they are cycles all the same)."""
    import grimp

    sys.path.insert(0, str(REPO))
    try:
        graph = grimp.build_graph("engine", "tui", "store")
    finally:
        sys.path.remove(str(REPO))
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.find_shortest_chain(importer=imported, imported=module):
                cycles.add(tuple(sorted((module, imported))))
    return sorted(cycles)


def test_no_import_cycles():
    assert _import_cycles() == []


MAX_FUNCTION_LINES = 80
"""Longer than this, a function wants named steps (as the training loop's prepare has)."""


def test_no_function_over_80_lines():
    import ast

    too_long = {}
    for root in ("engine", "tui", "store"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    key = f"{path.relative_to(REPO).as_posix()}:{node.name}"
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        too_long[key] = lines
    assert too_long == {}


MAX_CLASS_LINES = 300
"""Longer than this, a screen wants a widget per feature and a form model of its own."""


def test_no_class_over_300_lines():
    import ast

    too_long = {}
    for path in sorted(p for pkg in ("tui", "engine", "store") for p in (REPO / pkg).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long[f"{path.relative_to(REPO).as_posix()}:{node.name}"] = lines
    assert too_long == {}


def test_runs_ls_imports_neither_textual_nor_torch(tmp_path):
    probe = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from tui.cli import cli\n"
        "result = CliRunner().invoke(cli, ['runs', 'ls', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'textual')"
        " if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, cwd=REPO,
                         env={"PATH": "/usr/bin:/bin", "HUBTUNE_HOME": str(tmp_path)})
    assert json.loads(out.stdout) == []


def test_sql_stays_in_the_store():
    """The CLI, the TUI and the engine ask RunStore; none of them writes SQL of its own."""
    import re

    pattern = re.compile(r"\.db\.(execute|conn)|\b(SELECT|INSERT|UPDATE|DELETE)\s+\w")
    found = [f"{path.relative_to(REPO)}:{n}"
             for root in ("tui", "engine")
             for path in sorted((REPO / root).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert found == []
