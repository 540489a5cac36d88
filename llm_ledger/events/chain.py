"""The per-stream SHA-256 hash chain: sealing new events and verifying stored ones."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import ValidationError

from llm_ledger.events.canonical import (
    CanonicalizationError,
    canonical_json,
    json_text,
    orjson_canonical,
    sha256_hex,
    sorted_json,
)
from llm_ledger.events.encryption import ContentSubject, DataKey, encrypt_payload
from llm_ledger.events.ids import uuid7
from llm_ledger.events.model import (
    EVENT_TYPES,
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    EventEnvelope,
    Payload,
    parse_event,
)
from llm_ledger.events.values import JsonDict, JsonPayload, plain_floats


def compute_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a stored record, without its own ``hash`` field."""
    return sha256_hex(canonical_json({key: value for key, value in record.items() if key != "hash"}))


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The envelope fields shared by every event of one stream."""

    stream_id: UUID
    tenant_id: str
    agent_id: str | None = None
    session_id: str | None = None
    turn_id: str | None = None
    step: str | None = None
    content: ContentSubject | None = field(default=None, compare=False, repr=False)
    """Set for a stream captured in full: its payloads' texts are encrypted when built (``encryption.py``).
    Not an envelope field: nothing of it is stored but the ciphertexts' key ids."""


# One lock for all streams: drafting holds it for a few instructions, and sealing is done by the
# consumers (usually one writer thread), so it is barely contended; a lock per stream measured as a
# tenth of the executor's own time.
_sealing = threading.Lock()


class EventDraft:
    """An event of a stream as it happened, sealed (hashed into the chain) when first asked for.

    Recording a draft costs a few microseconds on the LLM call; sealing costs tens, three to four
    times more when it runs interleaved with the provider SDK's code (measured: 4 sealed events
    added 0.26 ms to a 2.9 ms call). So the executor records drafts and whoever consumes them (the
    store's writer thread, a test reading an in-memory sink) pays for the sealing. ``event`` seals
    every earlier draft of the stream first, so the chain is the same whoever asks, and when.
    """

    __slots__ = ("_build", "_canonical", "_elsewhere", "_event", "_fields", "_payload", "_plain", "_sealer",
                 "_values", "content_key", "event_id", "event_type", "occurred_at", "span_id", "stream_position",
                 "trace_id")  # fmt: skip

    def __init__(
        self,
        sealer: StreamSealer,
        position: int,
        event_type: str,
        payload: Payload | Callable[[], Payload] | JsonPayload,
        occurred_at: datetime,
        trace_id: str | None,
        span_id: str | None,
        event_id: UUID,
    ) -> None:
        self._sealer = sealer
        self._event: EventEnvelope | None = None
        self._fields: dict[str, Any] | None = None  # set by the sealing
        self._canonical = b""
        self._values: JsonDict | None = None
        self._plain = False
        # Sealed by another process (a writer process): the prev_hash it was sealed with, so that this
        # process can seal it again, alone, if asked (``StreamSealer.sealed_elsewhere``).
        self._elsewhere: str | _InChain | None = IN_CHAIN
        if callable(payload):
            self._payload: Payload | None = None
            self._build: Callable[[], Payload] | JsonPayload | None = payload
        else:
            self._payload, self._build = payload, None
        self.stream_position = position
        self.event_type = event_type
        self.occurred_at = occurred_at
        self.trace_id = trace_id
        self.span_id = span_id
        self.event_id = event_id
        self.content_key: DataKey | None = None
        """The data key made for this event's content (its stream's first content under a new key): it is
        stored with the event, in the journal and in the database (``store.content_keys``)."""

    @property
    def payload(self) -> Payload:
        """The payload; built on first use when the draft was given a builder."""
        if self._payload is None:
            build = self._build
            assert build is not None
            if isinstance(build, JsonPayload):
                self._payload = PAYLOAD_TYPES[self.event_type].model_validate(self._json_values())
            else:
                self._payload = build()
        return self._payload

    def _json_values(self) -> JsonDict:
        """The payload's JSON values (``model_dump(mode="json")``), built once from a ``JsonPayload``."""
        if self._values is None:
            assert type(self._build) is JsonPayload
            values, self._plain = plain_floats(self._build)
            content = self._sealer.header.content
            if content is not None:
                # Once per draft, and kept: the ciphertext (random nonce) is part of what is hashed, so a
                # draft sealed again (by this process after its writer process) seals to the same hash.
                values, self.content_key = encrypt_payload(
                    self.event_type, values, content, self._sealer.header, str(self.event_id)
                )
            self._values = values
        return self._values

    @property
    def stream_id(self) -> UUID:
        return self._sealer.header.stream_id

    def stored_form(self) -> tuple[dict[str, Any], bytes]:
        """What a store needs, without building the event model or serializing anything again: the
        sealed event's fields (ids as text, ``occurred_at`` a datetime, ``payload`` its JSON values as a
        ``PayloadJson``, which carries their canonical JSON text) and its canonical JSON (what the hash
        covers, without the hash). The dict is the draft's own: copy it before changing it."""
        if self._fields is None:
            self._sealer.seal_through(self)
            assert self._fields is not None
        return self._fields, self._canonical

    @property
    def tenant_id(self) -> str:
        return self._sealer.header.tenant_id

    @property
    def sealer(self) -> StreamSealer:
        return self._sealer

    def payload_values(self) -> tuple[JsonDict, bool]:
        """The payload's JSON values as the sealing would serialize them, and whether orjson writes their
        floats as canonical JSON has them (``values.plain_floats``); built once. Raises as the builder does.
        For handing the draft to a writer process, which seals it there from these values."""
        if type(self._build) is JsonPayload:
            values = self._json_values()
            return values, self._plain
        return self.payload.model_dump(mode="json"), False

    @property
    def sealed_hash(self) -> str | None:
        """The hash it was sealed to; None if it is not sealed (yet, or its sealing failed). Never seals."""
        fields = self._fields
        return None if fields is None else fields["hash"]

    @property
    def event(self) -> EventEnvelope:
        """The sealed event, with its position, ``prev_hash`` and hash."""
        if self._event is None:
            fields = self.stored_form()[0]
            values = {**fields, "event_id": self.event_id, "stream_id": self.stream_id, "payload": self.payload}
            self._event = _construct(EVENT_TYPES[self.event_type], values)
        return self._event

    def __repr__(self) -> str:
        state = "sealed" if self._fields is not None else "draft"
        return f"<EventDraft {self.event_type} {self.stream_id}#{self.stream_position} {state}>"


