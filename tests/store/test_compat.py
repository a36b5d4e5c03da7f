"""sqlite-utils, imported without pandas and numpy (store.compat), exercised for real:
if an upgrade changes how sqlite-utils imports them, this fails naming its version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from store.compat import CHECKED

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def _fail(what: str) -> str:
    return (f"sqlite-utils {version('sqlite-utils')}: {what} (store/compat.py was checked "
            f"against {CHECKED}); update or remove the adapter.")


def test_sqlite_utils_still_imports_the_dataframe_libraries_the_adapter_hides():
    """Without the adapter, sqlite-utils pulls both in: the trick still earns its keep."""
    loaded = _run("import sys, sqlite_utils\n"
                  "print(*(m in sys.modules for m in ('pandas', 'numpy')))")
    assert loaded == ["True", "True"], _fail("it no longer imports pandas and numpy itself")


def test_the_store_opens_sqlite_utils_without_them_and_it_still_works():
    shown = _run("import sys, store, sqlite_utils.db as db\n"
                 "print(*(m in sys.modules for m in ('pandas', 'numpy')), db.pd, db.np)\n"
                 "d = db.Database(memory=True)\n"
                 "d['t'].insert({'a': 1, 'b': 'x', 'c': 1.5})\n"
                 "print(d['t'].columns_dict == {'a': int, 'b': str, 'c': float})")
    assert shown[:4] == ["False", "False", "None", "None"], _fail(
        f"it imports the dataframe libraries another way ({shown[:4]})")
    assert shown[4] == "True", _fail("it no longer works without pandas and numpy")


def test_every_migration_is_known_in_order():
    """`KNOWN` comes from the public `Migrations.pending` on an empty database."""
    import store.migrations as m

    defined = sorted(name for name in vars(m) if name[:1] == "m" and name[1:4].isdigit())
    assert m.KNOWN == defined
