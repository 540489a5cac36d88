"""The capture policy: how much of a prompt or a response an event may keep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from llm_ledger.events.canonical import canonical_json, sha256_hex
from llm_ledger.events.scrub import Scrubber

CapturePolicy = Literal["none", "hash", "full"]
"""``none``: sizes only; ``hash``: sizes and SHA-256 digests (the default); ``full``: also the scrubbed text."""

DEFAULT_CAPTURE: CapturePolicy = "hash"
CAPTURE_POLICIES: tuple[str, ...] = get_args(CapturePolicy)


def parse_capture_policy(value: str) -> CapturePolicy:
    """Validate a capture policy given as text (from configuration or the environment)."""
    if value not in CAPTURE_POLICIES:
        raise ValueError(f"capture policy must be one of {', '.join(CAPTURE_POLICIES)}, not {value!r}")
    return value  # type: ignore[return-value]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CapturedMessage(_Frozen):
    role: str
    content: str


class InputRecord(_Frozen):
    """What an event keeps of the messages sent: always sizes; a digest or the text by policy."""

    message_count: int
    chars: int
    bytes: int
    sha256: str | None = None
    messages: tuple[CapturedMessage, ...] | None = None


class OutputRecord(_Frozen):
    """What an event keeps of a response text: always sizes; a digest or the text by policy."""

    chars: int
    bytes: int
    sha256: str | None = None
    text: str | None = None


def record_input(messages: Sequence[tuple[str, str]], policy: CapturePolicy, scrubber: Scrubber) -> InputRecord:
    """Summarise ``(role, content)`` pairs; the digest is over their canonical JSON, so it can be recomputed."""
    chars = sum(len(content) for _, content in messages)
    size = sum(len(content.encode("utf-8", "surrogatepass")) for _, content in messages)
    digest = None
    captured = None
    if policy != "none":
        form = [{"content": content, "role": role} for role, content in messages]
        digest = sha256_hex(canonical_json(form))
    if policy == "full":
        captured = tuple(CapturedMessage(role=role, content=scrubber.scrub(content)) for role, content in messages)
    return InputRecord(message_count=len(messages), chars=chars, bytes=size, sha256=digest, messages=captured)


def record_output(text: str, policy: CapturePolicy, scrubber: Scrubber) -> OutputRecord:
    """Summarise a response text; the digest is over its UTF-8 bytes."""
    data = text.encode("utf-8", "surrogatepass")
    return OutputRecord(
        chars=len(text),
        bytes=len(data),
        sha256=sha256_hex(data) if policy != "none" else None,
        text=scrubber.scrub(text) if policy == "full" else None,
    )
