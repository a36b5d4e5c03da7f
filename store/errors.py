"""The store's error type: one plain sentence a user can act on."""


class StoreError(Exception):
    """The database cannot be opened or used; `str(err)` says why and what to do."""


class LeaseLost(StoreError):
    """A worker wrote to a run that is no longer its own (deleted, or claimed by another)."""
