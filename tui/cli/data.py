"""`hubtune data preview FILE`, `data audit CONFIG` and `data clear-cache`: looking at
data files before training on them."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click

from engine.core.errors import DataError
from tui.cli.output import cut, dump_json, echo, token_stats_json
from tui.safe_text import printable


@contextmanager
def _flags_named():
    """The reader's messages name the config key (data.encoding); here it is a flag."""
    from engine.core.errors import DataError

    try:
        yield
    except DataError as exc:
        text = str(exc).replace("set data.encoding", "give --encoding")
        raise DataError(text) from None


@click.group()
def data() -> None:
    """Look at data files before training on them."""


@data.command("preview")
@click.argument("file")
@click.option("--model", "model", metavar="ID",
              help="Count tokens with this model's tokenizer and suggest data.max_length.")
@click.option("--text-column", metavar="NAME", help="The input column (default: a guess).")
@click.option("--pair-column", metavar="NAME", help="A second input column (text pairs).")
@click.option("--label-column", metavar="NAME", help="The label column (default: a guess).")
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True,
              help="Report the share of examples this length would cut.")
@click.option("--rows", "limit", type=int, default=5, show_default=True,
              help="First rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the preview as JSON.")
@click.option("--subset", metavar="NAME", help="hf: data: the subset (config) to look at.")
@click.option("--revision", default="main", show_default=True,
              help="hf: data: the branch, tag or commit.")
