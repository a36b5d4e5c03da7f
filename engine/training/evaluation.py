"""A run's evaluations: the validation metrics, the best evaluation so far, early
stopping's patience, the rows review reads, and the best weights put back at the end.

The counts a resumed run needs (best metric, its step, evaluations without gain) live in
the run's `LoopState`, which checkpoints carry; the metrics themselves are this session's.
Every rank evaluates its share of the batches and gets the same metrics; only rank 0
reports. Never touches the store.
"""

from __future__ import annotations

from engine.core.errors import HubtuneError
from engine.core.events import EvalFinished, Note, ValidationPredicted


class Evaluation:
    """The evaluations of one prepared run (engine.training.prepared)."""

    def __init__(self, run) -> None:
        self.run = run
        self.best: dict = {}
        """The metrics of the best evaluation this session saw."""
        self.last: dict = {}
        """The metrics of the last evaluation."""
        self.last_step = -1
        """The step of the last evaluation (-1: none since the session or a rollback)."""
        self.model_step: int | None = None
        """The step whose weights the run ends with, once `restore_best` decided it."""

    def evaluate(self) -> None:
        """Evaluate the model now, note whether it is the best so far, report both."""
        run = self.run
        st, acc = run.state, run.accelerator
        # Under the training autocast: the unwrapped model (and, with torch.compile,
        # the original module) no longer carries accelerate's autocast forward.
        with acc.autocast():
            if run.cached:
                from engine.tasks.evaluate import evaluate_features

                metrics = evaluate_features(run.model, run.val_features, run.cfg,
                                            len(run.data.labels))
            else:
                from engine.tasks.eval_shards import sharded

                # Each rank evaluates its share of the batches; all get the same metrics.
                with sharded(acc.process_index, acc.num_processes):
                    metrics = run.task.evaluate(run.plain_model, run.data, run.processor,
                                                run.cfg, acc.device)
        run.train_mode()
        examples = metrics.pop("examples", None)
        self.last, self.last_step = metrics, st.step
        run.emit(EvalFinished(step=st.step, epoch=st.step / run.steps_per_epoch, metrics={
            f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}))
        improved = self._score(metrics)
        # The rows review reads describe the model the run ends with (see restore_best).
        if examples is not None and (improved or not run.cfg.train.restore_best):
            self._record_examples(examples, getattr(examples, "total", None)
                                  or len(run.data.validation))

    def _score(self, metrics: dict) -> bool:
        """Whether `metrics` improve on the best so far, counted in the run's state."""
        run = self.run
        st, watch = run.state, run.watch
        score = metrics.get(watch)
        if score is None:
            raise HubtuneError(
                f"train.early_stopping.metric {watch!r} is not computed for this task; use "
                f"one of {', '.join(k for k, v in metrics.items() if _scalar(v))}."
            )
        minimise = watch in run.task.minimise
        improved = st.best_metric is None or (score < st.best_metric if minimise else
                                              score > st.best_metric)
        if improved:
            st.best_metric, st.best_step, st.evals_without_gain = score, st.step, 0
            self.best = metrics
        else:
            st.evals_without_gain += 1
        return improved

    def _record_examples(self, examples, total: int) -> None:
        run = self.run
        if not run.accelerator.is_main_process:
            return
        run.emit(ValidationPredicted(step=run.state.step, examples=total,
                                     loss_kind=examples.loss_kind,
                                     rows=tuple(examples.rows(run.data.labels))))

    def stops_early(self) -> bool:
        """Whether early stopping ends the run after this evaluation (rank 0's word, on
        every rank); notes it when it does."""
        from engine.training.ranks import decided_by_rank_0

        run = self.run
        es, st = run.cfg.train.early_stopping, run.state
        if decided_by_rank_0(run.accelerator,
                             es is not None and st.evals_without_gain >= es.patience):
            run.emit(Note(f"Early stopping: no gain in {run.watch} for "
                          f"{st.evals_without_gain} evaluations"))
            return True
        return False

    def rolled_back(self, best_step_before: int) -> None:
        """A rollback restored an earlier position: the next step evaluates anew, and the
        best evaluation's metrics come again if the best step moved (as after a resume)."""
        if self.run.state.best_step != best_step_before:
            self.best = {}
        self.last_step = -1

    def restore_best(self) -> None:
        """Put back the weights of the best evaluation, from its (kept) checkpoint."""
        run = self.run
        st = run.state
        self.model_step = st.step
        if not run.cfg.train.restore_best or st.best_metric is None or st.best_step == st.step:
            return
        best = run.out_dir / "checkpoints" / f"step-{st.best_step}" / "model.safetensors"
        if not best.is_file():
            run.emit(Note(f"The best checkpoint (step {st.best_step}) is gone; keeping the "
                          "last weights", level="warning"))
            return
        from safetensors.torch import load_model

        load_model(run.plain_model, str(best))
        self.model_step = st.best_step
        run.emit(Note(f"Restored the best weights: step {st.best_step}, {run.watch} "
                      f"{st.best_metric:.4g} (the last evaluation had "
                      f"{self.last.get(run.watch, float('nan')):.4g})"))

    def kept_prefix(self) -> str:
        """'best' when the model the run keeps is its best evaluation's (train.restore_best),
        else 'final' (its last evaluation's): which of the summary's metrics are its result."""
        st = self.run.state
        if not self.best or st.best_metric is None:
            return "final"
        if self.model_step is not None:  # restore_best ran: the weights the run ended with
            return "best" if self.model_step == st.best_step else "final"
        return "best" if self.run.cfg.train.restore_best else "final"

    def summary(self) -> dict:
        """The run summary's evaluation part: the watched metric, the best and kept steps,
        the last and best metrics, and the kept evaluation's class report."""
        st, kept = self.run.state, self.kept_prefix()
        return {
            "watched_metric": self.run.watch,
            "best_step": st.best_step,
            "model_step": st.step if self.model_step is None else self.model_step,
            "kept_eval": kept,  # whose metrics are the run's result
            **{f"final_{k}": v for k, v in self.last.items() if _scalar(v)},
            **{f"best_{k}": v for k, v in self.best.items() if _scalar(v)},
            # Of the evaluation whose model the run keeps (restore_best), like review's rows.
            "class_report": (self.best if kept == "best" else self.last).get("class_report"),
        }


def _scalar(value) -> bool:
    """A metric that goes into the summary as final_/best_ (not a report or a table)."""
    return not isinstance(value, (dict, list, tuple))
