"""`python -m tui.cli`: the same as the `hubtune` command."""

from tui.cli.main import main

main()
