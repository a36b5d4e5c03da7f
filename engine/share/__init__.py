"""Sharing runs where people already look: TensorBoard, MLflow, trackio and W&B.

`trackers` is the small interface every tracker adapter meets and the registry of them;
`to_tensorboard`, `to_mlflow`, `to_wandb` and `to_trackio` are the adapters, each writing
through that tool's own library in its own offline format and importing it only when
asked for (the extras of the same names); `export` writes recorded runs from the store
(`hubtune runs export --to`); `live` reports a training run as it goes
(`train.report_to`), from the worker's store thread, never the training thread.
"""
