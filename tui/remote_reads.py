"""What the runs screen reads of a remote run besides its list and live panel (#37):
the records, curves and results of marked runs of several machines for the compare
screen, and a run's worst validation examples for the run panel's errors view. Each is
read over the remote's poll session when it is connected (calls take turns on it), or
one of its own, on a thread worker (tui/background.py), never on the UI thread.

`RemoteReads` is mixed into `RemoteRuns` (tui/remote_runs.py), which holds the hosts.
Everything a remote sends is checked for type here and shown escaped by whoever draws
it; the functions below that turn answers into records import no Textual widgets.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from textual.message import Message

from store import Comparison, Run, Series
from tui.background import background
from tui.messages import ErrorsReviewed
from tui.remote_records import RemoteRun, read_json, remote_run
from tui.widgets.runs_table import run_key

Ref = tuple[str | None, int]
"""A run as (its remote's name, or None for this machine; its id there)."""


@dataclass(frozen=True)
class MixedRead:
    """Runs of several machines as the compare screen shows them."""

    comparison: Comparison
    """The runs (each with its result so far) and what differs between them."""
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    """Each run's curves by (its row key, tui.widgets.runs_table.run_key; metric name)."""
    watched: str = "accuracy"
    """The validation metric drawn (the first run's watched metric)."""


@dataclass
class RunsCompared(Message):
    """Marked runs of several machines, read for the compare screen."""

    read: MixedRead


@dataclass
class ForkRead(Message):
    """A remote run read whole (`runs show --json`, its config included) to fork it."""

    run: RemoteRun


@contextlib.contextmanager
def borrowed(host):
    """`host`'s poll session if connected (its calls take turns with the poll's), else
    one of this thread's own, closed after."""
    from importlib.metadata import version

    from engine.remote.session import RemoteSession

    session, own = host.session, None
    if session is None:
        session = own = RemoteSession(host.remote, local_version=version("hubtune"))
    try:
        yield session
    finally:
        if own is not None:
            own.close()


class RemoteReads:
    """The compare and errors reads of `RemoteRuns`; it has `hosts` and `store_path`."""

    def compare(self, refs: list[Ref]) -> None:
        """Read `refs` (marked runs, some of other machines) and post `RunsCompared`."""
        self._compare(refs)

    @background(what="reading runs of other machines to compare", group="remote-reads")
    def _compare(self, refs: list[Ref]) -> None:
        from store import RunStore

        store = RunStore(self.store_path)  # a connection of this thread's own
        try:
            with contextlib.ExitStack() as stack:
                sessions = {name: stack.enter_context(borrowed(self._host(name)))
                            for name in dict.fromkeys(n for n, _ in refs if n is not None)}
                read = read_mixed(store, sessions, refs)
        finally:
            store.close()
        self.post_message(RunsCompared(read))

    def read_for_fork(self, run: RemoteRun) -> None:
        """Read `run` whole (a listed run has no config) and post `ForkRead`."""
        self._read_for_fork(run.remote, run.id)

    @background(what="reading a remote run to fork it", group="remote-reads")
    def _read_for_fork(self, name: str, run_id: int) -> None:
        from engine.remote.session import RemoteError

        with borrowed(self._host(name)) as session:
            run = remote_run(name, read_json(session, ["runs", "show", str(run_id), "--json"]))
        if run is None:
            raise RemoteError(f"Remote {name} answered `runs show {run_id}` with something "
                              "other than a run; is the same hubtune version installed?")
        self.post_message(ForkRead(run))

    def read_errors(self, name: str, run_id: int, limit: int, to) -> None:
        """Post `to` (the run panel) the worst examples of remote `name`'s run `run_id`."""
        self._errors(name, run_id, limit, to)

    @background(what="reading a remote run's errors", group="remote-reads")
    def _errors(self, name: str, run_id: int, limit: int, to) -> None:
        from engine.core.errors import HubtuneError

        try:
            with borrowed(self._host(name)) as session:
                data = read_json(session, ["runs", "errors", str(run_id), "--limit",
                                           str(limit), "--json"])
            msg = reviewed(name, run_id, data)
        except HubtuneError as exc:  # the remote's sentence, shown in the view
            msg = ErrorsReviewed(run_id, None, [], error=str(exc), remote=name)
        to.post_message(msg)

    def _host(self, name: str):
        from engine.remote.session import RemoteError

        host = self.hosts.get(name)  # type: ignore[attr-defined]
        if host is None:
            raise RemoteError(f"Remote {name} is no longer listed (`hubtune remote ls`).")
        return host


def read_mixed(store, sessions: dict, refs: list[Ref]) -> MixedRead:
    """Runs of several machines side by side: this machine's from `store`, each remote's
    with `runs show --json` and `runs metrics --json` over its session in `sessions`."""
    from engine.remote.session import RemoteError
    from store.runs import compare_records
    from tui.run_result import live_results

    runs: list[Run] = []
    for name, run_id in refs:
        if name is None:
            runs.append(live_results(store, [store.get_run(run_id)])[0])
            continue
        run = remote_run(name, read_json(sessions[name], ["runs", "show", str(run_id),
                                                          "--json"]))
        if run is None:
            raise RemoteError(f"Remote {name} answered `runs show {run_id}` with something "
                              "other than a run; is the same hubtune version installed?")
        runs.append(run)
    watched = next((v for v in (r.summary.get("watched_metric") for r in runs)
                    if isinstance(v, str) and v), "accuracy")
    names = ["loss", f"val_{watched}"]
    series: dict[tuple[str, str], Series] = {}
    for run in runs:
        if not isinstance(run, RemoteRun):
            for n in names:
                series[(run_key(run), n)] = store.series(run.id, n)
            continue
        argv = ["runs", "metrics", str(run.id), "--name", names[0], "--name", names[1],
                "--json"]
        data = read_json(sessions[run.remote], argv)
        got = data.get("series") if isinstance(data, dict) else None
        for n in names:
            series[(run_key(run), n)] = _series(n, got.get(n) if isinstance(got, dict)
                                                else None)
    return MixedRead(compare_records(runs), series, watched)


def _series(name: str, data) -> Series:
    """A remote's {"steps", "values"} as a Series: only int steps with finite numbers."""
    import math

    steps, values = [], []
    if isinstance(data, dict) and isinstance(data.get("steps"), list) \
            and isinstance(data.get("values"), list):
        for s, v in zip(data["steps"], data["values"], strict=False):
            if type(s) is int and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and math.isfinite(v):
                steps.append(s)
                values.append(float(v))
    return Series(name, steps, values)


def reviewed(name: str, run_id: int, data) -> ErrorsReviewed:
    """A remote's `runs errors --json` as the errors view's message (checked for type)."""
    from engine.trained.review import ReviewedExample
    from store.review import PredictionSet

    def count(key: str) -> int:
        value = data.get(key)
        return value if type(value) is int else 0

    if not isinstance(data, dict):
        return ErrorsReviewed(run_id, None, [], remote=name, error=(
            f"Remote {name} answered `runs errors {run_id}` with something other than "
            "examples; is the same hubtune version installed?"))
    examples = []
    for e in data.get("errors") if isinstance(data.get("errors"), list) else []:
        if not isinstance(e, dict) or type(e.get("example")) is not int:
            continue
        conf, loss = e.get("confidence"), e.get("loss")
        examples.append(ReviewedExample(
            example=e["example"], row=e["row"] if type(e.get("row")) is int else None,
            input=str(e.get("input") or ""), label=str(e.get("label") or ""),
            predicted=str(e.get("predicted") or ""),
            confidence=float(conf) if _number(conf) else None,
            loss=float(loss) if _number(loss) else 0.0))
    recorded = PredictionSet(run_id=run_id, step=count("step"), examples=count("examples"),
                             stored=count("stored"),
                             loss_kind=str(data.get("loss_kind") or "")[:40], recorded_utc="")
    return ErrorsReviewed(run_id, recorded, examples, wrong=count("wrong"), remote=name)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_label(run: Run) -> str:
    """A run's column and curve label: `#ID name` here, `NAME:ID name` a remote's."""
    remote = getattr(run, "remote", None)
    return f"{remote}:{run.id} {run.name}" if remote else f"#{run.id} {run.name}"

