"""sqlite-utils, imported without pandas and numpy: the one place the store leans on
how sqlite-utils imports, rather than on what it offers.

sqlite-utils imports pandas and numpy whenever they are installed (at module level in
`sqlite_utils.db`, each in a `try: ... except ImportError`), only to map their scalar
types to column types; the store hands it plain Python values. With pyarrow behind
pandas, that import was three quarters of what opening the store cost (0.8 s -> 0.2 s
on the development box), paid by every CLI command and by the TUI before its first
paint. sqlite-utils has no switch for it, so the libraries are hidden while it imports:
Python's import system documents that a `None` in `sys.modules` makes `import name`
raise ImportError.

They are hidden only while sqlite-utils itself is imported, and only when nothing has
imported them yet; every hubtune process imports the store before it starts a thread,
so no other import can see them missing. tests/store/test_compat.py fails, naming
sqlite-utils' version, if it stops importing them that way (the trick is then dead
weight) or stops working without them.

Checked against sqlite-utils 4.2.1.
"""

from __future__ import annotations

import sys

CHECKED = "sqlite-utils 4.2.1"
"""The version this adapter was checked against (the test names it when it fails)."""

HIDDEN = ("pandas", "numpy")
"""What sqlite-utils would import for nothing the store uses."""


def import_sqlite_utils_lean() -> None:
    """Import sqlite-utils, keeping pandas and numpy out unless already imported."""
    if "sqlite_utils" in sys.modules:
        return
    hidden = [name for name in HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # `import name` raises ImportError; sqlite-utils expects that
    try:
        import sqlite_utils  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


import_sqlite_utils_lean()
