"""What a hub call can fail with: each carries the sentence the user sees."""

from __future__ import annotations

from engine.core.errors import HubtuneError


class HubError(HubtuneError):
    """The hub could not answer; the message says why and what to do."""


class DownloadCancelled(HubError):
    """A download stopped because its stop event was set."""


class RepoNotFound(HubError):
    """No such model on the hub (or it is private and no token was given)."""


class RevisionNotFound(HubError):
    """The model exists but not at that branch, tag or commit."""


class GatedRepo(HubError):
    """The model needs its terms accepted and a token (HTTP 401/403)."""


class HubUnavailable(HubError):
    """Offline, unreachable, rate limited or failing with a server error."""
