"""Captured content encrypted under data keys, so that destroying a key erases it (crypto-shredding).

Under capture ``full`` every text an event keeps (the messages sent, an answer, a tool call's arguments, a
tool's result, the text of the exception a tool raised) is stored as an ``EncryptedContent`` record instead:
AES-256-GCM under a data key of the tenant, subject and session. The sizes and digests stay plain beside it,
and the hash chain covers the record exactly as it is stored, so destroying the key makes the text unreadable
for good while every chain, seal and ``audit verify`` stays as it was.

The associated data binds a ciphertext to the key's tenant, subject and session and to the event's stream,
event id and field: a ciphertext copied into another event, field or tenant does not decrypt.

A key is made by the ``Keyring`` of the sink the events go to, off the call path (when the first event
that needs it has its payload built, in the thread that seals it), and travels with that event
(``EventDraft.content_key``) into the journal and the database, in the same transaction as the event
(``store.content_keys``): a key reaches the journal and the database with or before the first ciphertext
under it, unless an erasure of its session or subject came after it was made (then it is destroyed on
arrival, and recorded so).
Pure: no IO but the OS's random numbers.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from llm_ledger.errors import LedgerError
from llm_ledger.events.ids import uuid7

ALGORITHM: Literal["A256GCM"] = "A256GCM"

JsonDict = dict[str, Any]


class EncryptedContent(BaseModel):
    """A text as capture ``full`` stores it: AES-256-GCM under the data key ``key_id``; nonce and ciphertext
    (with its tag) in base64."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alg: Literal["A256GCM"] = ALGORITHM
    key_id: str
    nonce: str
    ciphertext: str


