"""The private parts of CPython's standard library that the engine relies on.

Each has no public equivalent (the reason is under each function), so it is reached
here and nowhere else, and tests/engine/test_compat.py exercises each one for real:
an interpreter that moves one fails there with its version, and the caller falls back
to the slower public way rather than failing a run.

Checked against CPython 3.11.
"""

from __future__ import annotations

CHECKED = "CPython 3.11"
"""The interpreter the adapters below were checked against."""


def run_exit_handlers() -> bool:
    """Run the `atexit` handlers now, as a normal exit would, and forget them (each
    runs once). False, having run none, on an interpreter without the hook.

    A process that leaves through `os._exit` skips the interpreter's teardown (about a
    second of CPU with torch loaded) but also its exit handlers; `atexit` offers no
    public way to run them early, only the undocumented `atexit._run_exitfuncs`.
    """
    import atexit

    run = getattr(atexit, "_run_exitfuncs", None)
    if run is None:
        return False
    run()
    return True
