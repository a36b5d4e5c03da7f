"""Marking a completed run's wrong examples as mislabelled, in the run panel's errors view.

Lists the wrong examples of the errors view that sit in the run's training data (its
validation rows were split off the training file, so a row there is a training row);
m on one marks it mislabelled: the next cleaned copy of that data (the new-run form's
audit, or `hubtune data audit --write-clean`) gives it the label the model predicted,
through the marks of engine/audit/marks.py. m again takes the mark back. Labels and
predictions are the data's own text: Text, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine.tasks import REGISTRY
from tui.safe_text import printable


class ErrorMarks(OptionList):
    BINDINGS = [Binding("m", "toggle_mark", "Mislabelled")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cfg = None
        """The run's engine.core.config.RunConfig, when its rows are training rows."""
        self.examples: list = []
        self.marks: dict[int, str | None] = {}

    def show(self, examples: list, config: dict | None) -> None:
        """The wrong examples of `examples` (engine.trained.review.ReviewedExample) of a run
        with `config`; hidden when none can be marked, with the reason as its title."""
        from engine.audit.marks import load_marks
        from engine.core.config import RunConfig

        self.clear_options()
        self.cfg, self.examples = None, []
        reason = None
        cfg = RunConfig.from_dict(config) if config else None
        if cfg is None or cfg.data.validation:
            reason = ("Validation rows of their own file: marks go to training data, which "
                      "this run validated apart from." if cfg is not None else None)
        elif REGISTRY[cfg.head.task].images:
            reason = "Image examples are marked in the new-run form's audit."
        else:
            self.cfg = cfg
            self.examples = [e for e in examples if not e.correct and e.row is not None]
            self.marks = load_marks(cfg)
            self.add_options([self._option(e) for e in self.examples])
        self.border_title = (reason or "m marks an example mislabelled (the next cleaned copy "
                             "takes the prediction)")
        self.set_class(not self.examples and reason is None, "-hidden")

    def _option(self, e) -> Option:
        marked = self.marks.get(e.row, False)
        flag = "✎ " if marked is not False else "  "
        return Option(Text(f"{flag}row {e.row}: {printable(e.label)[:30]} → "
                           f"{printable(e.predicted)[:30]}"), id=str(e.row))

    def action_toggle_mark(self) -> None:
        from engine.audit.marks import mark, unmark

        if self.cfg is None or self.highlighted is None or not self.examples:
            return
        e = self.examples[self.highlighted]
        if self.marks.get(e.row, False) is False:
            self.marks = mark(self.cfg, e.row, e.predicted)
            self.notify(f"Row {e.row} marked mislabelled: the next cleaned copy labels it "
                        f"{printable(e.predicted)[:40]}.")
        else:
            self.marks = unmark(self.cfg, e.row)
        self.replace_option_prompt_at_index(self.highlighted, self._option(e).prompt)
