"""Where a data file came from, when hubtune wrote it: a cleaned copy of an audited file
carries the audit beside it (`FILE.audit.json`, engine/audit/clean.py), which a run
trained on the copy records."""

from __future__ import annotations

import json
from pathlib import Path

SIDECAR = ".audit.json"


def audit_of(data_file: Path) -> dict | None:
    """The audit a cleaned training file came from, if it is one."""
    sidecar = Path(str(data_file) + SIDECAR)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def audit_sentence(data_file: Path) -> str | None:
    """What a run trained on `data_file` says of its audit, or None."""
    record = audit_of(data_file)
    if record is None:
        return None
    return (f"The training data is a cleaned copy from an audit of "
            f"{Path(str(record.get('source', '?'))).name} ({record.get('dropped', 0)} rows "
            f"dropped, {record.get('relabelled', 0)} relabelled; the findings are in "
            f"{data_file.name}{SIDECAR}).")
