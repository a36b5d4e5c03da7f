"""The `slow` tier is marked on the tests themselves, and the fast tier (`make test-fast`,
`-m "not slow"`) holds no test that starts a training worker or torchrun.

An AST scan, not a collection run: it reads every test file in well under a second. It
follows a test into the helpers and fixtures of its own module and looks for the ways
this suite starts a worker: `start_run` (unless refused or queued), `python -m
engine.launch.worker` and torchrun. A CLI `train` is not looked for (most in the fast tier are
refused before a worker starts), so `hubtune train --detach` relies on review."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent

STAND_INS = ("spawn_worker", "popen", "start_queued")
"""A test that replaces one of these with a recorder starts no worker, whatever it calls."""


def _is_slow_mark(node: ast.AST) -> bool:
    """`pytest.mark.slow`, called or not, or a list of marks holding it."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow_mark(e) for e in node.elts)
    if isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr == "slow" and ast.unparse(
        node.value) == "pytest.mark"


def _module_is_slow(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and _is_slow_mark(n.value) for n in tree.body)


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _reached(test, functions) -> Iterator[ast.AST]:
    """The test's own nodes, then those of its module's functions it calls or takes as
    fixtures, transitively."""
    seen, todo = set(), [test]
    while todo:
        fn = todo.pop()
        if fn.name in seen:
            continue
        seen.add(fn.name)
        names = [a.arg for a in fn.args.args]
        for node in ast.walk(fn):
            yield node
            if isinstance(node, ast.Name):
                names.append(node.id)
        todo += [functions[n] for n in names if n in functions and n not in seen]


def _strings(nodes) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _under_raises(test) -> set[int]:
    """ids of the nodes inside a `with pytest.raises(...)`: a call there is refused."""
    inside = set()
    for node in ast.walk(test):
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                "raises" in ast.unparse(item.context_expr) for item in node.items):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def _starts_a_worker(node: ast.AST, refused: set[int]) -> str | None:
    """What in `node` starts a worker or ranks, or None."""
    if isinstance(node, ast.Call) and id(node) not in refused:
        name = ast.unparse(node.func).rsplit(".", 1)[-1]
        queued = any(k.arg == "queue" for k in node.keywords)
        if name == "start_run" and not queued:
            return "start_run(...)"
    if isinstance(node, (ast.List, ast.Tuple)):
        items = _strings(node.elts)
        pairs = list(zip(items, items[1:], strict=False))
        if ("-m", "engine.launch.worker") in pairs or ("-m", "torch.distributed.run") in pairs:
            return "python -m " + items[items.index("-m") + 1]
    return None


def _fast_tests_that_start_workers(path: Path) -> list[tuple[str, str]]:
    """(test, what starts a worker) for each test in `path` that is not marked slow."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if _module_is_slow(tree):
        return []
    functions = _functions(tree)
    refused = set().union(*(_under_raises(f) for f in functions.values()))
    found = []
    for name, test in functions.items():
        if not name.startswith("test_") or any(_is_slow_mark(d) for d in test.decorator_list):
            continue
        nodes = list(_reached(test, functions))
        if any(s in STAND_INS or s.endswith(tuple("." + s for s in STAND_INS))
               for s in _strings(nodes)) or any(
                isinstance(n, ast.Attribute) and n.attr in STAND_INS
                and isinstance(n.ctx, ast.Store) for n in nodes):
            continue
        for node in nodes:
            what = _starts_a_worker(node, refused)
            if what:
                found.append((name, what))
                break
    return found


def test_every_test_that_starts_a_worker_is_marked_slow():
    found = [f"{path.relative_to(TESTS.parent)}::{name}: {what}"
             for path in sorted(TESTS.rglob("test_*.py")) if path != Path(__file__).resolve()
             for name, what in _fast_tests_that_start_workers(path)]
    assert found == [], "mark these @pytest.mark.slow (or the file's pytestmark):\n" + \
        "\n".join(found)


def test_the_scan_sees_a_worker_start_in_an_unmarked_test(tmp_path):
    """The check above could pass by seeing nothing: here it must see each kind."""
    path = tmp_path / "test_x.py"
    path.write_text(
        "import pytest\n"
        "def _go(store, cfg):\n    return start_run(store, cfg)\n"
        "@pytest.fixture\ndef started(store, cfg):\n    return _go(store, cfg)\n"
        "def test_a(started):\n    pass\n"
        "def test_b():\n    run([sys.executable, '-m', 'engine.launch.worker', '7'])\n"
        "def test_c():\n    run([sys.executable, '-m', 'torch.distributed.run', 'x.py'])\n"
        "def test_refused(store, cfg):\n"
        "    with pytest.raises(ValueError):\n        start_run(store, cfg)\n"
        "def test_queued(store, cfg):\n    start_run(store, cfg, queue=True)\n"
        "@pytest.mark.slow\ndef test_marked(started):\n    pass\n")
    assert [name for name, _ in _fast_tests_that_start_workers(path)] == [
        "test_a", "test_b", "test_c"]
    path.write_text("import pytest\npytestmark = pytest.mark.slow\n" + path.read_text())
    assert _fast_tests_that_start_workers(path) == []


def test_conftest_marks_no_tier_by_name():
    """Tiers live on the tests (`pytestmark`, `@pytest.mark.slow`): conftest keeps no list
    of file or test names and adds no `slow` mark."""
    tree = ast.parse((TESTS / "conftest.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.List, ast.Tuple, ast.Dict)):
            names = [s for s in _strings(ast.walk(node))
                     if s.startswith(("tests/", "test_")) or s.endswith(".py")]
            assert names == [], f"conftest.py line {node.lineno} lists tests by name"
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("add_marker"):
            assert "slow" not in ast.unparse(node), f"conftest.py line {node.lineno} adds slow"
