"""What the ranks of a data-parallel run agree on once the data is read: that they read
the same data, and so take the same number of steps.

A node whose copy of the data differs (fewer rows, another version) would otherwise
train out of step with the others and hang in a collective when its batches run out
first; here every rank fails at once with a sentence naming the node and the difference.
Collectives only with several processes; never touches the store.
"""

from __future__ import annotations

import hashlib

from engine.core.errors import HubtuneError


def data_digest(examples) -> str:
    """A short fingerprint of a split as read: its examples' lengths and, where the
    split has them, its labels (cheap, yet different for another version of a file)."""
    import numpy as np

    digest = hashlib.sha256()
    digest.update(np.asarray(list(examples.lengths), dtype=np.int64).tobytes())
    labels = getattr(examples, "labels", None)
    if labels is not None:
        try:
            digest.update(np.asarray(labels, dtype=np.float64).tobytes())
        except (TypeError, ValueError):  # labels that are not numbers: their text
            digest.update(repr(list(labels)).encode())
    return digest.hexdigest()[:16]


def check_same_data(run) -> None:
    """Before the first step: every rank read the same data and takes the same steps, or
    every rank raises the same sentence. `run` is the prepared training loop."""
    if run.accelerator.num_processes <= 1:
        return
    from engine.cluster.rendezvous import differs_from, gather_digests

    found = gather_digests({
        "train": len(run.data.train), "validation": len(run.data.validation),
        "data": (data_digest(run.data.train), data_digest(run.data.validation)),
        "steps": run.steps_per_epoch, "batches": run.batches_per_epoch,
        "total": run.total_steps})
    first = found[0]
    for rank, other in enumerate(found[1:], start=1):
        who, whose = differs_from(rank, other["node"])
        if other["data"] != first["data"]:
            raise HubtuneError(
                f"{who} data differs from {whose} ({other['train']} training and "
                f"{other['validation']} validation examples, {other['steps']} steps an "
                f"epoch, against {first['train']}, {first['validation']} and "
                f"{first['steps']}); give every node the same data files.")
        if (other["batches"], other["total"]) != (first["batches"], first["total"]):
            raise HubtuneError(
                f"{who} data gives {other['total']} steps ({other['batches']} batches an "
                f"epoch) against {whose} {first['total']} ({first['batches']}); every node "
                "must take the same steps, so give them the same data and settings.")


def decided_by_rank_0(accelerator, decision: bool) -> bool:
    """Rank 0's `decision`, on every rank (one small broadcast): a choice that ends the run,
    such as early stopping, is made once, so no rank can go on alone into a collective."""
    if accelerator.num_processes <= 1:
        return decision
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list([decision], from_process=0)[0])
