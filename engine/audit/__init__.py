"""Auditing labelled data before training (`hubtune data audit`): likely label errors,
duplicates, train/validation leaks, degenerate inputs and rare labels (`findings`).
Needs the `audit` extra (cleanlab, scikit-learn).
"""
