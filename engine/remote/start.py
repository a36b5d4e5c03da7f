"""Starting a run on a remote (`hubtune train CONFIG --remote NAME`, and the TUI's "run
on" choice): the config travels as a file of the request, and the local data files it
names are copied once into the remote's data folder (kept there by their content, so a
second run does not copy again; `hf:` data is fetched by the remote itself). The model
is read there: a hub id fetched there, or a path on that machine.

Plain Python over an open RemoteSession; it prints nothing (`on_copy` is told of each
file copied, `on_output` gets what the remote's `train` prints as it goes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.remote.session import RemoteError

FOLLOW_SILENCE_S = 3600.0
"""How long a followed run may print nothing (a long evaluation) before the connection
is taken for dead."""


def start_on_remote(session, cfg, *, detach: bool, queued: bool, processes: int = 1,
                    parent_id: int | None = None,
                    on_copy: Callable[[str], None] | None = None,
                    on_output: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start `cfg` (an engine.core.config.RunConfig) on the session's remote, recorded
    there as a fork of its run `parent_id` when given: its `train` answer ({"exit",
    "stdout", "error"}; the run id is stdout's first line)."""
    import yaml

    from engine.core.config import is_hub_data

    data = cfg.to_dict()  # model.id is read there: a hub id (fetched there) or a path there
    for key in ("train", "validation"):
        value = data["data"].get(key)
        if not value or is_hub_data(value):
            continue
        local = cfg.resolve(value)
        if not local.is_file():
            raise RemoteError(f"data.{key} {str(value)[:80]!r} is not a file here (folders "
                              "are not copied: give its path there).")
        if on_copy is not None:
            on_copy(local.name)
        data["data"][key] = session.send_file(local)
    data.pop("base_dir", None)
    argv = ["train", "@config", "--processes", str(processes),
            *(["--queue"] if queued else []), *(["--detach"] if detach else []),
            *(["--parent", str(int(parent_id))] if parent_id is not None else [])]
    return session.call(argv, files={"config": yaml.safe_dump(data, sort_keys=False)},
                        timeout=FOLLOW_SILENCE_S, on_output=on_output)


def started_id(answer: dict[str, Any]) -> int | None:
    """The run id a remote's `train --detach` or `--queue` printed first, if it did."""
    first = str(answer.get("stdout") or "").strip().splitlines()[:1]
    return int(first[0]) if first and first[0].isdigit() else None
