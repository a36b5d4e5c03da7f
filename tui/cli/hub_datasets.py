"""`hubtune hub search|info --repo-type dataset`: hub datasets found and read about.

Everything printed comes from the hub (ids, tags, subset, split and column names,
the card) and goes through `echo`/`cut`, which show control characters as escapes.
Imports neither textual nor torch.
"""

from __future__ import annotations

from tui.cli.output import cut, dump_json, echo
from tui.formatting import human_bytes
from tui.safe_text import printable

CARD_LINES = 20
"""Lines of the dataset card printed after the details."""


def print_dataset_search(query: str, task: str | None, size: str | None, sort: str,
                         limit: int, as_json: bool) -> None:
    from engine.data.hub.search import search_datasets

    found = search_datasets(query, task=task, size=size, sort=sort, limit=limit)
    if as_json:
        echo(dump_json([{**d.__dict__, "tasks": list(d.tasks)} for d in found]))
        return
    if not found:
        echo("No datasets match.")
        return
    echo(f"  {'DATASET':<44} {'TASK':<24} {'ROWS':<12} {'DOWNLOADS':>10} {'LIKES':>6}  UPDATED")
    for d in found:
        echo(f"{'*' if d.cached else ' '} {cut(d.id, 44):<44} "
             f"{cut(', '.join(d.tasks) or '-', 24):<24} {cut(d.size or '-', 12):<12} "
             f"{d.downloads:>10,} {d.likes:>6,}  {cut((d.updated or '')[:10], 10)}")


def print_dataset_info(repo: str, revision: str | None, as_json: bool) -> None:
    from engine.data.hub.search import dataset_details

    d = dataset_details(repo, revision=revision)
    if as_json:
        echo(dump_json(details_json(d)))
        return
    tasks = ", ".join(d.tasks) or "no task category"
    echo(f"hf:{printable(d.id)}  (dataset; {printable(tasks)}; "
         f"{printable(d.size_category or 'size not stated')} rows)")
    echo(f"  license     {printable(d.license or '-')}")
    echo(f"  size        {human_bytes(d.size)} in {len(d.files)} files")
    names = [printable(s.name) + (" (default)" if s.name == d.default_subset else "")
             for s in d.subsets]
    echo(f"  subsets     {', '.join(names) or 'none this version of hubtune reads'}")
    flags = [f for f, on in (("gated: request access on its page, then log in", d.gated),
                             ("private", d.private), ("cached", d.cached)) if on]
    if flags:
        echo(f"  notes       {', '.join(flags)}")
    for s in d.subsets:
        echo(f"  subset {cut(s.name, 80)}")
        echo("    splits    " + ", ".join(_split_text(sp) for sp in s.splits))
        if s.features:
            echo("    features  " + ", ".join(f"{cut(c, 40)} {cut(t, 80)}"
                                            for c, t in s.features))
    if d.subsets:
        subset = d.default_subset or d.subsets[0].name
        echo(f"  use it      data.train: hf:{printable(d.id)}"
             + (f"   data.subset: {printable(subset)}" if len(d.subsets) > 1 else ""))
    if d.card:
        echo("")
        echo("\n".join(d.card.splitlines()[:CARD_LINES]))


def _split_text(sp) -> str:
    rows = f"{sp.rows:,} rows" if sp.rows is not None else "rows not stated"
    size = f", {human_bytes(sp.size)}" if sp.size is not None else ""
    files = f"{sp.files} file{'s' if sp.files != 1 else ''}"
    return f"{cut(sp.name, 40)} {rows} ({files}{size})"


def details_json(d) -> dict:
    """The documented --json shape of `hub info --repo-type dataset`."""
    return {
        "id": d.id, "sha": d.sha, "license": d.license, "gated": d.gated,
        "private": d.private, "downloads": d.downloads, "likes": d.likes,
        "updated": d.updated, "tasks": list(d.tasks), "size_category": d.size_category,
        "size": d.size, "default_subset": d.default_subset, "cached": d.cached,
        "subsets": [{"name": s.name, "features": dict(s.features),
                     "splits": [sp.__dict__ for sp in s.splits]} for s in d.subsets],
        "files": [f.__dict__ for f in d.files], "tags": list(d.tags), "card": d.card,
    }