class StreamSealer:
    """Orders the events of one stream and seals them: position, ``prev_hash`` and hash.

    The canonical form of an event is assembled from JSON fragments, the stream's constant fields
    encoded once (a whole-record ``canonical_json`` measured 3x slower).
    ``compute_hash(event.to_record())`` gives the same digest; test_chain holds it to that.
    """

    __slots__ = ("_fixed", "_next_position", "_prev_hash", "_stream_id", "_unsealed", "header")

    def __init__(self, header: StreamHeader) -> None:
        self.header = header
        self._next_position = 0
        self._prev_hash: str | None = None
        self._unsealed: deque[EventDraft] = deque()
        self._fixed: tuple[str, ...] | None = None  # encoded at the first seal, off the call path
        self._stream_id = ""

    @classmethod
    def resume(cls, header: StreamHeader, position: int, prev_hash: str | None) -> StreamSealer:
        """A sealer for a stream whose events before ``position`` were sealed elsewhere, the last to
        ``prev_hash`` (a writer process taking over a stream its application started)."""
        sealer = cls(header)
        sealer._next_position, sealer._prev_hash = position, prev_hash
        return sealer

    def resume_at(self, position: int, prev_hash: str | None) -> None:
        """Go on at ``position`` after ``prev_hash`` (what the stream's events sealed elsewhere say)."""
        with _sealing:
            self._next_position, self._prev_hash = position, prev_hash

    @property
    def unsealed(self) -> int:
        """Drafts of this stream neither sealed here nor acknowledged as sealed elsewhere."""
        return len(self._unsealed)

    @property
    def next_link(self) -> tuple[int, str | None]:
        """The position and prev_hash of the stream's next draft."""
        with _sealing:
            return self._next_position, self._prev_hash

    def draft(
        self,
        event_type: str,
        payload: Payload | Callable[[], Payload] | JsonPayload,
        *,
        occurred_at: datetime,
        trace_id: str | None = None,
        span_id: str | None = None,
        event_id: UUID | None = None,
    ) -> EventDraft:
        """The next event of the stream, sealed later (``draft.event``), in order.

        ``payload`` may be a builder (``functools.partial(SomePayload, ...)``): building and validating
        it is then left to the sealing too. Or a ``JsonPayload`` (``values.py``), a builder of the payload's
        JSON values: the sealing then serializes those, and the model is built only if ``payload`` is read.
        """
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        for name, value, length in (("trace_id", trace_id, 32), ("span_id", span_id, 16)):
            if value is not None and not (len(value) == length and _HEX.fullmatch(value)):
                raise ValueError(f"{name} must be {length} lower-case hex digits, not {value!r}")
        if occurred_at.tzinfo is not UTC and occurred_at.utcoffset() != timedelta(0):
            raise ValueError("occurred_at must be in UTC")
        with _sealing:
            draft = EventDraft(
                self, self._next_position, event_type, payload, occurred_at, trace_id, span_id, event_id or uuid7()
            )
            self._next_position += 1
            self._unsealed.append(draft)
        return draft

    def seal(self, event_type: str, payload: Payload, *, occurred_at: datetime, **ids: Any) -> EventEnvelope:
        """The next event of the stream, sealed now."""
        return self.draft(event_type, payload, occurred_at=occurred_at, **ids).event

    def seal_through(self, draft: EventDraft) -> None:
        """Seal every draft of this stream up to and including ``draft``."""
        with _sealing:
            elsewhere = draft._elsewhere
            if draft._fields is None and not isinstance(elsewhere, _InChain):
                # Sealed by a writer process, and no longer in this sealer's queue: sealed again, alone, from
                # the prev_hash it had there (the same hash: sealing is deterministic).
                alone = StreamSealer(self.header)
                alone._prev_hash = elsewhere
                alone._seal(draft)
                return
            while draft._fields is None:
                self._seal(self._unsealed.popleft())

    def sealed_elsewhere(self, draft: EventDraft, digest: str | None) -> None:
        """``draft``, the next unsealed draft of this stream, was sealed by another process (a writer
        process) to ``digest`` (None: it could not be sealed, and the chain goes on from its predecessor, as
        it does here): take it off the queue and go on from there, so that drafts sealed elsewhere do not
        accumulate, and this sealer can seal the next ones itself exactly as the other process would."""
        with _sealing:
            if draft._fields is not None:
                return  # sealed here already (someone read it): the chain moved on with it
            if not self._unsealed or self._unsealed[0] is not draft:
                raise ValueError(f"{draft!r} is not the next draft of its stream to seal")
            self._unsealed.popleft()
            draft._elsewhere = self._prev_hash
            if digest is not None:
                self._prev_hash = digest

    def next_unsealed_link(self, draft: EventDraft) -> tuple[bool, str | None]:
        """Whether ``draft``'s prev_hash is known here (every earlier draft of the stream is sealed, here or
        elsewhere), and that prev_hash: what a writer process needs to seal it without having seen the
        stream before."""
        with _sealing:
            fields = draft._fields
            if fields is not None:
                prev: str | None = fields["prev_hash"]
                return True, prev
            if self._unsealed and self._unsealed[0] is draft:
                return True, self._prev_hash
            return False, None

    def _seal(self, draft: EventDraft) -> None:
        if type(draft._build) is JsonPayload:
            payload_json = draft._json_values()
            # Values of exact JSON types, whose floats orjson writes as canonical JSON has them (values.py)
            # need no float scan: orjson's sorted output is their canonical form.
            payload_bytes = sorted_json(payload_json) if draft._plain else canonical_json(payload_json)
        else:
            payload_json = draft.payload.model_dump(mode="json")
            payload_bytes = canonical_json(payload_json)
        event_id = str(draft.event_id)
        fixed = self._fixed
        if fixed is None:
            fixed = self._fixed = self._fixed_parts()
        # orjson's own output is not kept: holding it costs a page fault (~2 us) per event, as its buffer is
        # allocated and then shrunk (measured; a copy, like this text, costs nothing). The canonical form is
        # joined as text and encoded once. Keys in sorted order ("hash" is not part of its own input).
        text = payload_bytes.decode()
        data = "".join(
            (
                fixed[0], event_id,
                '","event_type":"', draft.event_type,
                '","occurred_at":"', _iso_utc(draft.occurred_at),
                'Z","payload":', text,
                ',"prev_hash":', _hex_or_null(self._prev_hash),
                fixed[1], _hex_or_null(draft.span_id),
                fixed[2], str(draft.stream_position),
                fixed[3], _hex_or_null(draft.trace_id),
                fixed[4],
            )
        ).encode()  # fmt: skip
        header, digest = self.header, sha256_hex(data)
        payload = PayloadJson(payload_json)
        payload.json_text = text
        if draft._values is not None:
            draft._values = payload  # the same values: the builder's dict need not be kept as well
        # The stored fields only: the event model is built when someone asks for ``draft.event`` (a
        # writer never does: 3 us an event saved).
        draft._fields = {
            "event_id": event_id,
            "event_type": draft.event_type,
            "schema_version": SCHEMA_VERSION,
            "stream_id": self._stream_id,
            "stream_position": draft.stream_position,
            "tenant_id": header.tenant_id,
            "agent_id": header.agent_id,
            "session_id": header.session_id,
            "turn_id": header.turn_id,
            "step": header.step,
            "occurred_at": draft.occurred_at,
            "trace_id": draft.trace_id,
            "span_id": draft.span_id,
            "prev_hash": self._prev_hash,
            "hash": digest,
            "payload": payload,
        }
        draft._canonical = data
        self._prev_hash = digest

    def _fixed_parts(self) -> tuple[str, ...]:
        """The canonical JSON between the per-event values, with the stream's constant fields in it."""
        header = self.header
        self._stream_id = str(header.stream_id)
        return (
            f'{{"agent_id":{json_text(header.agent_id)},"event_id":"',
            f',"schema_version":{SCHEMA_VERSION},"session_id":{json_text(header.session_id)},"span_id":',
            f',"step":{json_text(header.step)},"stream_id":"{self._stream_id}","stream_position":',
            f',"tenant_id":{json_text(header.tenant_id)},"trace_id":',
            f',"turn_id":{json_text(header.turn_id)}}}',
        )


