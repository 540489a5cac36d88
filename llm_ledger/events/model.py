"""The seven event types and their envelope (docs/ARCHITECTURE.md: the route of an event).

An execution is one stream: ``ExecutionStarted``, then per attempt ``AttemptStarted`` followed by
``AttemptSucceeded`` or ``AttemptFailed``, a ``FallbackTriggered`` at each switch of model, and one
terminal ``ExecutionSucceeded`` or ``ExecutionFailed``. Events are facts: frozen, and hash-chained.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter, field_validator

from llm_ledger.events.capture import CapturePolicy, InputRecord, OutputRecord

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


class TokenUsage(_Frozen):
    """Tokens billed for a call; ``cached_tokens`` and ``reasoning_tokens`` when the provider reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __add__(self, other: TokenUsage) -> TokenUsage:
        def _sum(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=_sum(self.cached_tokens, other.cached_tokens),
            reasoning_tokens=_sum(self.reasoning_tokens, other.reasoning_tokens),
        )


class RequestParameters(_Frozen):
    temperature: Number | None = None
    max_tokens: int | None = None
    stop_sequences: tuple[str, ...] | None = None


# --- payloads ---------------------------------------------------------------------------------


class ExecutionStartedPayload(_Frozen):
    operation: Operation
    chain: tuple[str, ...]
    max_retries: int
    timeout_seconds: Number
    attempt_timeout_seconds: Number
    parameters: RequestParameters
    input: InputRecord
    output_schema: str | None = None
    capture: CapturePolicy


class AttemptStartedPayload(_Frozen):
    attempt: int = Field(ge=1, description="1-based number of the attempt within the execution")
    model: str
    provider: str
    fallback_index: int = Field(ge=0, description="index of the model in the chain")
    retry: int = Field(ge=0, description="0 for the first call to this model, 1 for its first retry, ...")
    timeout_seconds: Number


class AttemptSucceededPayload(_Frozen):
    attempt: int
    model: str
    provider: str
    latency_ms: Number
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    response_id: str | None = None
    response_model: str | None = None
    time_to_first_chunk_ms: Number | None = None
    output: OutputRecord


class AttemptFailedPayload(_Frozen):
    attempt: int
    model: str
    provider: str
    latency_ms: Number
    error_type: str
    error_class: str
    message: str
    status_code: int | None = None
    request_id: str | None = None
    retry_after_seconds: Number | None = None
    next_action: NextAction
    backoff_seconds: Number | None = None
    chunks_delivered: int = 0


class FallbackTriggeredPayload(_Frozen):
    from_model: str
    to_model: str
    from_index: int
    to_index: int
    reason: str


class ExecutionSucceededPayload(_Frozen):
    model: str
    provider: str
    attempts: int
    fallback_used: bool
    latency_ms: Number
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    output: OutputRecord


class ExecutionFailedPayload(_Frozen):
    error_type: str
    message: str
    attempts: int
    latency_ms: Number
    last_model: str | None = None
    chunks_delivered: int = 0


Payload: TypeAlias = (
    ExecutionStartedPayload
    | AttemptStartedPayload
    | AttemptSucceededPayload
    | AttemptFailedPayload
    | FallbackTriggeredPayload
    | ExecutionSucceededPayload
    | ExecutionFailedPayload
)


# --- envelope ---------------------------------------------------------------------------------


class EventEnvelope(_Frozen):
    """Fields every event carries. ``hash`` covers all the others, ``prev_hash`` included."""

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
    payload: Payload

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


class ExecutionStarted(EventEnvelope):
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
    event_type: Literal["ExecutionSucceeded"] = "ExecutionSucceeded"
    payload: ExecutionSucceededPayload


class ExecutionFailed(EventEnvelope):
    event_type: Literal["ExecutionFailed"] = "ExecutionFailed"
    payload: ExecutionFailedPayload


Event: TypeAlias = Annotated[
    ExecutionStarted
    | AttemptStarted
    | AttemptSucceeded
    | AttemptFailed
    | FallbackTriggered
    | ExecutionSucceeded
    | ExecutionFailed,
    Field(discriminator="event_type"),
]
"""Any of the seven event types."""


EVENT_TYPES: dict[str, type[EventEnvelope]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (
        ExecutionStarted,
        AttemptStarted,
        AttemptSucceeded,
        AttemptFailed,
        FallbackTriggered,
        ExecutionSucceeded,
        ExecutionFailed,
    )
}
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "ExecutionStarted": ExecutionStartedPayload,
    "AttemptStarted": AttemptStartedPayload,
    "AttemptSucceeded": AttemptSucceededPayload,
    "AttemptFailed": AttemptFailedPayload,
    "FallbackTriggered": FallbackTriggeredPayload,
    "ExecutionSucceeded": ExecutionSucceededPayload,
    "ExecutionFailed": ExecutionFailedPayload,
}
"""The payload model of each event type."""
TERMINAL_EVENT_TYPES = frozenset({"ExecutionSucceeded", "ExecutionFailed"})

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(record: Any) -> Event:
    """Validate a stored record (a mapping, or its JSON text) into its event type."""
    if isinstance(record, (str, bytes, bytearray)):
        return _event_adapter.validate_json(record)
    return _event_adapter.validate_python(record)