@dataclass(frozen=True, slots=True)
class DataKey:
    """A random 256-bit key for one tenant, subject and session. ``subject_id`` is None when the context
    named no subject: the session is the subject then."""

    key_id: str
    tenant_id: str
    subject_id: str | None
    session_id: str | None
    secret: bytes = dataclasses.field(repr=False)
    created_at: datetime

    def record(self) -> JsonDict:
        """The key's JSON form (the journal, the writer process's pipe, a row to insert)."""
        return {
            "key_id": self.key_id,
            "tenant_id": self.tenant_id,
            "subject_id": self.subject_id,
            "session_id": self.session_id,
            "secret": base64.b64encode(self.secret).decode(),
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_record(cls, record: JsonDict) -> DataKey:
        secret = base64.b64decode(record["secret"], validate=True)
        if len(secret) != 32:
            raise ValueError(f"data key {record.get('key_id')} is {len(secret)} bytes, not 32")
        return cls(
            key_id=str(UUID(str(record["key_id"]))),
            tenant_id=str(record["tenant_id"]),
            subject_id=None if record.get("subject_id") is None else str(record["subject_id"]),
            session_id=None if record.get("session_id") is None else str(record["session_id"]),
            secret=secret,
            created_at=datetime.fromisoformat(str(record["created_at"])),
        )


KEYS_KEPT = 10_000
"""The keys a keyring keeps, least recently used dropped first: dropping one is always safe (it travelled
with its first event; the owner's next event gets a new key, which travels with it)."""
KEY_LIFETIME = 3600.0
"""Seconds a key is used for new content before its owner gets a new one. Bounds how long a live process
goes on encrypting under a key an erasure destroyed meanwhile (it cannot know): the next key, made after
the erasure, is stored, so what comes after it stays readable."""


class Keyring:
    """The data keys one sink's events were encrypted under, one per tenant, subject and session, made on
    first need (a key is made, never looked up in the database: the writer never needs to read a key back),
    replaced after ``lifetime`` seconds and at most ``kept`` of them held. Thread-safe."""

    def __init__(self, *, kept: int = KEYS_KEPT, lifetime: float = KEY_LIFETIME) -> None:
        self._lock = threading.Lock()
        self._kept = kept
        self._lifetime = lifetime
        self._by_owner: OrderedDict[tuple[str, str | None, str | None], DataKey] = OrderedDict()
        self._by_id: dict[str, DataKey] = {}

    def key_for(self, tenant_id: str, subject_id: str | None, session_id: str | None) -> tuple[DataKey, bool]:
        """The key of ``(tenant, subject, session)`` and whether it was made just now."""
        owner = (tenant_id, subject_id, session_id)
        now = datetime.now(UTC)
        with self._lock:
            key = self._by_owner.get(owner)
            if key is not None and (now - key.created_at).total_seconds() < self._lifetime:
                self._by_owner.move_to_end(owner)
                return key, False
            if key is not None:
                del self._by_owner[owner]
                self._by_id.pop(key.key_id, None)
            key = DataKey(str(uuid7()), tenant_id, subject_id, session_id, os.urandom(32), now)
            self._by_owner[owner] = key
            self._by_id[key.key_id] = key
            while len(self._by_owner) > self._kept:
                _, dropped = self._by_owner.popitem(last=False)
                self._by_id.pop(dropped.key_id, None)
            return key, True

    def get(self, key_id: str) -> DataKey | None:
        with self._lock:
            return self._by_id.get(key_id)


@dataclass(frozen=True, slots=True)
class ContentSubject:
    """Whose content a stream's events keep (``StreamHeader.content``): the keyring that holds the keys and
    the subject (None: the session)."""

    keyring: Keyring
    subject_id: str | None = None


def associated_data(key: DataKey, stream_id: str, event_id: str, field: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "field": field,
            "key_id": key.key_id,
            "session_id": key.session_id,
            "stream_id": stream_id,
            "subject_id": key.subject_id,
            "tenant_id": key.tenant_id,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def encrypt(key: DataKey, plaintext: bytes, stream_id: str, event_id: str, field: str) -> JsonDict:
    """An ``EncryptedContent``'s JSON values."""
    nonce = os.urandom(12)
    sealed = AESGCM(key.secret).encrypt(nonce, plaintext, associated_data(key, stream_id, event_id, field))
    return {
        "alg": ALGORITHM,
        "key_id": key.key_id,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }


class UndecryptableError(LedgerError, ValueError):
    """A ciphertext that does not open under its key for this event and field (moved, or altered)."""


def decrypt(key: DataKey, record: JsonDict, stream_id: str, event_id: str, field: str) -> bytes:
    if record.get("key_id") != key.key_id:
        raise UndecryptableError(f"{field} is encrypted under key {record.get('key_id')}, not {key.key_id}")
    try:
        nonce = base64.b64decode(record["nonce"], validate=True)
        sealed = base64.b64decode(record["ciphertext"], validate=True)
        return AESGCM(key.secret).decrypt(nonce, sealed, associated_data(key, stream_id, event_id, field))
    # TypeError: a stored nonce or ciphertext that is no string (a number, null, a list) is altered too.
    except (InvalidTag, ValueError, KeyError, TypeError) as exc:
        raise UndecryptableError(
            f"{field} of event {event_id} does not decrypt under key {key.key_id}: it was moved or altered"
        ) from exc


# --- where content is in a payload ---------------------------------------------------------------


def content_fields(event_type: str, payload: JsonDict) -> Iterator[tuple[str, JsonDict, str]]:
    """Each place a payload's values keep captured text: ``(field, record, kind)``, the record being the
    dict that holds the text (an ``InputRecord``'s or an ``OutputRecord``'s) and ``kind`` one of ``messages``
    and ``text``. A ``ToolCallFailed`` recorded before ``error_text`` existed keeps the exception's text in
    its ``message``, a plain field and no place of content: it was never encrypted, and no erasure covers
    it (``tool_error_in_plain`` tells such an event)."""
    if event_type == "ExecutionStarted":
        yield "input", payload["input"], "messages"
    elif event_type == "AttemptSucceeded":
        yield "output", payload["output"], "text"
        for index, call in enumerate(payload.get("tool_calls") or ()):
            yield f"tool_calls.{index}.arguments", call["arguments"], "text"
    elif event_type == "ExecutionSucceeded":
        yield "output", payload["output"], "text"
    elif event_type == "ToolCallStarted":
        yield "arguments", payload["arguments"], "text"
    elif event_type == "ToolCallSucceeded":
        yield "result", payload["result"], "text"
    elif event_type == "ToolCallFailed" and (error_text := error_text_of(payload)) is not None:
        yield "error_text", error_text, "text"


def error_text_of(payload: JsonDict) -> JsonDict | None:
    """A ``ToolCallFailed``'s ``error_text`` capture record, None for one recorded before it existed (or with
    none: a cancellation). The one test of whether a payload keeps the exception's text there."""
    found = payload.get("error_text")
    return found if isinstance(found, dict) else None


def tool_error_in_plain(event_type: str, payload: JsonDict, capture: str | None) -> bool:
    """Whether a ``ToolCallFailed`` keeps the exception's text in plain in its ``message``: recorded under
    capture ``full`` (its ``ToolCallStarted``'s ``capture``) before the text went into ``error_text``."""
    return (
        event_type == "ToolCallFailed"
        and capture == "full"
        and payload.get("error_type") == "tool_error"
        and error_text_of(payload) is None
    )


def encrypted_of(record: JsonDict) -> JsonDict | None:
    """The ``EncryptedContent`` values a content place holds, if it holds one."""
    found = record.get("encrypted")
    return found if isinstance(found, dict) else None


def key_ids(event_type: str, payload: JsonDict) -> set[str]:
    """The data keys a stored payload's content is encrypted under."""
    found: set[str] = set()
    for _, record, _ in content_fields(event_type, payload):
        encrypted = encrypted_of(record)
        if encrypted is not None:
            found.add(str(encrypted.get("key_id")))
    return found


def encrypt_payload(
    event_type: str, values: JsonDict, subject: ContentSubject, header: Any, event_id: str
) -> tuple[JsonDict, DataKey | None]:
    """``values`` with every captured text encrypted under the key of the stream's tenant, subject and
    session (``header``: its ``StreamHeader``), and the key if it was made for this event. Values that keep no
    text (capture ``hash`` or ``none``, or an event type without content) come back as they are."""
    places = [place for place in content_fields(event_type, values) if _holds_text(place[1], place[2])]
    if not places:
        return values, None
    key, made = subject.keyring.key_for(header.tenant_id, subject.subject_id, header.session_id)
    stream_id = str(header.stream_id)
    out = _copy_along(values, event_type)
    for field, _, kind in places:
        record = _place(out, field)
        if kind == "messages":
            plaintext = orjson.dumps(record["messages"])
            record["messages"] = None
            record["encrypted"] = encrypt(key, plaintext, stream_id, event_id, field)
        else:
            plaintext = record["text"].encode("utf-8", "surrogatepass")
            record["text"] = None
            record["encrypted"] = encrypt(key, plaintext, stream_id, event_id, field)
    return out, key if made else None


def _holds_text(record: JsonDict, kind: str) -> bool:
    return record.get(kind) is not None


def _copy_along(values: JsonDict, event_type: str) -> JsonDict:
    """A copy of ``values`` deep enough that encrypting in it leaves the builder's dicts alone (a deferred
    output record is shared by two events of an execution)."""
    out = dict(values)
    for name in ("input", "output", "arguments", "result", "error_text"):
        if isinstance(out.get(name), dict):
            out[name] = dict(out[name])
    if out.get("tool_calls"):
        out["tool_calls"] = [{**call, "arguments": dict(call["arguments"])} for call in out["tool_calls"]]
    return out


def _place(values: JsonDict, field: str) -> JsonDict:
    if field.startswith("tool_calls."):
        _, index, name = field.split(".")
        record: JsonDict = values["tool_calls"][int(index)][name]
        return record
    found: JsonDict = values[field]
    return found


def decrypt_field(key: DataKey, encrypted: JsonDict, stream_id: str, event_id: str, field: str, kind: str) -> Any:
    """The text (for ``messages``: the list of captured messages' JSON values) an encrypted place held."""
    plaintext = decrypt(key, encrypted, stream_id, event_id, field)
    if kind == "messages":
        return orjson.loads(plaintext)
    return plaintext.decode("utf-8", "surrogatepass")


def reveal(
    event_type: str, payload: JsonDict, stream_id: str, event_id: str, lookup: Callable[[str], DataKey | None]
) -> tuple[JsonDict, dict[str, str]]:
    """A stored payload's values with each encrypted text decrypted back into its place (``messages`` or
    ``text``, as an event recorded before encryption holds it), for the keys ``lookup`` gives; and the
    places it could not open, by field, with the key id each needed (a key erased or not readable here).
    Raises ``UndecryptableError`` for a ciphertext moved or altered (``reveal_each`` reports it instead)."""
    out, hidden, altered = reveal_each(event_type, payload, stream_id, event_id, lookup)
    for error in altered.values():
        raise error
    return out, hidden


def reveal_each(
    event_type: str, payload: JsonDict, stream_id: str, event_id: str, lookup: Callable[[str], DataKey | None]
) -> tuple[JsonDict, dict[str, str], dict[str, UndecryptableError]]:
    """``reveal``, each place on its own: a ciphertext that does not open under its key for this event and
    field (moved from another event or field, or altered) stays encrypted in its place and is named, by
    field, with the error, while the other places open as they would (a reader shows that one text as
    altered, not the whole event as unreadable)."""
    out = _copy_along(payload, event_type)
    hidden: dict[str, str] = {}
    altered: dict[str, UndecryptableError] = {}
    for field, _, kind in list(content_fields(event_type, out)):
        record = _place(out, field)
        encrypted = encrypted_of(record)
        if encrypted is None:
            continue
        key = lookup(str(encrypted.get("key_id")))
        if key is None:
            hidden[field] = str(encrypted.get("key_id"))
            continue
        try:
            record[kind] = decrypt_field(key, encrypted, stream_id, event_id, field, kind)
        except UndecryptableError as exc:
            altered[field] = exc
    return out, hidden, altered
