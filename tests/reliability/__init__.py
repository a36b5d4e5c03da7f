"""Reliability tests: bad inputs, lost processes, load, several ranks and nodes."""
