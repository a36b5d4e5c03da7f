"""`hubtune hub ...` and `hubtune cache ...`: the hub and the local model cache, headless."""

from __future__ import annotations

import json
import sys
import threading
import time

import click

from tui.formatting import human_bytes


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
    from engine.hub import search_models

    found = search_models(query, task=task, library=library, sort=sort, limit=limit)
    if as_json:
        click.echo(json.dumps([m.__dict__ for m in found], indent=2))
        return
    if not found:
        click.echo("No models match.")
        return
    click.echo(f"  {'MODEL':<48} {'TASK':<26} {'DOWNLOADS':>10} {'LIKES':>6}  UPDATED")
    for m in found:
        click.echo(f"{'*' if m.cached else ' '} {m.id:<48} {m.task or '-':<26} "
                   f"{m.downloads:>10,} {m.likes:>6,}  {(m.updated or '')[:10]}")


@hub.command("info")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Branch, tag or commit.")
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
def hub_info(repo: str, revision, as_json: bool) -> None:
    """Show a model's card summary, files and sizes, parameters and fitting heads."""
    from engine.hub import model_details

    d = model_details(repo, revision=revision)
    if as_json:
        out = dict(d.__dict__)
        out["heads"] = list(_heads(d))
        out["files"] = [f.__dict__ for f in d.files]
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{d.id}  ({d.task or 'no task'}, {d.library or 'unknown library'})")
    click.echo(f"  license     {d.license or '-'}")
    click.echo(f"  parameters  {f'{d.parameters:,}' if d.parameters else 'not reported'}")
    click.echo(f"  download    {human_bytes(d.download_size)} (safetensors, config, tokenizer)")
    click.echo(f"  heads       {', '.join(_heads(d))}")
    flags = [f for f, on in (("gated", d.gated), ("private", d.private),
                             ("needs trust_remote_code", d.needs_remote_code),
                             ("no safetensors", not d.has_safetensors),
                             ("cached", d.cached)) if on]
    if flags:
        click.echo(f"  notes       {', '.join(flags)}")
    click.echo("  files")
    for f in d.files:
        click.echo(f"    {f.path:<48} {human_bytes(f.size) if f.size is not None else '?':>10}")
    if d.card:
        click.echo("")
        click.echo("\n".join(d.card.splitlines()[:20]))


@hub.command("download")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Branch, tag or commit.")
@click.option("--file", "files", multiple=True, metavar="PATTERN",
              help="Only these files (glob patterns); repeat for more.")
def hub_download(repo: str, revision, files: tuple[str, ...]) -> None:
    """Download a model's safetensors weights, config and tokenizer into the cache
    (for torchvision:ARCH, its default pretrained weights)."""
    from engine.hub import DownloadCancelled, HubError, download_model, weights_repo

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
    click.echo("", err=True)
    click.echo(str(path))


@click.group()
def cache() -> None:
    """List, verify and delete models in the local hub cache."""


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def cache_ls(as_json: bool) -> None:
    """Cached models with their size and when they were last used."""
    from engine.hub import list_cached

    models = list_cached()
    if as_json:
        click.echo(json.dumps([{**m.__dict__, "revisions": list(m.revisions)} for m in models],
                              indent=2))
        return
    if not models:
        click.echo("No models cached. `hubtune hub download REPO` fetches one.")
        return
    click.echo(f"{'MODEL':<52} {'SIZE':>10}  {'LAST USED':<16}  WEIGHTS")
    for m in models:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.last_used)) if m.last_used else "-"
        # A model whose details were only looked at holds its card and config alone.
        weights = "yes" if m.has_weights else "card only"
        click.echo(f"{m.id:<52} {human_bytes(m.size):>10}  {used:<16}  {weights}")


@cache.command("rm")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Delete only this revision (commit hash prefix).")
def cache_rm(repo: str, revision) -> None:
    """Delete a cached model (or one revision of it)."""
    from engine.hub import remove_cached

    freed = remove_cached(repo, revision)
    click.echo(f"Deleted {repo}; freed {human_bytes(freed)}.")


@cache.command("verify")
@click.argument("repo")
def cache_verify(repo: str) -> None:
    """Check every cached file of REPO against its hash."""
    from engine.hub import verify_cached

    report = verify_cached(repo)
    for name in report.corrupted:
        click.echo(f"corrupted  {name}", err=True)
    for name in report.missing:
        click.echo(f"missing    {name}", err=True)
    if not report.ok:
        click.echo(f"Error: {repo} has {len(report.corrupted)} corrupted and "
                   f"{len(report.missing)} missing files; `hubtune cache rm {repo}` and "
                   "download it again.", err=True)
        sys.exit(1)
    click.echo(f"{repo}: {report.checked} files verified.")


def _heads(d) -> tuple[str, ...]:
    """The heads that fit by the model's config.json; the pipeline tag's guess without one."""
    from engine.heads import heads_from_config

    return heads_from_config(d.config) or d.heads
