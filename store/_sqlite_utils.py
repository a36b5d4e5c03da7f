"""sqlite-utils, imported without pandas and numpy.

sqlite-utils imports pandas and numpy whenever they are installed, only to map
their scalar types to column types; the store hands it plain Python values.
With pyarrow behind pandas, that import was three quarters of what opening
the store cost (0.8 s -> 0.2 s on the development box), paid by every CLI
command and by the TUI before its first paint.

The libraries are hidden only while sqlite-utils itself is imported, and only
when nothing has imported them yet; every hubtune process imports the store
before it starts a thread, so no other import can see them missing.
"""

from __future__ import annotations

import sys

HIDDEN = ("pandas", "numpy")


def _import_without_dataframes() -> None:
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


_import_without_dataframes()
