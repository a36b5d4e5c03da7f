"""The run queue's decisions: the machine's slots, which are free, and which waiting
runs start on which of them. Torch-free, so the CLI and the TUI can import it.

A slot is a physical GPU (`gpu0`, `gpu1`, ... by NVML index) or, on a machine without
one, a CPU slot (`cpu0`, ...; `HUBTUNE_CPU_SLOTS`, default 1). A run holds its slots
from the moment they are given until it ends, whatever the outcome. A GPU no hubtune
run holds counts busy when another process uses more memory or utilisation than the
thresholds (`HUBTUNE_GPU_BUSY_MIB`, default 1024; `HUBTUNE_GPU_BUSY_UTIL`, percent,
default 10): another user's job.

The queue is strict first in, first out: a run never jumps one ahead of it that waits
for more slots, so big runs are not starved. Nothing here launches a worker (that is
`engine.launch.start.start_queued`) and nothing here writes SQL: the store assigns inside
one transaction what `choose_waiting` picks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.cluster.gpus import GpuMonitor, GpuReading
from engine.core.errors import HubtuneError

if TYPE_CHECKING:  # the store is handed in by whoever holds one
    from store import RunStore
    from store.queue import Assigned, QueueState

CPU_SLOTS_ENV = "HUBTUNE_CPU_SLOTS"
BUSY_MIB_ENV = "HUBTUNE_GPU_BUSY_MIB"
BUSY_UTIL_ENV = "HUBTUNE_GPU_BUSY_UTIL"
MIB = 1 << 20


@dataclass(frozen=True)
class QueueSettings:
    """How many CPU slots a GPU-less machine has, and when another user's GPU is busy."""

    cpu_slots: int = 1
    """Runs at once on a machine without a GPU."""
    busy_mib: int = 1024
    """A GPU no hubtune run holds is busy above this much memory in use (MiB)."""
    busy_utilisation: int = 10
    """... or above this utilisation (percent)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueueSettings:
        environ = os.environ if environ is None else environ
        return cls(cpu_slots=_env_int(environ, CPU_SLOTS_ENV, cls.cpu_slots, 1, 1024),
                   busy_mib=_env_int(environ, BUSY_MIB_ENV, cls.busy_mib, 0, 1 << 30),
                   busy_utilisation=_env_int(environ, BUSY_UTIL_ENV, cls.busy_utilisation, 0,
                                             100))


@dataclass(frozen=True)
class Slot:
    """One slot of the machine as it stands."""

    name: str
    """`gpu<NVML index>` or `cpu<n>`."""
    index: int
    held_by: tuple[int, ...] = ()
    """Runs holding it (more than one only when a plain `train` started regardless)."""
    busy: bool = False
    """Another process (not a hubtune run holding it) uses it beyond the thresholds."""
    reading: GpuReading | None = None
    """What NVML said of the GPU; None for a CPU slot."""

    @property
    def kind(self) -> str:
        return "gpu" if self.reading is not None or self.name.startswith("gpu") else "cpu"

    @property
    def free(self) -> bool:
        return not self.held_by and not self.busy

    def to_json(self) -> dict:
        r = self.reading
        return {
            "slot": self.name, "kind": self.kind, "index": self.index,
            "name": r.name if r else None,
            "memory_free": r.memory_free if r else None,
            "memory_total": r.memory_total if r else None,
            "utilisation": r.utilisation if r else None,
            "processes": list(r.processes) if r and r.processes is not None else None,
            "held_by": list(self.held_by), "busy": self.busy, "free": self.free,
        }


def machine_slots(monitor: GpuMonitor | None = None, settings: QueueSettings | None = None,
                  releasing: Iterable[str] = ()) -> list[Slot]:
    """Every slot of the machine with its busy flag, before the store says who holds it.

    `releasing`: slots of a run that has just ended in this process, whose own memory
    is still on the GPU for a moment; they are never taken for another user's.
    """
    monitor = monitor or GpuMonitor()
    settings = settings or QueueSettings.from_env()
    if not monitor.available:
        return [Slot(f"cpu{i}", i) for i in range(settings.cpu_slots)]
    releasing = set(releasing)
    return [Slot(f"gpu{r.index}", r.index, reading=r,
                 busy=f"gpu{r.index}" not in releasing and _busy(r, settings))
            for r in monitor.read(range(monitor.count), processes=True)]


def read_slots(store: RunStore, monitor: GpuMonitor | None = None,
               settings: QueueSettings | None = None) -> list[Slot]:
    """The machine's slots with the runs holding each (`hubtune queue slots`)."""
    held = store.queue_state().held
    out = []
    for slot in machine_slots(monitor, settings):
        holders = held.get(slot.name, ())
        out.append(Slot(slot.name, slot.index, holders, slot.busy and not holders,
                        slot.reading))
    return out


def choose_waiting(state: QueueState, slots: Sequence[Slot]) -> list[tuple[int, tuple[str, ...]]]:
    """The waiting runs to start now and their slots: first in line first, each while
    enough slots are free, stopping at the first that has to wait (strict order)."""
    if state.paused:
        return []
    free = [s.name for s in slots if not s.busy and s.name not in state.held]
    picked = []
    for run in state.waiting:
        if run.slots_wanted > len(free):
            break
        picked.append((run.id, tuple(free[:run.slots_wanted])))
        free = free[run.slots_wanted:]
    return picked


def choose_now(state: QueueState, slots: Sequence[Slot], run_id: int,
               wanted: int) -> list[tuple[int, tuple[str, ...]]]:
    """Slots for a run that starts at once (a plain `train`, a resume): free ones first,
    then those with the fewest runs on them; it starts either way, but holds them so
    queued runs wait for it."""
    ranked = sorted(slots, key=lambda s: (s.busy, len(state.held.get(s.name, ())), s.index))
    return [(run_id, tuple(s.name for s in ranked[:wanted]))]