class _InChain:
    """The marker of a draft sealed in its own sealer's order (not by another process)."""

    __slots__ = ()


IN_CHAIN = _InChain()


class PayloadJson(dict[str, Any]):
    """A sealed payload's JSON values, carrying the JSON text the sealing wrote for them (``json_text``, the
    payload's part of the canonical form).

    Its route: ``StreamSealer._seal`` makes it and puts it in the draft's stored fields
    (``EventDraft.stored_form``); ``store.rows`` copies those fields into the row unchanged; the PostgreSQL
    backend (``store.dialects``) sends ``json_text`` to COPY instead of serializing the payload again
    (orjson measured 0.8 us for an ``AttemptSucceeded`` payload, more with captured text). Everything else
    (SQLite's JSON column, ``json``, orjson, a test) sees a plain dict, which is why this is a dict
    subclass and not a pair: a row's ``payload`` stays the payload's values for every reader."""

    __slots__ = ("json_text",)

    json_text: str


def _construct(cls: type[EventEnvelope], values: dict[str, Any]) -> EventEnvelope:
    """``cls.model_construct(**values)`` for a complete set of already validated fields, without its
    per-field default handling (27 us of the 45 us an event cost to seal). test_chain checks that the
    result equals the validated model."""
    event = cls.__new__(cls)
    object.__setattr__(event, "__dict__", values)
    object.__setattr__(event, "__pydantic_fields_set__", set(values))
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event


