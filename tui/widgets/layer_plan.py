"""The new-run form's layer plan: the model's groups as a tree with freeze toggles.

Fed an `engine.training.plan.Plan` (computed in a thread on the meta device: no
weights are read). Each node is a layer group with its parameter count,
whether it trains and its peak learning rate; Enter on a node flips it,
which the form turns into a `modules` freezing policy with patterns for the
frozen groups, and `l` sets the group's own rate (train.group_learning_rates).
Below the tree: trainable and frozen totals, the peak-memory estimate with its
margin and its parts, and the estimate of every later stage.
"""

from __future__ import annotations

import os

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static, Tree

from tui.formatting import human_bytes, literal
from tui.safe_text import printable


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def group_patterns(groups, frozen: set[str]) -> list[str]:
    """fnmatch patterns that freeze exactly the parameters of the `frozen` groups.

    A group whose parameters share a dotted prefix no other group uses becomes
    `prefix.*`; any other group is listed parameter by parameter.
    """
    everything = [p for g in groups for p in g.params]
    patterns = []
    for g in groups:
        if g.name not in frozen:
            continue
        prefix = os.path.commonprefix(list(g.params))
        prefix = prefix[: prefix.rfind(".") + 1] if "." in prefix else ""
        own = prefix and all(p in g.params for p in everything if p.startswith(prefix))
        patterns += [f"{prefix}*"] if own else list(g.params)
    return patterns


MEMORY_TERMS = (("weights", "weights"), ("gradients", "grads"),
                ("tied_gradients", "tied-weight sum"), ("optimizer", "AdamW"),
                ("activations", "activations"), ("logits", "loss buffers"),
                ("autocast_cache", "autocast cache"), ("ddp_buckets", "DDP buckets"),
                ("features", "cached features"), ("cuda_context", "CUDA context"))


def memory_terms(memory) -> str:
    """The parts of a peak-memory estimate on one line (zero parts left out)."""
    text = " + ".join(f"{label} {human_bytes(getattr(memory, key))}"
                      for key, label in MEMORY_TERMS if getattr(memory, key))
    if memory.overlap:
        text += f" − {human_bytes(memory.overlap)} never live at once"
    return text


class LayerPlan(Vertical):
    BINDINGS = [Binding("l", "set_rate", "Group LR")]

    class Toggled(Message):
        """The user flipped a group; `frozen` is the new set of frozen groups."""

        def __init__(self, frozen: set[str], patterns: list[str]) -> None:
            super().__init__()
            self.frozen, self.patterns = frozen, patterns

    class RateSet(Message):
        """The user gave a group its own peak learning rate (None: back to the rules)."""

        def __init__(self, group: str, rate: float | None) -> None:
            super().__init__()
            self.group, self.rate = group, rate

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan = None

    def compose(self) -> ComposeResult:
        yield Static("The layer plan appears when the model and data are valid.",
                     id="plan-summary")
        yield Tree("model", id="layer-tree")

    def show_error(self, message: str) -> None:
        self.plan = None
        self.query_one("#plan-summary", Static).update(f"[dim]No plan: {literal(message)}[/dim]")
        self.query_one(Tree).clear()

    def show(self, plan, cfg) -> None:
        self.plan = plan
        tree = self.query_one(Tree)
        tree.clear()
        total = sum(plan.sizes.values())
        # Labels are Text, never markup: the model id and group names come from the
        # model's own files (a str label is parsed as Rich markup).
        tree.root.set_label(Text.assemble(printable(cfg.model.id, limit=80),
                                          f"  {_count(total)} parameters"))
        own = cfg.train.group_learning_rates
        for row in plan.group_table():
            trains = row["trainable"] > 0
            label = Text.assemble(
                f"{printable(row['name'], limit=40):<12} {_count(row['params']):>7}  ",
                ("● trains", "green") if trains else ("❄ frozen", "cyan"),
                " (partly)" if trains and row["frozen"] else "")
            if trains and row["learning_rate"] is not None:
                style = "b" if row["name"] in own else "dim"
                label.append("  ")
                label.append(f"lr {row['learning_rate']:.2g}", style)
            tree.root.add_leaf(label, data=row["name"])
        tree.root.expand()
        first = plan.stages[0].memory
        lines = [f"[b]trainable[/b] {_count(plan.freeze.trainable_count)}  ·  "
                 f"[b]frozen[/b] {_count(plan.freeze.frozen_count)}  ·  "
                 f"peak ≈ {human_bytes(first.total)} (±{round(first.margin * 100)}%) "
                 f"({plan.precision}, batch {literal(plan.batch_text.replace(' x ', ' × '))}"
                 f"{', checkpointed' if first.gradient_checkpointing else ''})",
                 f"[dim]{memory_terms(first)}[/dim]"]
        for s in plan.stages[1:]:
            lines.append(f"  stage {s.stage} from {s.starts}: {_count(s.trainable)} train, "
                         f"≈ {human_bytes(s.memory.total)}")
        lines.append("[dim]Enter on a group freezes or unfreezes it · l sets its learning "
                     "rate[/dim]")
        self.query_one("#plan-summary", Static).update("\n".join(lines))

    def action_set_rate(self) -> None:
        node = self.query_one(Tree).cursor_node
        if self.plan is None or node is None or node.data is None:
            self.notify("Move to a layer group first.", severity="warning")
            return
        from tui.screens.edit import EditScreen

        group = node.data
        current = self.plan.rates.get(group)

        def done(value: str | None) -> None:
            if value is None:
                return
            text = value.strip()
            if not text:
                self.post_message(self.RateSet(group, None))
                return
            try:
                rate = float(text)
            except ValueError:
                self.notify(f"{text!r} is not a number; type a rate like 2e-5, or nothing to "
                            "use the form's rules.", severity="error")
                return
            if not rate > 0:
                self.notify("A learning rate must be more than 0; freeze the group (Enter) "
                            "to keep it fixed.", severity="error")
                return
            self.post_message(self.RateSet(group, rate))

        self.app.push_screen(EditScreen(
            f"Peak learning rate of {group} (empty: use the form's rules)",
            f"{current:g}" if current is not None else "", "e.g. 2e-5"), done)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        event.stop()
        if self.plan is None or event.node.data is None:
            return
        frozen = {row["name"] for row in self.plan.group_table() if row["trainable"] == 0}
        frozen ^= {event.node.data}
        self.post_message(self.Toggled(frozen, group_patterns(self.plan.freeze.groups, frozen)))
