"""Tests of the TUI (Textual pilot, snapshots, tmux)."""
