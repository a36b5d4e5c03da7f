"""What every `hubtune` command shares: one-sentence failures, the group that turns
hubtune's own errors (and SQLite and OS errors) into them, and the store opener.

Imports neither textual nor torch (a test checks): `hubtune runs ls` stays fast.
"""

from __future__ import annotations

import click

from engine.core.errors import HubtuneError
from store import StoreError
from tui.cli.output import os_error_sentence
from tui.safe_text import printable

EXIT_FAILED = 1
EXIT_USAGE = 2


class Failure(click.ClickException):
    """A problem reported as one sentence: `Error: ...`."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {printable(self.message)}", err=True)


class RunIdType(click.ParamType):
    """A run id: a whole number; one too large for SQLite names no run, and says so as the
    store does (an error the group turns into one sentence), not as an overflow."""

    name = "integer"

    def convert(self, value, param, ctx):
        from store.common import check_run_id

        return check_run_id(click.INT.convert(value, param, ctx))


RUN_ID = RunIdType()


def open_store():
    from store import RunStore

    return RunStore()


class HubtuneGroup(click.Group):
    """Turns hubtune's own errors into plain messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        import sqlite3

        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except (HubtuneError, StoreError, sqlite3.Error, OSError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            if isinstance(exc, sqlite3.Error):
                message = (f"The run database could not be used ({exc}); check that "
                           "HUBTUNE_HOME is a writable folder that still exists.")
            elif isinstance(exc, OSError):
                message = os_error_sentence(exc)
            else:
                message = str(exc)
            raise Failure(message) from None


def _quiet_broken_pipe() -> None:
    """The reader of our output went away (`hubtune runs show 3 | head`): stop at once and
    quietly, as other command-line tools do, with the status a SIGPIPE gives (141)."""
    import os
    import sys

    try:  # what is still buffered for the closed pipe is dropped, not reported at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(141)