def seal_event(
    header: StreamHeader,
    *,
    position: int,
    prev_hash: str | None,
    payload: Payload,
    event_type: str,
    occurred_at: datetime,
    trace_id: str | None = None,
    span_id: str | None = None,
    event_id: UUID | None = None,
) -> EventEnvelope:
    """Build the event at ``position`` of a stream, linked to ``prev_hash`` and carrying its own hash."""
    if position < 0:
        raise ValueError("stream position must not be negative")
    sealer = StreamSealer(header)
    sealer._next_position = position
    sealer._prev_hash = prev_hash
    return sealer.seal(
        event_type, payload, occurred_at=occurred_at, trace_id=trace_id, span_id=span_id, event_id=event_id
    )


_HEX = re.compile(r"[0-9a-f]+")


def _hex_or_null(value: str | None) -> str:
    """JSON of a hex digest or id (no character needs escaping), or null."""
    return "null" if value is None else f'"{value}"'


def _iso_utc(moment: datetime) -> str:
    """The form pydantic serializes a UTC datetime to (``...T12:00:00.123456Z``, no fraction when it is
    zero), without the quotes and the ``Z``. ``isoformat`` measured 1 us, orjson 2.5 us (on an aware
    datetime); ``draft`` has made sure the offset is zero."""
    text = moment.isoformat()
    if text.endswith("+00:00"):
        return text[:-6]
    return orjson.dumps(moment, option=orjson.OPT_UTC_Z).decode()[1:-2]


