"""Trackers by name: `make_tracker("mlflow", folder)`. Imports an adapter only when it is
asked for (the adapter imports its library only when it starts)."""

from __future__ import annotations

from pathlib import Path

from engine.share.trackers import TRACKERS, Tracker, TrackerError


def make_tracker(name: str, folder: Path) -> Tracker:
    """A tracker writing under `folder` (its log folder, file store or data folder)."""
    if name == "tensorboard":
        from engine.share.to_tensorboard import TensorBoardTracker as cls
    elif name == "mlflow":
        from engine.share.to_mlflow import MlflowTracker as cls
    elif name == "wandb":
        from engine.share.to_wandb import WandbTracker as cls
    elif name == "trackio":
        from engine.share.to_trackio import TrackioTracker as cls
    else:
        raise TrackerError(f"There is no tracker called {name!r}; the trackers are "
                           f"{', '.join(TRACKERS)}.")
    return cls(Path(folder))
