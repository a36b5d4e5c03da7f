"""The engine's ground floor: run configuration, errors, events, output files, environment.

Plain Python: no torch, no transformers, no hub client at import time, so the TUI and
the CLI import it at module level. Every other engine package may depend on it; it
depends on none of them.
"""
