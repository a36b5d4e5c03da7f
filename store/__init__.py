"""Run history on SQLite.

The store is what every other part of hubtune reads and writes: runs, their
configs, metric series, events and checkpoints. It never imports textual,
torch, transformers or the engine, so any process (the TUI, the CLI, a
training worker) can open it cheaply.
"""

from store import compat  # noqa: F401  (first: it imports sqlite-utils lean)
from store.common import STATUSES, TERMINAL_STATUSES
from store.errors import LeaseLost, StoreError
from store.paths import data_dir, db_path, run_dir
from store.records import Checkpoint, Comparison, EventRecord, Run, Series, SeriesTail, kept_metrics
from store.run_store import RunStore

__all__ = [
    "STATUSES",
    "TERMINAL_STATUSES",
    "Checkpoint",
    "Comparison",
    "EventRecord",
    "LeaseLost",
    "Run",
    "RunStore",
    "Series",
    "SeriesTail",
    "StoreError",
    "data_dir",
    "kept_metrics",
    "db_path",
    "run_dir",
]
