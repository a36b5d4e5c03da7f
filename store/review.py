"""Per-example validation results of the model each run keeps: written by the worker at
each evaluation that becomes the kept one (replacing the previous rows), read by review
(`hubtune runs errors`, `runs compare --examples`). One part of `RunStore`.

Never imports the engine: rows arrive as plain tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.common import check_lease, utc_now

if TYPE_CHECKING:
    from store.connection import StoreConnection


@dataclass(frozen=True)
class ExampleResult:
    """One validation example as the kept model saw it."""

    example: int
    """Its position in the run's validation split (0 = first)."""
    predicted: str
    label: str
    confidence: float | None
    """The probability of `predicted` (the least sure label for multi-label); None where
    the task has none (regression)."""
    loss: float
    """How wrong it is, per `PredictionSet.loss_kind`: higher is worse."""

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


@dataclass(frozen=True)
class PredictionSet:
    """The recorded evaluation of a run's kept model."""

    run_id: int
    step: int
    """The step of the evaluation (the kept model's step)."""
    examples: int
    """Validation examples evaluated; at most 20,000 rows are stored, the worst first."""
    stored: int
    loss_kind: str
    """cross_entropy, binary_cross_entropy, squared_error, chrf_gap (100 - sentence chrF),
    f1_gap (100 - a question's SQuAD F1), tag_errors (a sentence's words tagged wrong) or
    token_loss (a text's mean cross-entropy per scored token)."""
    recorded_utc: str


class Review:
    """Per-example validation results of each run's kept model."""

    def __init__(self, connection: StoreConnection) -> None:
        self.db, self._write = connection.db, connection.write

    def replace_predictions(self, run_id: int, step: int, examples: int, loss_kind: str,
                            rows: Iterable[Sequence], *, lease: str | None = None) -> int:
        """Make `rows` (example, predicted, label, confidence, loss) the run's per-example
        results, dropping the previous ones, in one transaction; returns how many."""
        batch = [(run_id, int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
            conn.execute("DELETE FROM val_predictions WHERE run_id = ?", [run_id])
            conn.execute(
                "INSERT OR REPLACE INTO val_prediction_sets (run_id, step, examples, loss_kind,"
                " recorded_utc) VALUES (?,?,?,?,?)", [run_id, step, examples, loss_kind,
                                                      utc_now()])
            conn.executemany(
                "INSERT INTO val_predictions (run_id, example, predicted, label, confidence,"
                " loss) VALUES (?,?,?,?,?,?)", batch)
        return len(batch)

    def drop_predictions_after(self, run_id: int, step: int, *,
                               lease: str | None = None) -> None:
        """Forget per-example results recorded after `step` (a resume replays that far)."""
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
            gone = conn.execute("DELETE FROM val_prediction_sets WHERE run_id = ? AND step > ?",
                                [run_id, step]).rowcount
            if gone:
                conn.execute("DELETE FROM val_predictions WHERE run_id = ?", [run_id])

    def prediction_set(self, run_id: int) -> PredictionSet | None:
        """What was recorded for the run's kept model, or None (never evaluated, an older
        run, or a task without per-example results)."""
        row = self.db.execute(
            "SELECT s.run_id, s.step, s.examples,"
            " (SELECT count(*) FROM val_predictions p WHERE p.run_id = s.run_id),"
            " s.loss_kind, s.recorded_utc FROM val_prediction_sets s WHERE s.run_id = ?",
            [run_id]).fetchone()
        return PredictionSet(*row) if row is not None else None

    def worst_examples(self, run_id: int, limit: int | None = None) -> list[ExampleResult]:
        """The run's per-example results, highest loss first (ties: earliest example)."""
        cur = self.db.execute(
            "SELECT example, predicted, label, confidence, loss FROM val_predictions"
            " WHERE run_id = ? ORDER BY loss DESC, example LIMIT ?",
            [run_id, -1 if limit is None else limit])
        return [ExampleResult(*r) for r in cur.fetchall()]

    def example_results(self, run_id: int) -> dict[int, ExampleResult]:
        """Every stored result of the run, by example index."""
        cur = self.db.execute(
            "SELECT example, predicted, label, confidence, loss FROM val_predictions"
            " WHERE run_id = ? ORDER BY example", [run_id])
        return {r[0]: ExampleResult(*r) for r in cur.fetchall()}
