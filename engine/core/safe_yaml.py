"""YAML from untrusted hands (run configs, `--set` values), read in bounded time and memory.

`yaml.safe_load` builds no objects it should not, but it will still recurse once per
level of nesting (ten thousand `[` end in a RecursionError, a traceback) and it
hands back aliases as shared references, so a few lines of anchors can stand for
billions of values that anything walking the result (validation, a deep copy, JSON)
then expands. Here the document is composed with a depth limit, and before it is
turned into Python objects the size and depth it has with every alias expanded are
counted over its node graph (each node once), so both bombs are refused with one
sentence before any work grows with them. Torch-free.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64
"""Nesting a hand-written YAML file never needs (a run config is 4 levels deep)."""
MAX_NODES = 100_000
"""Values in the document once aliases are expanded."""


class YamlTooLarge(ValueError):
    """The document nests too deeply, or its aliases expand too far; `str` says which and
    `kind` names it for callers with their own sentence: depth, size or cycle."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _loader_class():
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader composing at most MAX_DEPTH levels, refusing expanding aliases."""

        _depth = 0
        max_nodes = MAX_NODES

        def fetch_flow_collection_start(self, token_class):
            # The scanner does work per open `[` / `{` at every token (quadratic in the
            # nesting): stop before the composer would ever see such a document.
            if self.flow_level >= MAX_DEPTH:
                raise _too_deep()
            super().fetch_flow_collection_start(token_class)

        def compose_node(self, parent, index):
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise _too_deep()
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def compose_document(self):
            node = super().compose_document()
            if node is not None:
                check_expansion(node, self.max_nodes)
            return node

    return BoundedLoader


_LOADER = None


def _too_deep() -> YamlTooLarge:
    return YamlTooLarge(f"nests more than {MAX_DEPTH} levels deep", "depth")


def load_yaml(text: str, max_nodes: int = MAX_NODES) -> Any:
    """`yaml.safe_load(text)` within MAX_DEPTH and `max_nodes` values with its aliases
    expanded, or YamlTooLarge (a yaml.YAMLError for text that is not YAML, as safe_load
    raises)."""
    global _LOADER
    if _LOADER is None:
        _LOADER = _loader_class()
    loader = _LOADER(text)
    loader.max_nodes = max_nodes
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_expansion(root, max_nodes: int = MAX_NODES) -> None:
    """Refuse a node graph whose alias-expanded size passes `max_nodes` or whose expanded
    depth passes MAX_DEPTH; a node that contains itself (`&a [*a]`) is refused too.

    Sizes and depths are computed once per node (an alias is a second edge to the same
    node), so the work is linear in the document, not in its expansion.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        children = _children(node)
        if finished:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > max_nodes:
                raise YamlTooLarge(f"expands to more than {max_nodes:,} values through its "
                                   "aliases (*name)", "size")
            if depth[key] > MAX_DEPTH:
                raise YamlTooLarge(f"nests more than {MAX_DEPTH} levels deep through its "
                                   "aliases (*name)", "depth")
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlTooLarge("holds an alias (*name) inside the value it names", "cycle")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node) -> list:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
