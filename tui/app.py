"""The hubtune Textual app: wiring only.

`make_app` builds the app for both the CLI and the tests. Nothing here
imports torch: the first paint must not wait for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from store import RunStore
from tui.background import background
from tui.messages import BackgroundFailed
from tui.screens.help import HelpScreen
from tui.screens.hub import HubScreen
from tui.screens.models import LocalModelsScreen
from tui.screens.new_run import NewRunScreen
from tui.screens.runs import RunsScreen

TOAST_LIMIT = 2000
"""Characters of a notification shown; a traceback a page long is cut."""


PREPARE_FORM_AFTER = 1.5
"""Seconds after start-up at which the new-run form is built out of sight (unless the
user has left the runs screen by then)."""


class HubtuneApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "hubtune"
    BINDINGS = [
        # The footer leads with these (tui.widgets.footer.ESSENTIAL_ACTIONS).
        Binding("question_mark", "help", "Help"),
        Binding("1", "switch_mode('runs')", "Runs"),
        Binding("2", "switch_mode('hub')", "Hub"),
        Binding("3", "switch_mode('new')", "New run"),
        Binding("4", "switch_mode('models')", "Models"),
        Binding("q", "quit", "Quit"),
        # `?` types into a text box: there F1 is the help key, and the footer shows it
        # instead (tui.widgets.footer.KeysFooter).
        Binding("f1", "help", "Help"),
        # Alt+number switches screens from anywhere, a text box included (and a terminal
        # that reads Esc then `1` typed quickly as Alt+1 still does what was meant); the
        # footer shows it only where the plain number keys type.
        Binding("alt+1", "switch_mode('runs')", "Screens", key_display="alt+1-4",
                priority=True),
        Binding("alt+2", "switch_mode('hub')", "Hub", show=False, priority=True),
        Binding("alt+3", "switch_mode('new')", "New run", show=False, priority=True),
        Binding("alt+4", "switch_mode('models')", "Models", show=False, priority=True),
        # A list or table takes these itself; from a text box they scroll what holds it.
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
    ]

    def __init__(self, store: RunStore, *, hub_endpoint: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.hub_endpoint = hub_endpoint
        from tui.engine_thread import EngineThread

        self._user_switched = False
        """Whether a screen other than the runs has been shown (`prepare_form` waits
        for none)."""
        self.engine = EngineThread(self)
        """Where plans, token counts and predictions run, one at a time."""
        for mode, screen in (("runs", lambda: RunsScreen(self.store)),
                             ("hub", lambda: HubScreen(self.hub_endpoint)),
                             ("new", lambda: NewRunScreen(self.store)),
                             ("models", LocalModelsScreen)):
            self.add_mode(mode, screen)

    def on_mount(self) -> None:
        self._exit_on_hangup()
        self.switch_mode("runs")
        if not self.is_headless:
            self.set_timer(PREPARE_FORM_AFTER, self.prepare_form)

    def switch_mode(self, mode: str):
        """Textual's, and once the mode's screen is mounted, its styles count as current
        (tui.compat.mark_styles_current): showing it again does not restyle the app. Asked
        through the screen's own queue, which it reads once it is mounted: nothing here
        waits for the mount."""
        from tui.compat import mark_styles_current

        self._user_switched = self._user_switched or mode != "runs"
        mounted = super().switch_mode(mode)
        self.screen.call_later(mark_styles_current, self.screen)
        return mounted

    def prepare_form(self) -> None:
        """Build the new-run form out of sight, once the runs are on screen.

        Its first showing builds ~100 widgets and styles them (about a second on a busy
        2-core box); afterwards a switch only shows it again (0.1-0.3 s). So the app
        switches to it and straight back, with the screen held still (`batch_update`):
        the form composes and mounts in its own task while the runs stay shown, and
        nothing flickers. Skipped once the user has switched screens: the build would
        then compete with what they asked for."""
        if self.current_mode != "runs" or self._user_switched:
            return
        with self.batch_update():
            self.switch_mode("new")
            self.switch_mode("runs")
        self._user_switched = False

    def _exit_on_hangup(self) -> None:
        """Quit when the terminal goes away (SSH dropped, tmux killed).

        SIGHUP only reaches the terminal's controlling process; under `make run`
        that is make, which does not pass it on, and the app would outlive its
        terminal, spinning on the dead tty. So besides handling SIGHUP, a timer
        checks that the controlling terminal still exists. Runs are untouched:
        they live in their own process sessions.
        """
        import asyncio
        import os
        import signal
        import threading

        def leave() -> None:
            self.exit()
            # If the event loop is wedged on the dead terminal, leave regardless.
            threading.Timer(3.0, os._exit, args=(0,)).start()

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, leave)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # no SIGHUP on this platform
        if not _has_terminal():
            return  # headless (tests, pipes): nothing to watch

        def check() -> None:
            if not _has_terminal():
                leave()

        self.set_interval(2.0, check)

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast shows its text as written, whoever asked for it (widgets and
        screens call this one): messages quote run names, hub ids and errors, and a
        stray `[/]` in one would raise while the toast renders. None of ours uses markup,
        so `markup` is ignored; control characters are shown as escapes."""
        from tui.safe_text import printable

        super().notify(printable(message, multiline=True, limit=TOAST_LIMIT),
                       title=printable(title, limit=80),
                       severity=severity, timeout=timeout, markup=False)

    def on_background_failed(self, msg: BackgroundFailed) -> None:
        """Every background job that raised ends here, as one toast (tui/background.py)."""
        self.notify(msg.message, severity="error", timeout=8)

    def action_page(self, direction: int) -> None:
        """Scroll the nearest scrolling container of the focused widget by a page (the
        new-run form, or the whole screen where the form and its preview stack)."""
        node = self.focused
        while node is not None and not getattr(node, "allow_vertical_scroll", False):
            node = node.parent
        if node is None or node is self.screen:
            return
        if direction > 0:
            node.scroll_page_down(animate=False)
        else:
            node.scroll_page_up(animate=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def new_run(self, *, model: str | None = None, config=None,
                      parent_id: int | None = None, run_on: str | None = None,
                      forked_from: str | None = None) -> None:
        """Open the new-run form, prefilled with a model or a whole config (a fork; of a
        remote's run `forked_from` NAME:ID, with its "run on" choice set to `run_on`)."""
        await self.switch_mode("new")
        self.screen.prefill(model=model, config=config, parent_id=parent_id)
        if config is not None:  # a fork runs where its run ran (tui/widgets/run_on.py)
            from tui.widgets.run_on import RunOn

            self.screen.query_one(RunOn).place_fork(run_on, forked_from)

    def show_run(self, run_id: int) -> None:
        """Go to the runs screen with `run_id` selected."""

        async def go() -> None:
            await self.switch_mode("runs")
            self.screen.select_run(run_id)

        self.run_worker(go(), group="navigate")

    def acting_on_runs(self) -> bool:
        """Whether a start, resume or delete (`act_on_run`) is still under way."""
        return any(w.group == "run-actions" and not w.is_finished for w in self.workers)

    @background(what="starting, resuming or deleting a run", group="run-actions")
    def act_on_run(self, act: Callable[[RunStore], str],
                   done: Callable[[], None] | None = None) -> None:
        """Start, resume or delete a run off the UI thread: `act` gets a store connection
        of this thread's own and returns the sentence to show; `done` then runs on the UI
        thread. A failure is one toast (tui/background.py) and `done` does not run."""
        store = RunStore(self.store.path)
        try:
            note = act(store)
        finally:
            store.close()
        self.call_from_thread(self.notify, note)
        if done is not None:
            self.call_from_thread(done)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's "Keys" (its key panel) beside our "Help" made two help entries.
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        yield SystemCommand("Runs", "Every recorded run, live", lambda: self.switch_mode("runs"))
        yield SystemCommand("Hub", "Search and download hub models and datasets",
                            lambda: self.switch_mode("hub"))
        yield SystemCommand("New run", "Configure and launch a fine-tune",
                            lambda: self.switch_mode("new"))
        yield SystemCommand("Local models", "The model cache: sizes, verify, delete",
                            lambda: self.switch_mode("models"))
        yield SystemCommand("Help", "Keys and what each screen does", self.action_help)
        for title, help_text, callback in getattr(screen, "palette_commands", list)():
            yield SystemCommand(title, help_text, callback)


def _has_terminal() -> bool:
    """Whether this process still has a controlling terminal (it loses it on hangup)."""
    import os

    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def make_app(*, store: RunStore | None = None, hub_endpoint: str | None = None) -> HubtuneApp:
    """The app over `store` (default: the database in the data directory)."""
    return HubtuneApp(store or RunStore(), hub_endpoint=hub_endpoint)