def slots_wanted(processes: int, monitor: GpuMonitor | None = None) -> int:
    """Slots a run asks for: a GPU per process on a GPU machine, one CPU slot otherwise."""
    monitor = monitor or GpuMonitor()
    return processes if monitor.available else 1


def check_fits(wanted: int, monitor: GpuMonitor | None = None,
               settings: QueueSettings | None = None) -> None:
    """Refuse to queue a run that needs more slots than the machine has: it would wait
    for ever."""
    slots = machine_slots(monitor, settings)
    if wanted > len(slots):
        kind = "GPUs" if slots and slots[0].kind == "gpu" else "CPU slots"
        raise HubtuneError(f"The run needs {wanted} {kind} but this machine has {len(slots)}; "
                           f"queue it with --processes {len(slots)} or fewer.")


def assign_waiting(store: RunStore, *, monitor: GpuMonitor | None = None,
                   settings: QueueSettings | None = None,
                   releasing: Iterable[str] = ()) -> list[Assigned]:
    """Give free slots to the runs waiting in line (atomically: two processes doing this
    at once never give one slot twice); the caller launches them."""
    if not store.has_waiting():
        return []
    slots = machine_slots(monitor, settings, releasing)
    return store.assign_slots(lambda state: choose_waiting(state, slots))


def take_slots(store: RunStore, run_id: int, wanted: int, *,
               monitor: GpuMonitor | None = None, settings: QueueSettings | None = None,
               environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Record the slots of a run that starts at once. Where CUDA_VISIBLE_DEVICES is set
    in `environ` it already names the GPUs, which the run then holds."""
    monitor = monitor or GpuMonitor()
    environ = os.environ if environ is None else environ
    slots = machine_slots(monitor, settings)
    if monitor.available and environ.get("CUDA_VISIBLE_DEVICES") is not None:
        named = {f"gpu{d}" for d in monitor.visible(environ["CUDA_VISIBLE_DEVICES"])
                 if isinstance(d, int)}
        slots = [s for s in slots if s.name in named] or slots
    done = store.assign_slots(lambda state: choose_now(state, slots, run_id, wanted))
    return done[0].devices if done else ()


def cuda_environment(devices: Sequence[str]) -> dict[str, str]:
    """What to set in a worker's environment for its GPU slots (nothing for CPU slots):
    CUDA numbers the GPUs as NVML does only in PCI bus order."""
    gpus = [d[3:] for d in devices if d.startswith("gpu")]
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@dataclass(frozen=True)
class QueueEntry:
    """A run in `hubtune queue ls`."""

    position: int | None
    """1 for the next to start; None once it holds slots."""
    run_id: int
    name: str
    status: str
    """queued, starting (slots given, worker not yet training) or running."""
    slots_wanted: int
    devices: tuple[str, ...]
    waiting_for: str | None
    """What it waits for, in words; None when it does not wait."""
    sweep_id: str | None

    def to_json(self) -> dict:
        return {"position": self.position, "id": self.run_id, "name": self.name,
                "status": self.status, "slots_wanted": self.slots_wanted,
                "devices": list(self.devices), "waiting_for": self.waiting_for,
                "sweep_id": self.sweep_id}


def queue_entries(store: RunStore, slots: Sequence[Slot]) -> list[QueueEntry]:
    """The runs holding slots, then the waiting ones in order with what each waits for."""
    paused = store.queue_paused()
    holding = [r for r in store.list_runs(status="running", limit=None) if r.devices]
    holding += [r for r in store.list_runs(status="queued", limit=None) if r.devices]
    out = [QueueEntry(None, r.id, r.name, "running" if r.status == "running" else "starting",
                      r.slots_wanted or len(r.devices), r.devices, None, r.sweep_id)
           for r in sorted(holding, key=lambda r: r.id)]
    free = sum(1 for s in slots if s.free)
    kind = "GPU" if slots and slots[0].kind == "gpu" else "CPU slot"
    for position, run_id in enumerate(store.waiting_ids(), 1):
        run = store.get_run(run_id)
        wanted = run.slots_wanted or 1
        if paused:
            why = "the queue to be resumed (hubtune queue resume)"
        elif position > 1:
            why = f"{position - 1} run{'s' if position > 2 else ''} ahead of it"
        else:
            why = f"{wanted} free {kind}{'s' if wanted > 1 else ''} ({free} free now)"
        out.append(QueueEntry(position, run.id, run.name, "queued", wanted, (), why,
                              run.sweep_id))
    return out


def _busy(reading: GpuReading, settings: QueueSettings) -> bool:
    used = reading.memory_used
    if used is not None and used > settings.busy_mib * MIB:
        return True
    return reading.utilisation is not None and reading.utilisation > settings.busy_utilisation


def _env_int(environ: Mapping[str, str], name: str, default: int, least: int,
             most: int) -> int:
    """A numeric knob from the environment, within [least, most]: a slot per unit is
    built, so a huge value would exhaust memory rather than mean something."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    # int() of a long digit string is slow (and refused past 4,300 digits): out of range.
    value = int(text) if re.fullmatch(r"[+-]?[0-9]{1,20}", text) else None
    if value is None or not least <= value <= most:
        shown = repr(raw) if len(raw) <= 40 else f"{len(raw):,} characters"
        raise HubtuneError(f"{name} must be a whole number from {least} to {most:,}, got "
                           f"{shown}; fix or unset it.")
    return value
