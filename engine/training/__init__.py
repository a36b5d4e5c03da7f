"""The training loop (`loop`), its checkpoints, optimizer groups and schedules, the
cached features of a frozen backbone, the tokenised-data cache and the pre-launch plan.
Built on every package below it; only `engine.launch.worker` and `engine.trained.predict` sit above.
"""
