"""The help screen: what each key does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui.widgets.footer import KeysFooter

HELP = """\
# hubtune

Fine-tune Hugging Face hub models from the terminal. Runs train in their own
process: closing this window or losing SSH never stops them, and reopening
hubtune shows them live again.

| Key | Does |
| --- | --- |
| `1`-`4` | Runs, Hub, New run, Local models |
| **Runs** | |
| `↑` `↓` | Move between runs |
| `/` | Search runs (name, model, task, dataset, tags, notes); `sweep:ID` lists one sweep; `host:NAME` one remote's runs (`host:local`: this machine's) |
| `Esc` | Clear the search |
| `o` | Sort: newest first, name, status, model, task, result (the kept model's metric) |
| `v` | Show only running / completed / failed / stopped / interrupted / queued runs, or all |
| `space` | Mark / unmark a run for comparison |
| `c` | Compare the marked runs: differing config keys, metrics, loss curves |
| `p` | Playground: type an input and see the completed run's prediction |
| `t` / `n` | Edit the run's tags (comma-separated) / its note |
| `f` | Fork: the new-run form prefilled from this run; the parent is recorded |
| `R` | Resume a stopped or interrupted run from its last checkpoint |
| `E` | Export the completed run: a folder, ONNX (and int8), a push to the hub |
| `s` | Stop the selected run, or take a queued one out of the queue (asks first) |
| `x` / `Delete` | Delete the selected run and its files (asks first) |
| `d` | Run panel: details (parent run and what changed, tags, notes, output folder, per-class scores, config); again: the curves |
| `e` | Run panel: errors (the validation examples the kept model gets most wrong); again: the curves |
| `PgUp` `PgDn` | Scroll the run panel's details or errors |
| `r` | Read the runs again now (the list also follows new runs by itself) |
| **Queue** | Status of a queued run: place · what it waits for (`#2 · gpu1`) |
| `T` | Move the queued run to the top of the queue |
| `Shift+↑` `K` | Move the queued run up the queue |
| `Shift+↓` `J` | Move the queued run down the queue |
| `P` | Pause / resume the queue (running runs go on; the title says when paused) |
| `g` | List only the selected run's sweep (★ marks its best run); again: every run |
| `G` | Compare every run of the selected run's sweep, best first |
| **Remotes** | With remotes (`hubtune remote add`), their runs are listed too, with a Host column; one that cannot be reached is named in the title, tried again by itself |
| `s` / `R` (remote run) | Stop / resume it on its machine; its panel shows its record (curves are not followed over SSH yet) |
| **Compare** | |
| `PgUp` `PgDn` `Home` `End` | Scroll the page: the config table, then the loss and validation curves |
| `e` | Examples: where two runs on the same data disagree, each one's prediction, who is right |
| `Esc` / `q` | Back to the runs |
| **Hub** | |
| `t` | Switch between models and datasets |
| `/` | Search the hub (as you type; filters for task and sort beside it) |
| `Esc` | From the search box to the results |
| `d` | Download the selected model (safetensors, config, tokenizer) or dataset (the chosen subset) |
| `c` | Cancel the download; nothing partial is kept |
| `u` | Use it: a new run with this model, or with this dataset (and subset) as its training data |
| **Local models** | |
| `u` | Use the model in a new run |
| `v` | Verify every cached file against its hash |
| `x` / `Delete` | Delete the model from the cache (asks first) |
| `r` | Look through the cache again |
| **New run** | |
| `Ctrl+O` | Pick the training file (or image folder) from a directory tree |
| `f` / `Backspace` (picker) | Pick the highlighted folder / go up to the parent folder |
| `Enter` (layer tree) | Freeze or unfreeze a group of the model |
| `l` (layer tree) | Set the group's own peak learning rate (empty: the form's rules) |
| `Esc` | Leave the field, so `1`-`4` switch screens |
| `Ctrl+R` | Launch (enabled when every field is valid) |
| `Ctrl+T` | Queue: record the run, start it when a slot (GPU or CPU) is free |
| `F5` | Sweep…: queue a grid, random or TPE sweep over the form's config (its **Sweep…** button) |
| `Ctrl+L` / `Ctrl+S` | Load (or `Enter` in its path) / save the form as a YAML config |
| `F2` / `F3` | Go to the data preview / the layer plan (below the form when narrow) |
| `F4` | Audit the form's data: likely label errors, duplicates, leaks (its **Audit data** button) |
| `d` / `r` / `k` (audit table) | Drop the suspect / give it the suggested label / keep it |
| **Everywhere** | |
| `Ctrl+P` | Command palette: every action, the queue's and sweeps' included, by name |
| `PgUp` / `PgDn` | Scroll a page, also from a text box (a list or table pages itself) |
| `Alt+1`-`Alt+4` | Switch screens from anywhere, a text box included |
| `?` / `F1` | This help (`F1` also from a text box) |
| `q` | Quit (runs keep going) |

The footer shows the keys used most; this page and the command palette have them all.
Runs started from the command line (`hubtune train CONFIG`) appear here at once.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)
        yield KeysFooter()
