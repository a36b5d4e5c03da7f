"""How a hub dataset repo's files form subsets (configs) and splits.

Read from the README's YAML (`configs:` with `data_files` per split, and
`dataset_info` for features and split sizes), else from the hub's conventional
file names and folders, as the `datasets` library reads them. The card's YAML
comes from the hub, so it is read within bounds: aliases that expand past
`MAX_CARD_NODES`, nesting deeper than `MAX_CARD_DEPTH` or front matter longer than
`MAX_CARD_CHARS` are one sentence, never memory or a RecursionError. Pure: no hub,
no files, no torch.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from engine.core.safe_yaml import MAX_DEPTH
from engine.hub.client import HubError

DATA_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json")
"""Files that hold rows (the formats engine/data/hub/splits.py reads)."""
SPLIT_WORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
"""The split a file belongs to by a word in its name or folder, as `datasets` reads it."""
_WORD = {w: split for split, words in SPLIT_WORDS.items() for w in words}
DEFAULT_SUBSET = "default"
MAX_CARD_CHARS = 1_000_000
"""The longest YAML front matter read (the hub's largest real cards are a few hundred KB)."""
MAX_CARD_DEPTH = MAX_DEPTH
"""The deepest nesting of a card's YAML, as of any YAML hubtune reads (real cards nest
under ten levels)."""
MAX_CARD_NODES = 1_000_000
"""The most values a card's YAML may hold with every alias expanded (a "billion laughs"
card holds a few dozen aliases that expand to billions)."""


class CardTooComplex(HubError):
    """A dataset card whose YAML would take unbounded memory or time to read."""


@dataclass(frozen=True)
class DatasetLayout:
    """How a dataset repo's files form subsets and splits."""

    subsets: dict[str, dict[str, tuple[str, ...]]]
    """subset -> split -> file patterns (glob, relative to the repo)."""
    default: str | None
    """The subset used when data.subset is not given (None: it must be given)."""
    info: dict[str, dict] = field(default_factory=dict)
    """subset -> its `dataset_info` from the README (features, split sizes), if any."""


# -- which files form which subset and split ---------------------------------------


def read_layout(readme: str | None, files: list[str],
                where: str = "The dataset card") -> DatasetLayout:
    """The subsets and splits a repo declares (README YAML `configs:`), else the ones its
    file names imply; `where` names the card in a refusal."""
    meta = _front_matter(readme or "", where)
    info = _readme_info(meta)
    configs = meta.get("configs")
    if isinstance(configs, list) and configs:
        subsets, default = {}, None
        for entry in configs:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("config_name", DEFAULT_SUBSET))
            subsets[name] = _data_files(entry.get("data_files"))
            if entry.get("default"):
                default = name
        if default is None and (len(subsets) == 1 or DEFAULT_SUBSET in subsets):
            default = DEFAULT_SUBSET if DEFAULT_SUBSET in subsets else next(iter(subsets))
        return DatasetLayout(subsets, default, info)
    subsets = _conventional(files)
    default = DEFAULT_SUBSET if DEFAULT_SUBSET in subsets else (
        next(iter(subsets)) if len(subsets) == 1 else None)
    return DatasetLayout(subsets, default, info)


def _front_matter(readme: str, where: str = "The dataset card") -> dict:
    import yaml

    if not readme.startswith("---"):
        return {}
    end = readme.find("\n---", 3)
    if end < 0:
        return {}
    if end > MAX_CARD_CHARS:
        raise CardTooComplex(f"{where} has YAML front matter of {end:,} characters, more "
                             f"than the {MAX_CARD_CHARS:,} hubtune reads; it is refused.")
    try:
        meta = load_bounded_yaml(readme[3:end], where)
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def load_bounded_yaml(text: str, where: str):
    """YAML as safe_load reads it (engine.core.safe_yaml), refused with one sentence naming
    the card `where` when it nests deeper than MAX_CARD_DEPTH, holds more than
    MAX_CARD_NODES values with its aliases expanded, or an alias inside itself."""
    from engine.core.safe_yaml import YamlTooLarge, load_yaml

    try:
        return load_yaml(text, MAX_CARD_NODES)
    except YamlTooLarge as exc:
        if exc.kind == "depth":
            problem = f"nests its YAML deeper than {MAX_CARD_DEPTH} levels"
        elif exc.kind == "size":
            problem = (f"holds YAML that expands to more than {MAX_CARD_NODES:,} values "
                       "(aliases repeated inside aliases)")
        else:
            problem = "holds a YAML alias (*name) inside the value it names"
        raise CardTooComplex(f"{where} {problem}; hubtune refuses to read it.") from None


def _readme_info(meta: dict) -> dict[str, dict]:
    info = meta.get("dataset_info")
    if isinstance(info, dict):
        info = [info]
    if not isinstance(info, list):
        return {}
    return {str(i.get("config_name", DEFAULT_SUBSET)): i for i in info if isinstance(i, dict)}


def _data_files(value) -> dict[str, tuple[str, ...]]:
    """A config's `data_files` (a pattern, a list, a split mapping or a list of
    {split, path}) as split -> patterns."""
    def patterns(v) -> tuple[str, ...]:
        return tuple(str(p) for p in v) if isinstance(v, list) else (str(v),)

    if value is None:
        return {}
    if isinstance(value, (str, list)) and not (isinstance(value, list) and value
                                                and isinstance(value[0], dict)):
        return {"train": patterns(value)}
    if isinstance(value, dict):
        return {str(k): patterns(v) for k, v in value.items()}
    if not isinstance(value, list):
        return {}  # a number or a flag: no files named
    return {str(e.get("split", "train")): patterns(e.get("path", []))
            for e in value if isinstance(e, dict)}


def _conventional(files: list[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Subsets and splits from folder and file names: `{subset}/{split}-*`,
    `{subset}/{split}/*`, `data/{split}-*`, `{split}.csv`; files naming no split are train."""
    found: dict[str, dict[str, list[str]]] = {}
    data = [f for f in files if f.lower().endswith(DATA_SUFFIXES)
            and not any(p.startswith((".", "_")) for p in f.split("/"))]
    named = [(f, _split_of(f)) for f in data]
    any_named = any(split for _, split in named)
    for path, split in named:
        if split is None:
            if any_named:
                continue
            split = "train"
        parts = path.split("/")
        subset = DEFAULT_SUBSET
        if len(parts) > 1 and parts[0] != "data" and parts[0].lower() not in _WORD:
            subset = parts[0]
        found.setdefault(subset, {}).setdefault(split, []).append(path)
    return {s: {k: tuple(v) for k, v in splits.items()} for s, splits in found.items()}


def _split_of(path: str) -> str | None:
    parts = path.split("/")
    stem = parts[-1].split(".")[0].lower()
    first = re.split(r"[-_]", stem)[0]
    if first in _WORD:
        return _WORD[first]
    return next((_WORD[p.lower()] for p in reversed(parts[:-1]) if p.lower() in _WORD), None)


def match_files(patterns: tuple[str, ...], files: list[str]) -> list[str]:
    """The repo files a config's patterns name, in repo order."""
    return [f for f in files if any(fnmatch.fnmatchcase(f, p) or f == p for p in patterns)]
