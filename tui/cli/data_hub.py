"""`hubtune data preview hf:OWNER/NAME[:SPLIT]`: a hub dataset's subsets, features, split
sizes, first rows, label counts and (with --model) token lengths.

Reads as little as the hub allows: the README's dataset_info for the sizes, and
the first file of the one split shown. Everything shown comes from the hub and
goes through `printable`. Imports neither textual nor torch.
"""

from __future__ import annotations

from tui.cli.output import cut, dump_json, echo, token_stats_json
from tui.safe_text import printable


def preview_hub(ref: str, *, subset: str | None, revision: str, model: str | None,
                text_column: str | None, pair_column: str | None,
                label_column: str | None, max_length: int, limit: int,
                as_json: bool) -> None:
    from engine.core.config import parse_hub_data
    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.preview import preview_split

    parsed = parse_hub_data(ref, "the dataset")
    split = parsed.split or "train"
    files = fetch_dataset(parsed.repo, subset=subset, revision=revision, splits=(split,),
                          first_shard=True)
    p = preview_split(files, split, limit=limit, text_column=text_column,
                      label_column=label_column)
    stats = None
    if model:
        from engine.modeling.lengths import token_lengths

        if p.text_column is None:
            from engine.core.errors import DataError

            raise DataError(f"No text column guessed among {', '.join(p.columns)}; give "
                            "--text-column.")
        columns = [p.text_column] + ([pair_column] if pair_column else [])
        stats = token_lengths(model, files.splits[split][0], columns)
    if as_json:
        out = {"dataset": p.dataset, "sha": p.sha, "subset": p.subset,
               "subsets": list(p.subsets), "split": p.split, "features": dict(p.features),
               "split_rows": p.split_rows, "first_rows": [list(r) for r in p.rows],
               "text_column": p.text_column, "label_column": p.label_column,
               "label_counts": dict(p.label_counts), "rows_read": p.read_rows,
               "files_read": p.files_read, "files_total": p.files_total}
        if stats is not None:
            out["tokens"] = token_stats_json(stats, max_length)
        echo(dump_json(out))
        return
    _print(p, stats, model, max_length)


def _print(p, stats, model: str | None, max_length: int) -> None:
    sizes = ", ".join(f"{printable(s)} {n:,}" if n is not None else f"{printable(s)} ?"
                      for s, n in p.split_rows.items())
    echo(f"{printable(p.dataset)} at {p.sha[:12]}: subset {printable(p.subset)} "
         f"(subsets: {', '.join(printable(s) for s in p.subsets)})")
    echo(f"  splits: {sizes}")
    echo("  features: " + ", ".join(f"{printable(c)} {printable(t)}" for c, t in p.features))
    echo(f"  text column: {printable(p.text_column or '?')}   "
         f"label column: {printable(p.label_column or '-')}")
    columns = [printable(c) for c, _ in p.features]
    rows = [[printable(row[i]) if i < len(row) else "" for i in range(len(columns))]
            for row in p.rows]
    widths = [min(30, max([len(c)] + [len(r[i]) for r in rows])) for i, c in enumerate(columns)]
    echo("  " + "  ".join(cut(c, w).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for cells in rows:
        echo("  " + "  ".join(cut(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)))
    if p.label_counts:
        total = sum(n for _, n in p.label_counts)
        shown = ", ".join(f"{cut(printable(k), 40)} {n:,} ({n / total:.0%})"
                          for k, n in p.label_counts[:10])
        more = f", +{len(p.label_counts) - 10} more" if len(p.label_counts) > 10 else ""
        scope = (f" (first {p.files_read} of {p.files_total} files, {p.read_rows:,} rows)"
                 if p.files_read < p.files_total else "")
        echo(f"  labels{scope}: {shown}{more}")
    if stats is not None:
        echo(f"  tokens ({printable(model)}): {stats.summary(max_length)}")
