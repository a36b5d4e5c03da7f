"""The `hubtune` command line, one module per command group (see `tui.cli.main`)."""

from tui.cli.main import cli, main

__all__ = ["cli", "main"]
