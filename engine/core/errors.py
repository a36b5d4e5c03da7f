"""hubtune's own error type.

Everything a user can cause (a bad config, a missing file, an unknown model)
surfaces as a `HubtuneError` whose message is one plain sentence naming the
problem and what to do. The CLI prints it without a traceback; the TUI shows
it as a notification. Nothing here may import torch or textual.
"""

from __future__ import annotations


class HubtuneError(Exception):
    """A problem the user can fix; `str(err)` is the message to show."""


class ConfigError(HubtuneError):
    """A run config that cannot be used as written."""


class DataError(HubtuneError):
    """A dataset file that is missing, unreadable or does not fit the task."""


class ModelError(HubtuneError):
    """A model reference that cannot be resolved or loaded."""
