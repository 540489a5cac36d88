"""The store's errors."""

from __future__ import annotations

from llm_ledger.errors import LedgerError


class StoreError(LedgerError):
    """Base of the store's errors: its configuration, its migrations, and the events it stores and reads."""


class ConcurrencyError(StoreError):
    """Another event already holds a ``(stream_id, stream_position)`` of the batch; nothing was stored."""


class InvalidEventError(StoreError, ValueError):
    """An event of a batch cannot be stored as it is (invalid, unhashable, too large); nothing of the
    batch was stored. ``index`` is its place in the batch, ``event_id`` its id when it has one."""

    def __init__(self, message: str, *, index: int, event_id: str | None) -> None:
        where = f"event {index}" + (f" ({event_id})" if event_id else "")
        super().__init__(f"{where}: {message}")
        self.index = index
        self.event_id = event_id


class StoreUnavailableError(StoreError):
    """The database cannot be reached (or refused the connection)."""


class UnreadableEventError(StoreError, ValueError):
    """A stored row no longer parses as an event: it was changed after it was recorded
    (``llm-ledger audit verify`` names how)."""
