"""Examples marked by hand for the next cleaned copy of a training file: from the audit
pane (drop, or a new label) and from a completed run's errors ("mislabelled").

Kept per training data (`data.train` as the config names it, resolved) in
`<data dir>/audit/marks/`, a small JSON file of row -> label (None: drop), so marks
made while reviewing one run feed the cleaned copy the next audit writes. Rows are the
audit's: 0-based data rows of the training file. Imports neither torch nor textual.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from engine.core.config import RunConfig, is_hub_data


def _file(cfg: RunConfig) -> Path:
    from store.paths import data_dir

    train = cfg.data.train
    where = train if is_hub_data(train) else str(cfg.resolve(train))
    name = hashlib.sha256(where.encode()).hexdigest()[:24]
    return data_dir() / "audit" / "marks" / f"{name}.json"


def load_marks(cfg: RunConfig) -> dict[int, str | None]:
    """The rows marked for `cfg`'s training data: row -> new label, or None to drop."""
    try:
        raw = json.loads(_file(cfg).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    marks = raw.get("rows", {}) if isinstance(raw, dict) else {}
    return {int(row): (None if label is None else str(label)) for row, label in marks.items()
            if str(row).isdigit()}


def mark(cfg: RunConfig, row: int, label: str | None) -> dict[int, str | None]:
    """Mark training row `row` to be relabelled `label` (None: dropped); returns them all."""
    marks = load_marks(cfg)
    marks[int(row)] = label
    _save(cfg, marks)
    return marks


def unmark(cfg: RunConfig, row: int) -> dict[int, str | None]:
    marks = load_marks(cfg)
    marks.pop(int(row), None)
    _save(cfg, marks)
    return marks


def _save(cfg: RunConfig, marks: dict[int, str | None]) -> None:
    target = _file(cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"train": cfg.data.train, "rows": {str(k): v for k, v in marks.items()}},
                  fh)
    os.replace(tmp, target)
