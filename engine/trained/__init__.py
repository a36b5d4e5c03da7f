"""Using a trained run: predictions for single inputs and whole files (`predict`), the
review of its validation examples (`review`) and its export as a folder that loads
without hubtune (`export`). Each asks the run's task adapter (engine.tasks) what its
task does; none names a task. Reads a run's folder and config, never the store.
"""
