"""How `hubtune runs compare` prints runs side by side (this machine's, or several
machines' read over SSH: tui/cli/remote_steer.py)."""

from __future__ import annotations

from tui.cli.output import cut, dump_json, echo, table
from tui.formatting import metric
from tui.safe_text import printable


def echo_comparison(cmp, results: list, labels: list[str], as_json: bool, *,
                    remotes: list[str | None] | None = None) -> None:
    """A comparison (store.Comparison) with each run's result, headed by `labels`; with
    `remotes`, the runs are of several machines and --json says whose each is."""
    if as_json:
        echo(dump_json({
            "runs": [r.id for r in cmp.runs],
            **({"remotes": remotes} if remotes is not None else {}),
            "config_diff": {k: list(v) for k, v in cmp.config_diff.items()},
            "metrics": {k: list(v) for k, v in cmp.metrics.items()},
            "results": [res.to_json() for res in results],
        }))
        return
    rows = [["", *(printable(label, limit=40) for label in labels)]]
    # First, the result of each (the model it keeps); the summary's rows follow.
    rows.append(["result (kept model)", *(
        f"{printable(res.short)} {metric(res.value)}" if res.value is not None else "-"
        for res in results)])
    rows.append(["  of", *(res.label if res.value is not None else "-" for res in results)])
    rows += [[cut(key, 60), *(cell_value(v, 40) for v in values)]
             for key, values in cmp.config_diff.items()]
    rows += [[cut(key, 60), *(metric(v, key) for v in values)] for key, values in
             cmp.metrics.items() if all(v is None or isinstance(v, (int, float))
                                        for v in values)]
    for line in table(rows, right=(False, *(True for _ in cmp.runs))):
        echo(line)


def cell_value(v, limit: int = 60) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    from engine.runs.lineage import show_value

    return "-" if v is None else printable(show_value(v), limit=limit)
