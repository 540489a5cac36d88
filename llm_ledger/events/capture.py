"""The capture policy: how much of a prompt or a response an event may keep."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict

from llm_ledger.events.later import AddedLater, OmitsUnusedLaterFields

CapturePolicy = Literal["none", "hash", "full"]
"""``none``: sizes only; ``hash``: sizes and keyed digests (HMAC-SHA-256 under the tenant's key, the
default); ``full``: also the scrubbed text."""

DEFAULT_CAPTURE: CapturePolicy = "hash"
CAPTURE_POLICIES: tuple[str, ...] = get_args(CapturePolicy)


def parse_capture_policy(value: str) -> CapturePolicy:
    """Validate a capture policy given as text (from configuration or the environment)."""
    if value not in CAPTURE_POLICIES:
        raise ValueError(f"capture policy must be one of {', '.join(CAPTURE_POLICIES)}, not {value!r}")
    return value  # type: ignore[return-value]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CapturedToolCall(_Frozen):
    """A tool call of a captured assistant message: the call id, the tool, the arguments' JSON text
    (scrubbed)."""

    id: str
    name: str
    arguments: str


class CapturedMessage(OmitsUnusedLaterFields, _Frozen):
    """A message as capture ``full`` keeps it (scrubbed); the tool fields only when the message has them."""

    role: str
    content: str
    tool_calls: Annotated[tuple[CapturedToolCall, ...], AddedLater()] = ()
    tool_call_id: Annotated[str | None, AddedLater()] = None
    name: Annotated[str | None, AddedLater()] = None


class InputRecord(OmitsUnusedLaterFields, _Frozen):
    """What an event keeps of the messages sent: always sizes; a digest or the text by policy.

    The digest is keyed (``digest``, ``digest_alg`` ``hmac-sha256``, ``key_id``: ``events.digests``);
    ``sha256`` holds the plain SHA-256 of events written before keyed digests, and is null in later ones."""

    message_count: int
    chars: int
    bytes: int
    sha256: str | None = None
    messages: tuple[CapturedMessage, ...] | None = None
    digest: Annotated[str | None, AddedLater()] = None
    digest_alg: Annotated[str | None, AddedLater()] = None
    key_id: Annotated[str | None, AddedLater()] = None


class OutputRecord(OmitsUnusedLaterFields, _Frozen):
    """What an event keeps of a response text (or a tool call's arguments, a tool's result): always sizes;
    a digest or the text by policy. The digest fields as ``InputRecord``'s."""

    chars: int
    bytes: int
    sha256: str | None = None
    text: str | None = None
    digest: Annotated[str | None, AddedLater()] = None
    digest_alg: Annotated[str | None, AddedLater()] = None
    key_id: Annotated[str | None, AddedLater()] = None
