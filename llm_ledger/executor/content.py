"""Which keyring a stream captured in full encrypts its content with: its sink's.

One keyring per sink, so that the key a subject's first event carries goes where that subject's later
events go (two stores in one process each get their own keys), and keys live as long as the sink.
"""

from __future__ import annotations

import threading
from weakref import WeakKeyDictionary

from llm_ledger.events import CapturePolicy
from llm_ledger.events.encryption import ContentSubject, Keyring
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
