"""Run rules, plain Python over store records: which status allows what (`lifecycle`),
fork and resume lineage (`lineage`), the queue's slots and who starts next (`queue`),
sweep points and their ranking (`sweep`). No torch.
"""
