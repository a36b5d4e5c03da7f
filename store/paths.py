"""Where hubtune keeps its data: one function, honouring HUBTUNE_HOME.

Tests redirect everything by setting HUBTUNE_HOME to a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory: `$HUBTUNE_HOME`, else the platform's user data dir."""
    home = os.environ.get("HUBTUNE_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("hubtune", appauthor=False))


def db_path() -> Path:
    """The SQLite database holding every run."""
    return data_dir() / "hubtune.db"


def run_dir(run_id: int) -> Path:
    """The folder of one run: config, worker log, checkpoints, exported model."""
    return data_dir() / "runs" / str(run_id)
