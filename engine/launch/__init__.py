"""Launching runs: the only floor that starts processes and writes a run's progress.

`start` records a run and spawns its worker process (alone, under torchrun, or queued);
`worker` is that process (`python -m engine.launch.worker RUN_ID`); `sink` turns the
engine's events into batched store writes; `resume` picks the checkpoint a resume
continues from; `ranks_failure` carries a failing rank's reason to rank 0; `nodes`
launches runs that span machines.
"""