def data_preview(file: str, model: str | None, text_column: str | None,
                 pair_column: str | None, label_column: str | None, encoding: str,
                 max_length: int, limit: int, as_json: bool, subset: str | None,
                 revision: str) -> None:
    """Columns, first rows and label counts; with --model, token length percentiles.

    FILE is a data file or a hub dataset, hf:OWNER/NAME[:SPLIT] (its train split
    unless one is named; only the split's first file is downloaded, and split
    sizes come from the dataset's card where it gives them).
    The label and text columns are guessed from common names unless given.
    Token counts use a seeded sample of 5,000 rows. The file is read as
    training reads it, and label problems a run would meet (rows without a
    label, labels that differ only by case or spaces) are printed as warnings.
    """
    if file.startswith("hf:"):
        from tui.cli.data_hub import preview_hub

        preview_hub(file, subset=subset, revision=revision, model=model,
                    text_column=text_column, pair_column=pair_column,
                    label_column=label_column, max_length=max_length, limit=limit,
                    as_json=as_json)
        return
    from engine.core.config import resolve_package_file
    from engine.data.reader import preview_file

    path = resolve_package_file(file) if file.startswith("pkg:") else Path(file).expanduser()
    with _flags_named():
        p = preview_file(path, encoding=encoding, label_column=label_column,
                         text_column=text_column, limit=limit)
    for option, column in (("--text-column", text_column), ("--pair-column", pair_column),
                           ("--label-column", label_column)):
        if column is not None and column not in p.columns:
            from engine.core.errors import DataError

            raise DataError(f"{path.name} has no column {column!r} ({option}); its columns "
                            f"are {', '.join(p.columns)}.")
    stats = None
    if model:
        from engine.modeling.lengths import token_lengths

        if p.text_column is None:
            raise click.UsageError(f"No text column guessed among {', '.join(p.columns)}; "
                                   "give --text-column.")
        columns = [p.text_column] + ([pair_column] if pair_column else [])
        with _flags_named():
            stats = token_lengths(model, path, columns, encoding=encoding)
    if as_json:
        out = {"path": p.path, "columns": list(p.columns), "rows": p.total_rows,
               "first_rows": [list(r) for r in p.rows], "text_column": p.text_column,
               "label_column": p.label_column, "label_counts": dict(p.label_counts),
               "warnings": list(p.warnings)}
        if stats is not None:
            out["tokens"] = token_stats_json(stats, max_length)
        echo(dump_json(out))
        return
    # Headers, cells and labels come from the file: shown one line each, escaped.
    columns = [printable(c) for c in p.columns]
    rows = [[printable(row[i]) if i < len(row) else "" for i in range(len(columns))]
            for row in p.rows]
    echo(f"{printable(p.path)}: {p.total_rows:,} rows; columns {', '.join(columns)}")
    echo(f"  text column: {printable(p.text_column or '?')}   "
         f"label column: {printable(p.label_column or '-')}")
    widths = [min(30, max([len(c)] + [len(r[i]) for r in rows])) for i, c in enumerate(columns)]
    echo("  " + "  ".join(cut(c, w).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for cells in rows:
        echo("  " + "  ".join(cut(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)))
    if p.label_counts:
        total = sum(n for _, n in p.label_counts)
        shown = ", ".join(f"{cut(k, 40)} {n:,} ({n / total:.0%})" for k, n in p.label_counts[:10])
        more = f", +{len(p.label_counts) - 10} more" if len(p.label_counts) > 10 else ""
        echo(f"  labels: {shown}{more}")
    if stats is not None:
        echo(f"  tokens ({printable(model)}): {stats.summary(max_length)}")
    for warning in p.warnings:  # they quote labels and names from the file
        echo(f"  warning: {printable(warning)}")


@data.command("clear-cache")
def data_clear_cache() -> None:
    """Delete the data kept between runs: tokenised sets, local files' Arrow tables and the
    audit's features (each is rebuilt when next needed)."""
    from engine.training.data_cache import cache_dir, clear
    from tui.formatting import human_bytes

    count, freed = clear()
    echo(f"Removed {count} cached data set{'s' if count != 1 else ''} "
               f"({human_bytes(freed)}) from {cache_dir().parent}.")


@data.command("audit")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by dotted key, e.g. data.train=other.csv.")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True,
              help="Folds of the out-of-sample label check.")
@click.option("--seed", default=0, show_default=True, help="Seed of the folds.")
@click.option("--write-clean", "clean", type=click.Path(path_type=Path), metavar="OUT",
              help="Write a cleaned copy of the training file (same format, never over it) "
                   "with the audit beside it; a run trained on it records the audit.")
@click.option("--drop/--relabel", "drop", default=True, show_default=True,
              help="With --write-clean: leave likely label errors out, or give them the "
                   "suggested label.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def data_audit(config: Path, overrides: tuple[str, ...], folds: int, seed: int,
               clean: Path | None, drop: bool, as_json: bool) -> None:
    """Find likely label errors, duplicates, leaks and degenerate inputs in CONFIG's data,
    with its model as a frozen feature extractor (the audit extra: cleanlab).

    Text, text-pair and multi-label files or hf: splits, and image folders (exact
    duplicates by pixel hash, unreadable images). Text features go to the cache a
    head-only run on the same data reads. A progress line shows on stderr; Ctrl+C
    stops the audit and writes nothing.
    """
    from engine.audit.run import audit
    from engine.core.config import load_config

    cfg = load_config(config, overrides)
    line = _ProgressLine(quiet=as_json)
    stop = threading.Event()
    try:
        report = audit(cfg, folds=folds, seed=seed, progress=line.show, stop=stop)
    except KeyboardInterrupt:  # the engine honours the event; this process just ends
        stop.set()
        raise DataError("The audit was stopped (Ctrl+C); nothing was written.") from None
    finally:
        line.end()
    cleaned = None
    if clean is not None:
        from engine.audit.clean import write_clean
        from engine.audit.marks import load_marks

        marks = load_marks(cfg) or None  # rows marked by hand (TUI, a run's errors) decide
        cleaned = write_clean(cfg, report, clean, mode="drop" if drop else "relabel",
                              choices=_with_marks(report, marks, drop))
    if as_json:
        out = report.to_json()
        if cleaned is not None:
            out["cleaned"] = {"path": str(cleaned.path), "dropped": cleaned.dropped,
                              "relabelled": cleaned.relabelled, "kept": cleaned.kept}
        echo(dump_json(out))
        return
    _echo_audit(cfg, report)
    if cleaned is not None:
        echo(f"Wrote {cleaned.path}: {cleaned.kept} rows ({cleaned.dropped} dropped, "
             f"{cleaned.relabelled} relabelled); train on it with --set "
             f"data.train={cleaned.path}.")


def _with_marks(report, marks: dict | None, drop: bool) -> dict | None:
    """The rows to fix by name when some were marked by hand: the audit's label errors
    (dropped or relabelled as the flag says), then the marks over them."""
    if not marks:
        return None
    choices = {i["row"]: (None if drop or not i["suggested"] else i["suggested"])
               for i in report.label_issues if i["split"] == "train"}
    return {**choices, **marks}


class _ProgressLine:
    """`audit: 42%  features of train.csv  120/240` on stderr, rewritten in place at most
    five times a second (as `hub download` shows bytes); nothing with --json."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.last, self.drawn = quiet, 0.0, False

    def show(self, p) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < 0.2 and p.done < p.total):
            return
        self.last, self.drawn = now, True
        click.echo(f"\raudit: {100 * p.fraction:3.0f}%  {printable(p.what)}  "
                   f"{p.done:,}/{p.total:,}   ", nl=False, err=True)

    def end(self) -> None:
        if self.drawn:  # end the line: what follows starts a line of its own
            click.echo("", err=True)
            self.drawn = False


def _echo_audit(cfg, report, shown: int = 8) -> None:
    from engine.audit.run import read_split

    rows = ", ".join(f"{n} {k}" for k, n in report.rows.items())
    echo(f"Audited {rows} rows: {len(report.label_issues)} likely label errors, "
         f"{len(report.duplicates)} duplicate groups, {len(report.leaks)} leaks, "
         f"{len(report.degenerate)} degenerate inputs, {len(report.rare_labels)} rare labels.")
    reused = sum(f["reused"] for f in report.features.values())
    if reused:
        echo(f"Features of {reused} examples were read from the cache.")
    if report.label_issues:
        if report.kind == "image":
            # A path's end names the image: the class folder and the file.
            text = {i["row"]: (p if len(p := i.get("path", "")) <= 60 else "…" + p[-59:])
                    for i in report.label_issues}
        else:
            split = read_split(cfg, "train", cfg.data.train, multi=report.kind == "multi-label")
            text = dict(zip(split.rows, split.inputs, strict=True))
        echo(f"\nLikely label errors (worst {min(shown, len(report.label_issues))}):")
        echo(f"{'ROW':>6}  {'LABEL':<14} {'SUGGESTED':<14} {'CONF':>5}  "
             f"{'IMAGE' if report.kind == 'image' else 'TEXT'}")
        for issue in report.label_issues[:shown]:
            echo(f"{issue['row']:>6}  {cut(issue['label'], 14):<14} "
                 f"{cut(issue['suggested'], 14):<14} {issue['confidence']:>5.2f}  "
                 f"{cut(text.get(issue['row'], ''), 60)}")
    for leak in report.leaks[:shown]:
        echo(f"Leak: validation row {leak['validation_row']} is training row "
             f"{leak['train_row']} (similarity {leak['similarity']:.3f}).")
    for group in report.duplicates[:shown]:
        echo(f"Duplicates ({group['kind']}) in {group['split']}: rows "
             f"{', '.join(map(str, group['rows'][:10]))}")
    for d in report.degenerate[:shown]:
        echo(f"Degenerate input: {d['split']} row {d['row']} ({d['reason']}).")
    for u in report.unreadable[:shown]:
        echo(f"Unreadable image: {u['split']} row {u['row']}, {u['path']} "
             f"({u['reason']}).")
    for r in report.rare_labels:
        echo(f"Rare label: {cut(r['label'], 40)} has {r['count']} examples.")
    for note in report.notes:
        echo(f"Note: {note}")
