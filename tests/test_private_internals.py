"""Other libraries' private parts are reached only through the adapters that test them
(tui/compat.py, store/compat.py, engine/training/compat.py, engine/core/compat.py):
an import from a private module, or a use of a private name an adapter covers,
anywhere else fails here with where it is."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = {"tui/compat.py", "store/compat.py", "engine/training/compat.py",
            "engine/core/compat.py"}
OURS = {"tui", "engine", "store", "bench", "tests", "docs"}
COVERED = {"_footer", "_modes", "_run_exitfuncs", "_reset_state", "_remove_autograd_hooks",
           "_models", "_migrations", "_cdata", "_attn_implementation", "_dynamo",
           "_scaled_dot_product_flash_attention_for_cpu"}
"""The private names the adapters cover."""


def _sources():
    for package in ("tui", "engine", "store"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel not in ADAPTERS:
                yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] not in OURS and any(p.startswith("_") and not p.startswith("__")
                                        for p in parts)


def test_no_private_module_of_another_library_is_imported_outside_the_adapters():
    found = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [f"{rel}:{node.lineno} {n}" for n in names if _private_module(n)]
    assert found == []


def test_the_private_names_the_adapters_cover_are_used_nowhere_else():
    found = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            name = (node.attr if isinstance(node, ast.Attribute) else
                    node.value if isinstance(node, ast.Constant) else None)
            if isinstance(name, str) and name in COVERED:
                found.append(f"{rel}:{node.lineno} {name}")
    assert found == []