BreakKind = Literal[
    "invalid",
    "hash_mismatch",
    "prev_hash_mismatch",
    "position_gap",
    "duplicate_position",
    "stream_mismatch",
]


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """One event that breaks its stream's chain, and why."""

    index: int
    """Position of the event in the sequence given to ``verify_chain``."""
    event_id: str | None
    stream_id: str | None
    stream_position: int | None
    kind: BreakKind
    reason: str

    def __str__(self) -> str:
        where = f"event {self.event_id} (stream {self.stream_id}, position {self.stream_position})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of ``verify_chain``; truthy when every stream is intact."""

    events_checked: int
    streams_checked: int
    breaks: tuple[ChainBreak, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.breaks

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            streams = "1 stream" if self.streams_checked == 1 else f"{self.streams_checked} streams"
            return f"{self.events_checked} events in {streams}: chain intact"
        return "\n".join(str(b) for b in self.breaks)


@dataclass(slots=True)
class _StreamState:
    expected_position: int = 0
    prev_hash: str | None = None


def verify_chain(events: Iterable[EventEnvelope | Mapping[str, Any]]) -> ChainReport:
    """Check the hash chain of every stream in ``events`` (stored records or event models).

    Events of each stream must come in position order; streams may interleave. Each event is checked
    on its own (its hash recomputed from its content) and against its predecessor (its ``prev_hash``
    and position), so an altered event, a removed one and a reordering are each named.
    """
    states: dict[str, _StreamState] = {}
    breaks: list[ChainBreak] = []
    count = 0
    for index, item in enumerate(events):
        count += 1
        record = item.to_record() if isinstance(item, EventEnvelope) else dict(item)
        event_id = _text(record.get("event_id"))
        stream_id = _text(record.get("stream_id"))
        position = record.get("stream_position")
        position = position if isinstance(position, int) else None

        def report(kind: BreakKind, reason: str) -> None:
            breaks.append(ChainBreak(index, event_id, stream_id, position, kind, reason))  # noqa: B023

        try:
            parse_event(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"])
            report("invalid", f"not a valid event ({loc}: {first['msg']})")
        try:
            actual = compute_hash(record)
        except CanonicalizationError as exc:
            report("invalid", f"cannot be canonicalized: {exc}")
            actual = None
        stored = record.get("hash")
        if actual is not None and actual != stored:
            report("hash_mismatch", f"content does not match its hash (stored {stored}, computed {actual})")
        if stream_id is None or position is None:
            continue
        state = states.setdefault(stream_id, _StreamState())
        if position < state.expected_position:
            report(
                "duplicate_position", f"position {position} repeats or goes back (expected {state.expected_position})"
            )
        elif position > state.expected_position:
            missing = f"{state.expected_position}..{position - 1}"
            report("position_gap", f"positions {missing} are missing before this event")
        if record.get("prev_hash") != state.prev_hash:
            expected = state.prev_hash or "none (first event of the stream)"
            report(
                "prev_hash_mismatch",
                f"prev_hash {record.get('prev_hash')} does not link to the previous event's hash {expected}",
            )
        state.expected_position = max(state.expected_position, position + 1)
        state.prev_hash = stored if isinstance(stored, str) else actual
    return ChainReport(events_checked=count, streams_checked=len(states), breaks=tuple(breaks))


def chain_holds(records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether ``verify_chain`` finds nothing wrong in the stored records of one stream, in stream order; at
    less cost, since no reason is built: False only says that something may be wrong, and ``verify_chain``
    names what (nothing, if False was only caution).

    The same checks, cheapest first: positions ``0, 1, 2, ...`` (ints), each ``prev_hash`` the previous
    event's hash, one stream id, each hash recomputed from the canonical form, each record a valid event
    (``parse_event``). A record whose canonical form has a float to rewrite (``canonical``) is not passed:
    its payload may have been read by a JSON parser that reads some numbers differently from json.loads
    (orjson makes a float of an integer beyond 64 bits, which it then writes with an exponent).
    tests/events/test_chain.py holds the two to the same verdict.
    """
    prev_hash: str | None = None
    stream_id: Any = None
    for position, record in enumerate(records):
        stored = record.get("hash")
        # ``type(...) is int``: verify_chain skips the links of an event whose position is no int (1.0).
        at = record.get("stream_position")
        if type(at) is not int or at != position or record.get("prev_hash") != prev_hash:
            return False
        if not isinstance(stored, str) or (position and record.get("stream_id") != stream_id):
            return False
        try:
            unhashed = dict(record)
            del unhashed["hash"]
            content = orjson_canonical(unhashed)
            if content is None or sha256_hex(content) != stored:
                return False
            parse_event(record)
        except (CanonicalizationError, ValidationError):
            return False
        prev_hash, stream_id = stored, record.get("stream_id")
    return True


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
