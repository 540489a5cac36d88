"""Reading back, in a test, the content this process recorded in full: decrypted with the keys its
keyrings made (the application never reads a key back; a keyholder reads them from the database)."""

from __future__ import annotations

from collections.abc import Callable

from llm_ledger.events import Event
from llm_ledger.events.encryption import DataKey, reveal
from llm_ledger.executor import content


def revealed_event(event: Event, lookup: Callable[[str], DataKey | None]) -> Event:
    """``event`` with its encrypted texts decrypted back into their places (``messages``, ``text``) for the
    keys ``lookup`` gives (``keyring_of(sink).get`` for what this process recorded to ``sink``); a text
    whose key it lacks stays encrypted."""
    values, _ = reveal(
        event.event_type, event.payload.model_dump(mode="json"), str(event.stream_id), str(event.event_id), lookup
    )
    return event.model_copy(update={"payload": type(event.payload).model_validate(values)})


def made_here(key_id: str) -> DataKey | None:
    """A data key this process made, whichever sink's it is."""
    with content._lock:
        keyrings = list(content._keyrings.values())
    for keyring in keyrings:
        key = keyring.get(key_id)
        if key is not None:
            return key
    return None
