"""Removal of credentials from text before it is stored (error messages, captured content)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

# Shapes of credentials that providers echo back in error bodies, or that callers paste into prompts.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization header values: "Bearer <token>", "Basic <b64>".
    re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE),
    # Provider key shapes: OpenAI/Anthropic/OpenRouter "sk-...", Groq "gsk_...", xAI "xai-...",
    # Google "AIza...", Hugging Face "hf_...", GitHub and Slack tokens, AWS access key ids.
    re.compile(r"\b(?:sk|pk|rk|gsk|xai|ghp|gho|ghs|xoxb|xoxp)[-_][A-Za-z0-9\-_*•.]{6,}", re.IGNORECASE),
    re.compile(r"\bAIza[A-Za-z0-9\-_]{10,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"),
    # Labelled secrets: api_key=..., "x-api-key": "...", access_token: ..., password=...
    re.compile(
        r"""(?P<label>["']?(?:x-)?(?:api[-_ ]?key|access[-_]?token|auth[-_]?token|secret|password|token)["']?"""
        r"""\s*[=:]\s*["']?)[^\s"',;&}]{4,}""",
        re.IGNORECASE,
    ),
    # Credentials in URLs: scheme://user:secret@host
    re.compile(r"(?P<label>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+(?=@)"),
)

_MIN_SECRET_LENGTH = 6


class Scrubber:
    """Replaces credentials in text with ``[REDACTED]``.

    Known secret values (the API keys the executor was configured with) are removed verbatim, which
    catches a key echoed back in any shape; the patterns catch credentials we were never told about.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        known = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so that a key which contains another key is removed whole.
        self._secrets: tuple[str, ...] = tuple(sorted(known, key=len, reverse=True))

    def with_secrets(self, secrets: Iterable[str | None]) -> Scrubber:
        """A scrubber that also removes ``secrets``."""
        return Scrubber((*self._secrets, *secrets))

    def scrub(self, text: str) -> str:
        """``text`` with every known secret and credential-shaped fragment replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(_replacement, text)
        return text


def _replacement(match: re.Match[str]) -> str:
    label = match.groupdict().get("label")
    if label is not None:
        return label + REDACTED
    if match.re.groups and match.group(1) and match.group(1).lower() in {"bearer", "basic"}:
        return f"{match.group(1)} {REDACTED}"
    return REDACTED


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without credentials; ``secrets`` are values to remove verbatim in addition to the patterns."""
    return Scrubber(secrets).scrub(text)
