"""Using a trained run: predictions for single inputs and whole files (`predict`,
`batch_predict`) and the review of its validation examples (`review`). Reads a run's
folder and config, never the store.
"""
