"""MLflow: a file store written through `MlflowClient` (the `mlflow` extra; mlflow-skinny
is enough).

Runs go to the experiment `hubtune` of the file store at the folder given; each is found
again by its `hubtune.key` tag, so a repeated export extends that run and skips every
point it already holds (by metric and step) instead of adding a second run. The config
is the run's parameters (dotted keys), notes its description, tags, lineage and sweep
its tags, the environment and config files under `hubtune/`, events `hubtune/events.txt`.

MLflow 3 keeps the file store in maintenance mode and refuses it unless
`MLFLOW_ALLOW_FILE_STORE` is set; this adapter sets it for its own process (the store
it writes is the documented offline format, `mlflow ui --backend-store-uri FOLDER`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from engine.share.trackers import PROJECT, Line, Point, RunInfo, TrackerError, log_text, missing

MAX_PARAM_CHARS = 6000
"""MLflow's limit on a parameter's value."""
BATCH = 1000
"""MLflow takes at most 1,000 metrics (and 100 parameters) per log_batch."""
STATUS = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED",
          "interrupted": "KILLED"}


def _key(name: str) -> str:
    """A name MLflow accepts as a metric, parameter or tag key."""
    return re.sub(r"[^\w.\- /]", "_", name)[:250]


class MlflowTracker:
    """Writes one run into an MLflow file store."""

    name = "mlflow"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._client = None
        self._run_id = ""
        self._last: dict[str, int] = {}
        """The highest step each metric already has in the store: not written again."""
        self._lines: list[Line] = []
        self._entities: tuple = ()
        """mlflow's Metric, Param and RunTag, imported by `start`."""

    def start(self, run: RunInfo, *, replace: bool, from_step: int | None = None) -> None:
        try:
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing(self.name, "mlflow") from None
        self._entities = Metric, Param, RunTag
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._client = client = MlflowClient(tracking_uri=self.folder.resolve().as_uri())
            experiment = client.get_experiment_by_name(PROJECT)
            eid = experiment.experiment_id if experiment else client.create_experiment(PROJECT)
        except OSError as exc:
            raise TrackerError(f"MLflow cannot write to {self.folder} ({exc.strerror}); "
                               "choose a folder you can write to.") from None
        found = client.search_runs([eid], f"tags.`hubtune.key` = '{run.key}'", max_results=1)
        if found:
            self._run_id = found[0].info.run_id
            for name in found[0].data.metrics:
                steps = [m.step for m in client.get_metric_history(self._run_id, name)]
                self._last[name] = max(steps, default=-1)
            known = found[0].data.params
        else:
            self._run_id = client.create_run(eid, run_name=run.title).info.run_id
            known = {}
        self._describe(run, known)

    def _describe(self, run: RunInfo, known: dict[str, str]) -> None:
        _, Param, RunTag = self._entities

        params = [Param(_key(k), str(v)[:MAX_PARAM_CHARS]) for k, v in run.params().items()
                  if _key(k) not in known]
        tags = {**run.lineage(), "mlflow.note.content": run.notes,
                "hubtune.tags": ", ".join(run.tags), "hubtune.status": run.status}
        for i in range(0, len(params), 100):
            self._client.log_batch(self._run_id, params=params[i:i + 100])
        self._client.log_batch(self._run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self._client.log_dict(self._run_id, run.config, "hubtune/config.json")
        self._client.log_dict(self._run_id, run.env, "hubtune/environment.json")

    def scalars(self, points: Sequence[Point]) -> None:
        Metric = self._entities[0]

        new = [Metric(_key(name), value, int(when * 1000), step)
               for step, name, value, when in points if step > self._last.get(_key(name), -1)]
        for i in range(0, len(new), BATCH):
            self._client.log_batch(self._run_id, metrics=new[i:i + BATCH])
        for m in new:
            self._last[m.key] = max(self._last.get(m.key, -1), m.step)

    def text(self, lines: Sequence[Line]) -> None:
        if lines:
            self._lines += lines
            self._client.log_text(self._run_id, log_text(self._lines), "hubtune/events.txt")

    def rewind(self, step: int) -> None:
        """Nothing to undo: MLflow keeps each metric's points and writes a replayed step only past its last."""

    def finish(self, status: str) -> None:
        if self._client is None:
            return
        self._client.set_tag(self._run_id, "hubtune.status", status)
        if status in STATUS:
            self._client.set_terminated(self._run_id, STATUS[status])
        self._client = None
