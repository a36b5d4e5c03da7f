"""The `hubtune` command group: `hubtune` alone opens the TUI (in a terminal), and each
command group lives in its own module of this package.

torch and transformers are imported only inside the commands that need them, so
`hubtune --help`, `hubtune runs ls` and the TUI's first paint stay fast. Errors are
one plain sentence on stderr and a non-zero exit; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys

import click

from tui.cli.base import Failure, HubtuneGroup, open_store


@click.group(cls=HubtuneGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="hubtune")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hubtune: fine-tune Hugging Face hub models from the terminal.

    Run with no command to open the TUI.
    """
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise Failure("hubtune opens its TUI only in a terminal (stdin or stdout is not "
                          "one); use a command instead, e.g. `hubtune runs ls` or "
                          "`hubtune train CONFIG` (`hubtune --help` lists them).")
        from tui.app import make_app

        store = open_store()
        make_app(store=store).run()


def _register() -> None:
    from tui.cli.data import data
    from tui.cli.hub import cache, hub
    from tui.cli.metrics import runs_events, runs_metrics
    from tui.cli.models import export, predict
    from tui.cli.plan import plan
    from tui.cli.queue import queue
    from tui.cli.remote import remote
    from tui.cli.review import runs_errors
    from tui.cli.runs import runs
    from tui.cli.serve import serve
    from tui.cli.slurm import slurm
    from tui.cli.soup import runs_soup
    from tui.cli.sweep import sweep
    from tui.cli.train import train

    runs.add_command(runs_errors)
    runs.add_command(runs_soup)
    runs.add_command(runs_metrics)
    runs.add_command(runs_events)
    for command in (train, slurm, queue, sweep, runs, export, predict, hub, cache, plan, data,
                    remote, serve):
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="hubtune")
