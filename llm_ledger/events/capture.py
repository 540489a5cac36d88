"""The capture policy: how much of a prompt or a response an event may keep."""

from __future__ import annotations

from typing import Annotated, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from llm_ledger.events.encryption import EncryptedContent
from llm_ledger.events.later import AddedLater, OmitsUnusedLaterFields

CapturePolicy = Literal["none", "hash", "full"]
"""``none``: sizes only; ``hash``: sizes and keyed digests (HMAC-SHA-256 under the tenant's key, the
default); ``full``: also the scrubbed text, encrypted under a data key of the tenant and subject
(``encryption.py``), so that it can be erased."""

DEFAULT_CAPTURE: CapturePolicy = "hash"
CAPTURE_POLICIES: tuple[str, ...] = get_args(CapturePolicy)


def parse_capture_policy(value: str) -> CapturePolicy:
    """Validate a capture policy given as text (from configuration or the environment)."""
    if value not in CAPTURE_POLICIES:
        raise ValueError(f"capture policy must be one of {', '.join(CAPTURE_POLICIES)}, not {value!r}")
    return value  # type: ignore[return-value]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


KeyedDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""Lower-case hex HMAC-SHA-256 (``events.digests``)."""
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]


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
    """What an event keeps of the messages sent: always sizes; a digest or the text by policy. Under capture
    ``full`` the messages are ``encrypted`` (``messages`` is then None); events recorded before encryption
    keep them in ``messages``.

    The digest is keyed (``digest``, ``digest_alg`` ``hmac-sha256``, ``key_id``: ``events.digests``);
    ``sha256`` holds the plain SHA-256 of events written before keyed digests, and is null in later ones."""

    message_count: int
    chars: int
    bytes: int
    sha256: str | None = None
    messages: tuple[CapturedMessage, ...] | None = None
    encrypted: Annotated[EncryptedContent | None, AddedLater()] = None
    digest: Annotated[KeyedDigest | None, AddedLater()] = None
    digest_alg: Annotated[Literal["hmac-sha256"] | None, AddedLater()] = None
    key_id: Annotated[KeyId | None, AddedLater()] = None

    @model_validator(mode="after")
    def _one_whole_digest(self) -> Self:
        _check_digest_fields(self)
        return self


class OutputRecord(OmitsUnusedLaterFields, _Frozen):
    """What an event keeps of a response text (or a tool call's arguments, a tool's result): always sizes;
    a digest or the text by policy (under capture ``full``, ``encrypted``, as ``InputRecord`` keeps its
    messages). The digest fields as ``InputRecord``'s."""

    chars: int
    bytes: int
    sha256: str | None = None
    text: str | None = None
    encrypted: Annotated[EncryptedContent | None, AddedLater()] = None
    digest: Annotated[KeyedDigest | None, AddedLater()] = None
    digest_alg: Annotated[Literal["hmac-sha256"] | None, AddedLater()] = None
    key_id: Annotated[KeyId | None, AddedLater()] = None

    @model_validator(mode="after")
    def _one_whole_digest(self) -> Self:
        _check_digest_fields(self)
        return self


def _check_digest_fields(record: InputRecord | OutputRecord) -> None:
    """A keyed digest whole (``digest``, ``digest_alg``, ``key_id``: all three or none), or the plain
    ``sha256`` of an event before keyed digests, never both."""
    keyed = (record.digest, record.digest_alg, record.key_id)
    if any(part is None for part in keyed) and any(part is not None for part in keyed):
        raise ValueError("digest, digest_alg and key_id go together: all three or none")
    if record.sha256 is not None and record.digest is not None:
        raise ValueError("a record holds a keyed digest or a plain sha256, not both")
