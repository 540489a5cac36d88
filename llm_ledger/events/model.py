"""The event types and their envelope (docs/ARCHITECTURE.md: the route of an event).

An execution is one stream: ``ExecutionStarted``, then per attempt ``AttemptStarted`` followed by
``AttemptSucceeded`` or ``AttemptFailed``, a ``FallbackTriggered`` at each switch of model, and one
terminal ``ExecutionSucceeded`` or ``ExecutionFailed``. A tool's execution (a call an answer asked for,
run by the application or by an Agno Agent) is a stream of its own: ``ToolCallStarted``, then one
terminal ``ToolCallSucceeded`` or ``ToolCallFailed``; its payload names the execution and the tool call
id that asked for it. Each envelope class says which kind of stream it belongs to (``stream_kind``) and
whether it starts one (``starts_stream``): ``STREAM_KINDS`` is derived from that, and a reader tells a
stream's kind by its first event. Events are facts: frozen, and hash-chained.

An event type is declared here once: its payload model (an ``EventPayload``), its envelope class (the
``event_type`` literal, the payload, whether it is ``terminal``), and its place in the ``Event`` union,
which is the registry: ``EVENT_TYPES``, ``PAYLOAD_TYPES``, ``TERMINAL_EVENT_TYPES`` and ``parse_event``
are derived from it. Then its handlers: a builder in ``values.py`` (the sealing's fast path), and a fold
in ``projections.rollup`` (or its name in ``UNFOLDED_EVENT_TYPES``); tests name whatever is missing.
``ENVELOPE_FIELDS`` is the envelope's field list: the store's row conversion is derived from it; the
events table, the COPY columns, the sealed fields and the canonical form are checked against it, and
every payload key a reader reads against the payload models (tests/events/test_shape.py,
tests/store/test_envelope_columns.py, tests/projections/test_payload_reads.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter, field_validator

from llm_ledger.events.capture import CapturePolicy, InputRecord, OutputRecord
from llm_ledger.events.later import AddedLater, OmitsUnusedLaterFields

SCHEMA_VERSION = 1


def _json_number(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


Number = Annotated[float, Field(allow_inf_nan=False), PlainSerializer(_json_number, when_used="json")]
"""A float stored as JSON the way ECMAScript writes it (``60``, not ``60.0``), so that the canonical
form of an event needs no rewriting on the hot path (see ``canonical``)."""

Operation = Literal["generate", "generate_structured", "generate_stream"]
NextAction = Literal["retry", "fall_back", "fail"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class ProviderSupplied:
    """Marks a payload field whose value a provider supplied (pydantic ignores it): the sealing makes it
    storable instead of refusing it (``values.py``, with ``storable.provider_*``), since it runs in the
    writer, where an error would leave a hole in the stream. ``kind`` says how: ``text`` (cut to
    ``MAX_FIELD_CHARS``, NULs and lone surrogates replaced), ``message`` (the same, cut to
    ``MAX_MESSAGE_CHARS``), ``seconds`` (clamped to a day, NaN unknown), ``usage`` (unknown when a count is
    not one an event can hold). tests/events/test_shape.py holds each builder of values.py to these marks."""

    kind: Literal["text", "message", "seconds", "usage"]


ProviderText = Annotated[str | None, ProviderSupplied("text")]
ProviderMessage = Annotated[str, ProviderSupplied("message")]
ProviderSeconds = Annotated[Number | None, ProviderSupplied("seconds")]


class TokenUsage(OmitsUnusedLaterFields, _Frozen):
    """Tokens billed for a call; ``cached_tokens`` (read from the provider's prompt cache),
    ``cache_write_tokens`` (written to it) and ``reasoning_tokens`` when the provider reports them, and
    ``cost_usd`` when the provider reports what the call cost (OpenRouter's ``usage.cost``).

    ``prompt_tokens`` counts every input token, cached and cache-written ones included, whatever the
    provider's own convention (Anthropic counts them apart): the cached and cache-written counts are parts
    of it, and ``total_tokens`` is input and output together."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: Annotated[Number | None, AddedLater()] = None
    """US dollars, as the provider billed them; left out of the stored form while unknown, so that usage
    without it keeps the form (and hash) it had before the field existed."""
    cache_write_tokens: Annotated[int | None, AddedLater()] = None
    """Left out of the stored form while unknown, as ``cost_usd`` is."""

    def __add__(self, other: TokenUsage) -> TokenUsage:
        def _sum(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        def _total(a: float | None, b: float | None) -> float | None:
            # A call whose cost is unknown leaves the sum unknown: a partial sum would read as the whole bill.
            return None if a is None or b is None else a + b

        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=_sum(self.cached_tokens, other.cached_tokens),
            reasoning_tokens=_sum(self.reasoning_tokens, other.reasoning_tokens),
            cost_usd=_total(self.cost_usd, other.cost_usd),
            cache_write_tokens=_sum(self.cache_write_tokens, other.cache_write_tokens),
        )


ProviderUsage = Annotated[TokenUsage | None, ProviderSupplied("usage")]


class RequestParameters(_Frozen):
    temperature: Number | None = None
    max_tokens: int | None = None
    stop_sequences: tuple[str, ...] | None = None


# --- payloads ---------------------------------------------------------------------------------


class EventPayload(OmitsUnusedLaterFields, _Frozen):
    """The base of every payload model: what ``EventEnvelope.payload`` holds. A field marked
    ``AddedLater`` is left out of the stored form while it holds its empty default (``later.py``)."""


Payload: TypeAlias = EventPayload
"""Any event's payload (the base class; each envelope class names its own payload model)."""


class OfferedTool(_Frozen):
    """A tool offered to the model: its name and the SHA-256 of its definition's canonical JSON
    (``ToolSpec.digest``: name, description and parameter schema)."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ToolCallRecord(_Frozen):
    """A tool call an answer asked for: the provider's call id, the tool, and its arguments' JSON text
    kept under the capture policy (sizes always; a digest or the scrubbed text by policy). The id and the
    name are the provider's words (``values.tool_call_values`` makes them storable)."""

    id: Annotated[str, ProviderSupplied("text")]
    name: Annotated[str, ProviderSupplied("text")]
    arguments: OutputRecord


class ExecutionStartedPayload(EventPayload):
    operation: Operation
    chain: tuple[str, ...]
    max_retries: int
    timeout_seconds: Number
    attempt_timeout_seconds: Number
    parameters: RequestParameters
    input: InputRecord
    output_schema: str | None = None
    capture: CapturePolicy
    tools: Annotated[tuple[OfferedTool, ...], AddedLater()] = ()
    tool_choice: Annotated[str | None, AddedLater()] = None


class AttemptStartedPayload(EventPayload):
    attempt: int = Field(ge=1, description="1-based number of the attempt within the execution")
    model: str
    provider: str
    fallback_index: int = Field(ge=0, description="index of the model in the chain")
    retry: int = Field(ge=0, description="0 for the first call to this model, 1 for its first retry, ...")
    timeout_seconds: Number


class AttemptSucceededPayload(EventPayload):
    attempt: int
    model: str
    provider: str
    latency_ms: Number
    usage: ProviderUsage = None
    finish_reason: ProviderText = None
    request_id: ProviderText = None
    response_id: ProviderText = None
    response_model: ProviderText = None
    time_to_first_chunk_ms: Number | None = None
    output: OutputRecord
    tool_calls: Annotated[tuple[ToolCallRecord, ...], AddedLater()] = ()


class AttemptFailedPayload(EventPayload):
    attempt: int
    model: str
    provider: str
    latency_ms: Number
    error_type: str
    error_class: str
    message: ProviderMessage
    status_code: int | None = None
    request_id: ProviderText = None
    retry_after_seconds: ProviderSeconds = None
    next_action: NextAction
    backoff_seconds: Number | None = None
    chunks_delivered: int = 0


class FallbackTriggeredPayload(EventPayload):
    from_model: str
    to_model: str
    from_index: int
    to_index: int
    reason: str


class ExecutionSucceededPayload(EventPayload):
    model: str
    provider: str
    attempts: int
    fallback_used: bool
    latency_ms: Number
    usage: ProviderUsage = None
    finish_reason: ProviderText = None
    output: OutputRecord


class ExecutionFailedPayload(EventPayload):
    error_type: str
    message: ProviderMessage
    attempts: int
    latency_ms: Number
    last_model: str | None = None
    chunks_delivered: int = 0


class ToolCallStartedPayload(EventPayload):
    tool_name: str
    tool_call_id: ProviderText = None
    """The provider's id of the call that asked for this execution (None for a tool run unasked)."""
    execution_id: UUID | None = None
    """The execution whose answer asked for the call."""
    arguments: OutputRecord
    capture: CapturePolicy


class ToolCallSucceededPayload(EventPayload):
    tool_name: str
    latency_ms: Number
    result: OutputRecord


class ToolCallFailedPayload(EventPayload):
    tool_name: str
    latency_ms: Number
    error_type: str
    """``tool_error`` for an exception the tool raised, ``cancelled`` when its caller cancelled it."""
    error_class: str
    message: ProviderMessage
    """A sentence naming the exception's class, whatever the capture policy (the exception's text may quote
    the arguments, so it is kept in ``error_text``, under the policy). Events recorded before
    ``error_text`` existed keep the text itself here, scrubbed but not encrypted, under capture ``full``."""
    error_text: Annotated[OutputRecord | None, AddedLater()] = None
    """The exception's text, kept as the tool's arguments are (``ToolCallStarted.arguments``): sizes always;
    a keyed digest under ``hash`` and ``full``; under ``full`` the scrubbed text, encrypted under the data key
    of the arguments and result, so that an erasure covers it. None for a cancellation (no text), and in
    events recorded before the field existed."""


# --- envelope ---------------------------------------------------------------------------------


class EventEnvelope(_Frozen):
    """Fields every event carries. ``hash`` covers all the others, ``prev_hash`` included.

    Each event type is a subclass naming its ``event_type`` (a literal equal to the class name), its
    payload model, and whether it is ``terminal`` (the last event of an execution's stream)."""

    terminal: ClassVar[bool] = False
    stream_kind: ClassVar[str] = "execution"
    """The kind of stream the event belongs to: ``execution`` or ``tool_call`` (a tool's execution)."""
    starts_stream: ClassVar[bool] = False
    """Whether the event is the first of its kind of stream (at position 0)."""

    event_id: UUID
    event_type: str
    schema_version: int = SCHEMA_VERSION
    stream_id: UUID
    stream_position: int = Field(ge=0)
    tenant_id: str = Field(min_length=1)
    agent_id: str | None = None
    session_id: str | None = None
    turn_id: str | None = None
    step: str | None = None
    occurred_at: AwareDatetime
    trace_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    span_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    prev_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    payload: EventPayload

    @field_validator("occurred_at")
    @classmethod
    def _utc_microseconds(cls, value: datetime) -> datetime:
        offset = value.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError("occurred_at must be in UTC")
        return value

    def to_record(self) -> dict[str, Any]:
        """The JSON form that is stored and hashed."""
        return self.model_dump(mode="json")


ENVELOPE_FIELDS: tuple[str, ...] = tuple(EventEnvelope.model_fields)
"""Every field of a stored event, in the order of the stored record (``payload`` last)."""


# --- the event types: one declaration each, registered in ``Event`` ---------------------------


class ExecutionStarted(EventEnvelope):
    starts_stream = True
    event_type: Literal["ExecutionStarted"] = "ExecutionStarted"
    payload: ExecutionStartedPayload


class AttemptStarted(EventEnvelope):
    event_type: Literal["AttemptStarted"] = "AttemptStarted"
    payload: AttemptStartedPayload


class AttemptSucceeded(EventEnvelope):
    event_type: Literal["AttemptSucceeded"] = "AttemptSucceeded"
    payload: AttemptSucceededPayload


class AttemptFailed(EventEnvelope):
    event_type: Literal["AttemptFailed"] = "AttemptFailed"
    payload: AttemptFailedPayload


class FallbackTriggered(EventEnvelope):
    event_type: Literal["FallbackTriggered"] = "FallbackTriggered"
    payload: FallbackTriggeredPayload


class ExecutionSucceeded(EventEnvelope):
    terminal = True
    event_type: Literal["ExecutionSucceeded"] = "ExecutionSucceeded"
    payload: ExecutionSucceededPayload


class ExecutionFailed(EventEnvelope):
    terminal = True
    event_type: Literal["ExecutionFailed"] = "ExecutionFailed"
    payload: ExecutionFailedPayload


class ToolCallStarted(EventEnvelope):
    stream_kind = "tool_call"
    starts_stream = True
    event_type: Literal["ToolCallStarted"] = "ToolCallStarted"
    payload: ToolCallStartedPayload


class ToolCallSucceeded(EventEnvelope):
    stream_kind = "tool_call"
    terminal = True
    event_type: Literal["ToolCallSucceeded"] = "ToolCallSucceeded"
    payload: ToolCallSucceededPayload


class ToolCallFailed(EventEnvelope):
    stream_kind = "tool_call"
    terminal = True
    event_type: Literal["ToolCallFailed"] = "ToolCallFailed"
    payload: ToolCallFailedPayload


Event: TypeAlias = Annotated[
    ExecutionStarted
    | AttemptStarted
    | AttemptSucceeded
    | AttemptFailed
    | FallbackTriggered
    | ExecutionSucceeded
    | ExecutionFailed
    | ToolCallStarted
    | ToolCallSucceeded
    | ToolCallFailed,
    Field(discriminator="event_type"),
]
"""Any event type: the registry, which every table below is derived from (a new type is added here)."""


def _registered(event: Any) -> tuple[type[EventEnvelope], ...]:
    union, *_ = get_args(event)
    return tuple(get_args(union))


def _name_of(cls: type[EventEnvelope]) -> str:
    name = cls.model_fields["event_type"].default
    assert isinstance(name, str), f"{cls.__name__} declares no event_type literal"
    return name


def _payload_of(cls: type[EventEnvelope]) -> type[EventPayload]:
    payload = cls.model_fields["payload"].annotation
    assert isinstance(payload, type) and issubclass(payload, EventPayload), f"{cls.__name__} names no payload model"
    return payload


EVENT_TYPES: dict[str, type[EventEnvelope]] = {_name_of(cls): cls for cls in _registered(Event)}
"""The envelope class of each event type, by name."""
PAYLOAD_TYPES: dict[str, type[EventPayload]] = {name: _payload_of(cls) for name, cls in EVENT_TYPES.items()}
"""The payload model of each event type."""
TERMINAL_EVENT_TYPES = frozenset(name for name, cls in EVENT_TYPES.items() if cls.terminal)
"""The event types that end a stream (an execution's or a tool execution's: ``STREAM_KINDS`` says which)."""


@dataclass(frozen=True, slots=True)
class StreamKind:
    """One kind of stream: the event type it starts with, the types it may hold, the ones that end it."""

    name: str
    start: str
    event_types: frozenset[str]
    terminals: frozenset[str]


def _stream_kind(name: str) -> StreamKind:
    members = {event_type: cls for event_type, cls in EVENT_TYPES.items() if cls.stream_kind == name}
    (start,) = (event_type for event_type, cls in members.items() if cls.starts_stream)
    terminals = frozenset(event_type for event_type, cls in members.items() if cls.terminal)
    return StreamKind(name, start, frozenset(members), terminals)


STREAM_KINDS: dict[str, StreamKind] = {
    name: _stream_kind(name) for name in dict.fromkeys(cls.stream_kind for cls in EVENT_TYPES.values())
}
"""Each kind of stream by name: ``execution`` (``ExecutionStarted`` ... ``ExecutionSucceeded`` or
``ExecutionFailed``) and ``tool_call`` (``ToolCallStarted``, then ``ToolCallSucceeded`` or
``ToolCallFailed``). A reader tells a stream's kind by its first event."""
STREAM_KIND_OF_START: dict[str, StreamKind] = {kind.start: kind for kind in STREAM_KINDS.values()}
"""The kind of stream each starting event type begins."""

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(record: Any) -> Event:
    """Validate a stored record (a mapping, or its JSON text) into its event type."""
    if isinstance(record, (str, bytes, bytearray)):
        return _event_adapter.validate_json(record)
    return _event_adapter.validate_python(record)
