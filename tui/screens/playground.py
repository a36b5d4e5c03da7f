"""The playground: type an input, see what a completed run's model makes of it.

The model loads once on the app's engine thread (torch is imported there,
never at start-up), and every prediction runs there too, so the screen stays
responsive while a big model thinks.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from store import Run
from tui.formatting import literal
from tui.messages import Predicted
from tui.widgets.footer import KeysFooter


class PlaygroundScreen(ModalScreen[None]):
    """Esc closes it; Enter predicts."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run
        self._predictor = None

    def compose(self) -> ComposeResult:
        with Vertical(id="playground-box"):
            yield Label(f"[b]Playground[/b]: run #{self.run.id} {literal(self.run.name, 60)} "
                        f"({literal(self.run.task)}), Esc closes", id="playground-title")
            yield Input(placeholder=_prompt(self.run.task), id="playground-input")
            yield Static("", id="playground-output")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#playground-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        self.query_one("#playground-output", Static).update(
            "Loading the model…" if self._predictor is None else "Thinking…")
        self.app.engine.submit(lambda: self._predict(text), to=self)

    def _predict(self, text: str) -> Predicted:
        """On the app's engine thread: the model loads once, then each input runs."""
        from engine.core.errors import HubtuneError

        try:
            if self._predictor is None:
                from engine.trained.predict import Predictor

                self._predictor = Predictor(Path(self.run.output_dir or "") / "model",
                                            self._placement())
            prediction = self._predictor.predict([text])[0]
        except HubtuneError as exc:
            return Predicted(text, None, str(exc))
        except Exception as exc:  # a model that cannot run this input: say so, stay open
            return Predicted(text, None, f"{type(exc).__name__}: {exc}")
        return Predicted(text, describe(prediction))

    def _placement(self):
        """On the engine thread: a GPU no run holds, in the run's precision. The store is
        opened here for this one read (a connection belongs to the thread that opened it)."""
        from engine.trained.predict import place_for_run
        from store import RunStore

        store = RunStore(self.app.store.path)
        try:
            return place_for_run(store, self.run.config)
        finally:
            store.close()

    def on_predicted(self, msg: Predicted) -> None:
        out = self.query_one("#playground-output", Static)
        if msg.error:
            out.update(f"[red]{literal(msg.error)}[/red]")
            return
        out.update("\n".join(msg.lines or []))


def _prompt(task: str | None) -> str:
    """What the run's head takes as input (its registration's prompt; torch-free)."""
    from engine.tasks import REGISTRY

    registration = REGISTRY.get(task or "")
    return registration.prompt if registration is not None else "A text to classify"


def describe(p) -> list[str]:
    """A prediction as lines of markup, as its task adapter says it is shown
    (`Prediction.shown_as`): the answer, then the scores as bars."""
    label = literal(p.label) if p.label is not None else ""
    shown_as = getattr(p, "shown_as", "labels")
    if shown_as == "value":
        return [f"[b]{p.score:.4f}[/b]"]
    if shown_as == "vector":
        dims = list(p.scores.values())
        head = ", ".join(f"{v:+.3f}" for v in dims[:6])
        return [f"[b]{len(dims)}-dimensional vector[/b], norm {p.score:.3f}",
                literal(f"[{head}, …]")]
    if shown_as == "text":  # generated text keeps its lines
        return [f"[b]{literal(p.label or '', multiline=True)}[/b]"]
    if shown_as == "answer":
        return [f"answer: [b]{label or '(no answer found)'}[/b]  (span score {p.score:.2f})"]
    if shown_as == "tags":
        return [" ".join(_tagged(pair) for pair in (p.label or "").split())]
    lines = [f"[b]{label}[/b]  {p.score:.3f}"]
    for name, score in sorted(p.scores.items(), key=lambda kv: -kv[1])[:8]:
        bar = "█" * round(score * 30)
        lines.append(f"{literal(f'{name[:20]:<20}')} {bar:<30} {score:.3f}")
    return lines


def _tagged(pair: str) -> str:
    """'word/TAG' as markup, the tag dimmed; a piece with no tag is shown as it is."""
    word, slash, tag = pair.rpartition("/")
    return f"{literal(word)}[dim]/{literal(tag)}[/dim]" if slash else literal(pair)
