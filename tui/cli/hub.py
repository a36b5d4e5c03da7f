"""`hubtune hub ...` and `hubtune cache ...`: the hub and the local model cache, headless."""

from __future__ import annotations

import sys
import threading
import time

import click

from tui.cli.output import cut, dump_json, echo
from tui.formatting import human_bytes
from tui.safe_text import printable


@click.group()
def hub() -> None:
    """Search the Hugging Face hub, read about a model, download it."""


@hub.command("search")
@click.argument("query", required=False, default="")
@click.option("--task", metavar="T", help="Pipeline tag, e.g. text-classification.")
@click.option("--library", metavar="L", help="Library, e.g. transformers or sentence-transformers.")
@click.option("--sort", type=click.Choice(["downloads", "likes", "updated"]), default="downloads",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def hub_search(query: str, task, library, sort: str, limit: int, as_json: bool) -> None:
    """Find models on the hub; cached ones are marked with *."""
    from engine.hub.client import search_models

    found = search_models(query, task=task, library=library, sort=sort, limit=limit)
    if as_json:
        echo(dump_json([m.__dict__ for m in found]))
        return
    if not found:
        echo("No models match.")
        return
    echo(f"  {'MODEL':<48} {'TASK':<26} {'DOWNLOADS':>10} {'LIKES':>6}  UPDATED")
    for m in found:
        echo(f"{'*' if m.cached else ' '} {cut(m.id, 48):<48} {cut(m.task or '-', 26):<26} "
             f"{m.downloads:>10,} {m.likes:>6,}  {cut((m.updated or '')[:10], 10)}")


@hub.command("info")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Branch, tag or commit.")
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
def hub_info(repo: str, revision, as_json: bool) -> None:
    """Show a model's card summary, files and sizes, parameters and fitting heads."""
    from engine.hub.client import model_details

    d = model_details(repo, revision=revision)
    if as_json:
        out = dict(d.__dict__)
        out["heads"] = list(_heads(d))
        out["files"] = [f.__dict__ for f in d.files]
        echo(dump_json(out))
        return
    echo(f"{printable(d.id)}  ({printable(d.task or 'no task')}, "
         f"{printable(d.library or 'unknown library')})")
    echo(f"  license     {printable(d.license or '-')}")
    echo(f"  parameters  {f'{d.parameters:,}' if d.parameters else 'not reported'}")
    echo(f"  download    {human_bytes(d.download_size)} (safetensors, config, tokenizer)")
    echo(f"  heads       {printable(', '.join(_heads(d)))}")
    flags = [f for f, on in (("gated", d.gated), ("private", d.private),
                             ("needs trust_remote_code", d.needs_remote_code),
                             ("no safetensors", not d.has_safetensors),
                             ("cached", d.cached)) if on]
    if flags:
        echo(f"  notes       {', '.join(flags)}")
    echo("  files")
    for f in d.files:
        echo(f"    {cut(f.path, 200):<48} {human_bytes(f.size) if f.size is not None else '?':>10}")
    if d.card:
        echo("")
        echo("\n".join(d.card.splitlines()[:20]))


@hub.command("download")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Branch, tag or commit.")
@click.option("--file", "files", multiple=True, metavar="PATTERN",
              help="Only these files (glob patterns); repeat for more.")
def hub_download(repo: str, revision, files: tuple[str, ...]) -> None:
    """Download a model's safetensors weights, config and tokenizer into the cache
    (for torchvision:ARCH, its default pretrained weights)."""
    from engine.hub.client import DownloadCancelled, HubError, download_model, weights_repo

    repo = weights_repo(repo)

    stop = threading.Event()
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        rate = done / max(now - started, 1e-6)
        pct = f"{100 * done / total:5.1f}%" if total else "     "
        click.echo(f"\r{pct}  {human_bytes(done)} of {human_bytes(total)}  "
                   f"{human_bytes(rate)}/s   ", nl=False, err=True)

    try:
        path = download_model(repo, revision=revision, files=list(files) or None,
                              progress=progress, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        raise HubError("Download cancelled; nothing partial was kept.") from None
    except DownloadCancelled:
        raise HubError("Download cancelled; nothing partial was kept.") from None
    echo("", err=True)
    echo(str(path))


@click.group()
def cache() -> None:
    """List, verify and delete models in the local hub cache."""


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def cache_ls(as_json: bool) -> None:
    """Models on this machine (the hub cache, and models bundled in installed packages)
    with their size and when they were last used."""
    from engine.hub.client import list_local

    models = list_local()
    if as_json:
        echo(dump_json([{**m.__dict__, "revisions": list(m.revisions)} for m in models]))
        return
    if not models:
        echo("No models cached. `hubtune hub download REPO` fetches one.")
        return
    echo(f"{'MODEL':<44} {'SOURCE':<8} {'SIZE':>10}  {'LAST USED':<16}  WEIGHTS")
    for m in models:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.last_used)) if m.last_used else "-"
        # A model whose details were only looked at holds its card and config alone.
        weights = "yes" if m.has_weights else "card only"
        echo(f"{cut(m.id, 44):<44} {m.source:<8} {human_bytes(m.size):>10}  {used:<16}  "
             f"{weights}")


@cache.command("rm")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Delete only this revision (commit hash prefix).")
def cache_rm(repo: str, revision) -> None:
    """Delete a cached model (or one revision of it)."""
    from engine.hub.client import remove_cached

    freed = remove_cached(repo, revision)
    echo(f"Deleted {repo}; freed {human_bytes(freed)}.")


@cache.command("verify")
@click.argument("repo")
def cache_verify(repo: str) -> None:
    """Check every cached file of REPO against its hash."""
    from engine.hub.client import verify_cached

    report = verify_cached(repo)
    for name in report.corrupted:
        echo(f"corrupted  {printable(name)}", err=True)
    for name in report.missing:
        echo(f"missing    {printable(name)}", err=True)
    if not report.ok:
        echo(f"Error: {repo} has {len(report.corrupted)} corrupted and "
                   f"{len(report.missing)} missing files; `hubtune cache rm {repo}` and "
                   "download it again.", err=True)
        sys.exit(1)
    echo(f"{repo}: {report.checked} files verified.")


def _heads(d) -> tuple[str, ...]:
    """The heads that fit by the model's config.json; the pipeline tag's guess without one."""
    from engine.modeling.heads import heads_from_config

    return heads_from_config(d.config) or d.heads
