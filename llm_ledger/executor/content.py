"""Which keyring a stream captured in full encrypts its content with: its sink's.

One keyring per sink, so that the key a subject's first event carries goes where that subject's later
events go (two stores in one process each get their own keys), and keys live as long as the sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from weakref import WeakKeyDictionary

from llm_ledger.events import CapturePolicy, Event
from llm_ledger.events.encryption import ContentSubject, DataKey, Keyring, reveal
from llm_ledger.executor.context import ExecutionContext

_keyrings: WeakKeyDictionary[object, Keyring] = WeakKeyDictionary()
_lock = threading.Lock()


def keyring_of(sink: object) -> Keyring:
    """The keyring of the events ``sink`` takes (made on first use)."""
    with _lock:
        keyring = _keyrings.get(sink)
        if keyring is None:
            keyring = _keyrings[sink] = Keyring()
        return keyring


def content_subject(sink: object, context: ExecutionContext, capture: CapturePolicy) -> ContentSubject | None:
    """What ``StreamHeader.content`` is for a stream recorded to ``sink``: None unless captured in full."""
    if capture != "full":
        return None
    return ContentSubject(keyring_of(sink), context.subject_id)


def revealed_event(event: Event, lookup: Callable[[str], DataKey | None]) -> Event:
    """``event`` with its encrypted texts decrypted back into their places (``messages``, ``text``) for the
    keys ``lookup`` gives (``keyring_of(sink).get`` for what this process recorded to ``sink``); a text
    whose key it lacks stays encrypted."""
    values, _ = reveal(
        event.event_type, event.payload.model_dump(mode="json"), str(event.stream_id), str(event.event_id), lookup
    )
    return event.model_copy(update={"payload": type(event.payload).model_validate(values)})


def made_here(key_id: str) -> DataKey | None:
    """A data key this process made, whichever sink's it is (for reading back what this process recorded)."""
    with _lock:
        keyrings = list(_keyrings.values())
    for keyring in keyrings:
        key = keyring.get(key_id)
        if key is not None:
            return key
    return None
