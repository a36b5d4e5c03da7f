"""Nothing in the engine outside engine/tasks/ names a task: what a head does (how it
trains, predicts, is reviewed and exported) is its adapter's, so a new head is one module
under engine/tasks/ plus its registration.

The check is by `ast`: any string constant equal to a registered `head.task` name is a
task-name branch (a comparison, a tuple of names, a dict keyed by names), whatever its
shape. The only names allowed are in ALLOWED below, each for its reason."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.tasks import REGISTRY, task_names

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine"

ALLOWED = {
    # The ground floor cannot import engine.tasks: config validation's one list of names
    # (checked against the registry in test_the_core_list_is_the_registry) and its default.
    ("engine/core/config.py", "TASKS"),
    ("engine/core/config.py", "DEFAULT_TASK"),
    # Not task names but other vocabularies that share a spelling with one:
    # transformers' `problem_type` word for a scalar target ...
    ("engine/modeling/loading.py", "LABEL_KINDS"),
    # ... which the shipped, standalone modeling file compares (it may import nothing of
    # hubtune: it loads with transformers alone) ...
    ("engine/modeling/modeling_hubtune.py", "forward"),
    # ... and the hub's pipeline tag for torchvision's built-in backbones.
    ("engine/hub/client.py", "TORCHVISION_TAG"),
}
"""(file, the assignment or function a name sits in) pairs where a task's spelling is
allowed."""


def _owner(parents: list[ast.AST]) -> str | None:
    """The innermost assignment target or function a node sits in."""
    for node in reversed(parents):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node.name
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    return target.id
    return None


def task_names_in(source: str, names: set[str]) -> list[tuple[int, str, str | None]]:
    """(line, name, owner) of every string constant in `source` that is one of `names`."""
    found = []

    def walk(node: ast.AST, parents: list[ast.AST]) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value in names:
            found.append((node.lineno, node.value, _owner(parents)))
        for child in ast.iter_child_nodes(node):
            walk(child, [*parents, node])

    walk(ast.parse(source), [])
    return found


def test_no_module_outside_engine_tasks_names_a_task():
    names = set(task_names())
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("engine/tasks/"):
            continue
        for line, name, owner in task_names_in(path.read_text(encoding="utf-8"), names):
            if (rel, owner) not in ALLOWED:
                found.append(f"{rel}:{line}: {name!r}")
    assert found == [], ("task names outside engine/tasks/ (give the behaviour to the "
                         "task adapter instead):\n" + "\n".join(found))


def test_the_check_finds_each_shape_of_branch():
    source = ('TASKS_I_READ = ("seq2seq", "other")\n'
              'def f(cfg):\n'
              '    if cfg.head.task == "masked-lm":\n'
              '        return {"regression": 1}\n'
              '    return cfg.head.task in ("causal-lm",)\n')
    found = task_names_in(source, set(task_names()))
    assert [(line, name) for line, name, _ in found] == [
        (1, "seq2seq"), (3, "masked-lm"), (4, "regression"), (5, "causal-lm")]
    assert [owner for *_, owner in found] == ["TASKS_I_READ", "f", "f", "f"]


def test_the_core_list_is_the_registry():
    from engine.core.config import DEFAULT_TASK, TASKS

    assert TASKS == task_names()
    assert DEFAULT_TASK in REGISTRY


def test_every_registration_names_an_adapter_class():
    import importlib

    from engine.tasks.base import Task

    for registration in REGISTRY.values():
        module, _, cls = registration.adapter.partition(":")
        assert issubclass(getattr(importlib.import_module(module), cls), Task), registration


def test_every_adapter_covers_a_trained_runs_life():
    """What engine/trained/ asks of a head, each registered adapter answers: how it
    predicts, how its validation examples are read for review, its exported model's
    pipeline tag and what loads it."""
    from engine.tasks import task_for
    from engine.tasks.base import Task

    for name in task_names():
        task = task_for(name)
        assert type(task).predict is not Task.predict, name
        if task.reviewed:
            assert type(task).file_review_inputs is not Task.file_review_inputs, name
        assert task.pipeline_tag and task.input_kind and task.loader, name
        assert task.watch in (task.metrics or (task.watch,)), name


def test_what_the_registry_says_before_an_adapter_loads_is_what_the_adapter_does():
    """The TUI reads a head's metric and whether it takes images from its registration
    (torch-free); the adapter watches that metric, one it computes, and takes images
    exactly when the registration says so."""
    from engine.tasks import task_for

    for name, registration in REGISTRY.items():
        task = task_for(name)
        assert task.watch == registration.metric, name
        assert task.metrics is None or registration.metric in task.metrics, name
        assert registration.images == ("image" in task.input_kind), name


TUI = REPO / "tui"
TUI_ALLOWED = {
    # The hub's own pipeline-tag vocabulary for its search filters, which shares a few
    # spellings with head names.
    ("tui/widgets/hub_bar.py", "MODEL_TASKS"),
    ("tui/widgets/hub_bar.py", "DATASET_TASKS"),
}


def test_the_tui_names_no_task_either():
    names = set(task_names())
    found = []
    for path in sorted(TUI.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for line, name, owner in task_names_in(path.read_text(encoding="utf-8"), names):
            if (rel, owner) not in TUI_ALLOWED:
                found.append(f"{rel}:{line}: {name!r}")
    assert found == [], ("task names in the TUI (read engine.tasks.REGISTRY instead):\n"
                         + "\n".join(found))
