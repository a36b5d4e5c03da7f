"""`hubtune hub ...` and `hubtune cache ...`: the hub and the local model cache, headless."""

from __future__ import annotations

import sys
import threading
import time

import click

from tui.cli.base import Failure
from tui.cli.output import cut, dump_json, echo
from tui.formatting import human_bytes
from tui.safe_text import printable

REPO_TYPE = click.option(
    "--repo-type", type=click.Choice(["model", "dataset"]), default="model",
    show_default=True, help="dataset: hub datasets (an hf: id implies it).")


@click.group()
def hub() -> None:
    """Search the Hugging Face hub, read about a model or dataset, download it."""


@hub.command("search")
@click.argument("query", required=False, default="")
@click.option("--task", metavar="T", help="Pipeline tag (models) or task category (datasets), "
              "e.g. text-classification.")
@click.option("--library", metavar="L", help="Models: library, e.g. transformers or "
              "sentence-transformers.")
@click.option("--size", metavar="S", help="Datasets: size category (rows), e.g. 10K<n<100K.")
@click.option("--sort", type=click.Choice(["downloads", "likes", "updated"]), default="downloads",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@REPO_TYPE
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def hub_search(query: str, task, library, size, sort: str, limit: int, repo_type: str,
               as_json: bool) -> None:
    """Find models (or datasets) on the hub; cached ones are marked with *."""
    from engine.hub.client import search_models

    if repo_type == "dataset":
        if library:
            raise Failure("--library filters models; for datasets use --task or --size.")
        _search_datasets(query, task, size, sort, limit, as_json)
        return
    if size:
        raise Failure("--size filters datasets; add --repo-type dataset.")
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
@REPO_TYPE
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
def hub_info(repo: str, revision, repo_type: str, as_json: bool) -> None:
    """Show a model's card summary, files and sizes, parameters and fitting heads (or a
    dataset's subsets, splits, features, size and licence)."""
    from engine.hub.client import model_details

    if repo_type == "dataset" or repo.startswith("hf:"):
        from tui.cli.hub_datasets import print_dataset_info

        print_dataset_info(repo, revision, as_json)
        return
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
@REPO_TYPE
@click.option("--subset", metavar="NAME", help="With --repo-type dataset: only this subset.")
def hub_download(repo: str, revision, files: tuple[str, ...], repo_type: str,
                 subset: str | None) -> None:
    """Download a model's safetensors weights, config and tokenizer into the cache
    (for torchvision:ARCH, its default pretrained weights), or a dataset's files."""
    from engine.hub.client import DownloadCancelled, HubError, download_model, weights_repo

    if repo.startswith("hf:"):
        repo_type = "dataset"
    if repo_type == "model":
        repo = weights_repo(repo)
    elif files:
        raise Failure("--file picks a model's files; for a dataset, --subset picks which "
                      "files to download.")

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
        if repo_type == "dataset":
            from engine.data.hub.fetch import download_dataset

            path = download_dataset(repo.removeprefix("hf:"), revision=revision,
                                    subset=subset, progress=progress, stop=stop)
        else:
            path = download_model(repo, revision=revision, files=list(files) or None,
                                  progress=progress, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        raise HubError("Download cancelled; nothing partial was kept.") from None
    except DownloadCancelled:
        raise HubError("Download cancelled; nothing partial was kept.") from None
    finally:
        if last[0]:  # end the progress line: an error then starts a line of its own
            echo("", err=True)
    echo(str(path))


@click.group()
def cache() -> None:
    """List, verify and delete models and datasets in the local hub cache."""


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def cache_ls(as_json: bool) -> None:
    """Models and datasets on this machine (the hub cache, and models bundled in installed
    packages) with their type, size and when they were last used."""
    from engine.hub.client import list_local

    entries = list_local(datasets=True)
    if as_json:
        echo(dump_json([{**m.__dict__, "type": m.kind, "revisions": list(m.revisions)}
                        for m in entries]))
        return
    if not entries:
        echo("Nothing cached. `hubtune hub download REPO` fetches a model (add "
             "--repo-type dataset for a dataset).")
        return
    echo(f"{'REPO':<44} {'TYPE':<8} {'SIZE':>10}  {'LAST USED':<16}  CONTENT")
    for m in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.last_used)) if m.last_used else "-"
        name = f"hf:{m.id}" if m.repo_type == "dataset" else m.id
        echo(f"{cut(name, 44):<44} {m.kind:<8} {human_bytes(m.size):>10}  {used:<16}  "
             f"{_content(m)}")


def _content(m) -> str:
    """What a cache entry holds: a model whose details were only looked at holds its card
    and config alone; a dataset's card alike, without its data files."""
    if not m.has_weights:
        return "card only"
    return "data" if m.repo_type == "dataset" else "weights"


@cache.command("rm")
@click.argument("repo")
@click.option("--revision", metavar="R", help="Delete only this revision (commit hash prefix).")
@REPO_TYPE
def cache_rm(repo: str, revision, repo_type: str) -> None:
    """Delete a cached model or dataset (hf:OWNER/NAME), or one revision of it."""
    from engine.hub.client import remove_cached

    repo, repo_type = _typed(repo, repo_type)
    freed = remove_cached(repo, revision, repo_type)
    echo(f"Deleted {'hf:' if repo_type == 'dataset' else ''}{repo}; "
         f"freed {human_bytes(freed)}.")


@cache.command("verify")
@click.argument("repo")
@REPO_TYPE
def cache_verify(repo: str, repo_type: str) -> None:
    """Check every cached file of REPO against its hash."""
    from engine.hub.client import verify_cached

    repo, repo_type = _typed(repo, repo_type)
    report = verify_cached(repo, repo_type)
    for name in report.corrupted:
        echo(f"corrupted  {printable(name)}", err=True)
    for name in report.missing:
        echo(f"missing    {printable(name)}", err=True)
    name = f"hf:{repo}" if repo_type == "dataset" else repo
    if not report.ok:
        echo(f"Error: {name} has {len(report.corrupted)} corrupted and "
             f"{len(report.missing)} missing files; `hubtune cache rm {name}` and "
             "download it again.", err=True)
        sys.exit(1)
    echo(f"{name}: {report.checked} files verified.")


def _typed(repo: str, repo_type: str) -> tuple[str, str]:
    """An `hf:` id names a dataset whatever --repo-type says."""
    return (repo.removeprefix("hf:"), "dataset") if repo.startswith("hf:") else (repo, repo_type)


def _search_datasets(query: str, task, size, sort: str, limit: int, as_json: bool) -> None:
    from tui.cli.hub_datasets import print_dataset_search

    print_dataset_search(query, task, size, sort, limit, as_json)


def _heads(d) -> tuple[str, ...]:
    """The heads that fit by the model's config.json; the pipeline tag's guess without one."""
    from engine.tasks.fit import guessed_heads, heads_from_config

    return heads_from_config(d.config) or guessed_heads(d)
