"""What an event can hold, in one place: the limits the store enforces, and the checks and coercions that
keep every value of an event within them.

The store refuses an event whose canonical JSON is over ``MAX_EVENT_BYTES``, that holds a NUL character
(PostgreSQL's ``jsonb`` cannot hold ``\\u0000``), a lone surrogate (it has no UTF-8 form, so no canonical
JSON and no hash), a non-finite number, or an integer beyond ``MAX_EXACT_INTEGER`` (RFC 8785 writes
numbers as IEEE doubles: a larger integer would canonicalize differently elsewhere). A refused event is a
hole in its stream, which ``audit verify`` cannot tell from tampering. So the executor refuses a call whose
input breaks these rules before any event exists (``executor.admission``), and provider-supplied values
are made storable here (``provider_*``) whatever the provider sent.
"""

from __future__ import annotations

import math
import re

MAX_EVENT_BYTES = 1 << 20
"""The largest canonical event stored (1 MiB): a larger one is an error, not a silent truncation
(truncating a sealed event would break its hash)."""

MAX_EXACT_INTEGER = 2**53 - 1
"""The largest integer an event holds: every JSON implementation reads it back exactly."""

MAX_FIELD_CHARS = 1024
"""The longest identifier an event keeps: context ids, model strings, stop sequences, schema names,
provider ids."""

MAX_MESSAGE_CHARS = 8192
"""The longest error message an event keeps; a longer one (a provider's HTML error page) is cut."""

RESERVED_EVENT_BYTES = 256 * 1024
"""Room kept in an event for everything but captured text: with every field above at its longest and
every character escaped (6 bytes), the rest of an event stays below this (``ExecutionStarted``: 5 context
ids, 16 model strings, 16 stop sequences and a schema name of 1,024 characters, 6 KiB each: 228 KiB)."""

MAX_CAPTURED_BYTES = (MAX_EVENT_BYTES - RESERVED_EVENT_BYTES) // 4 * 3 - 16
"""The most captured text (as JSON) one event may hold under capture ``full``: the text is stored encrypted
(``encryption.py``), its ciphertext and 16-byte tag in base64, which takes 4/3 of it, in the room left."""

MAX_RETRY_AFTER_SECONDS = 86400.0
"""A provider's ``Retry-After`` beyond a day (or infinite) is recorded as a day: any policy falls back."""

MAX_CALL_COST_USD = 1e6
"""A provider-reported cost beyond a million dollars for one call is no bill but a provider's error: recorded
as unknown, so that no sum of costs reaches infinity."""

TRUNCATED = "…[truncated]"

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def surrogate_problem(value: str) -> str | None:
    """Why ``value`` has no UTF-8 form (a lone surrogate, and where), or None."""
    if value.isascii():  # O(1) in CPython: the common case costs nothing
        return None
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return f"contains a lone surrogate (U+{ord(found.group()):04X}) at index {found.start()}"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as it is (a NUL or a lone surrogate, and where), or None."""
    if "\x00" in value:
        return f"contains a NUL character (U+0000) at index {value.index(chr(0))}"
    return surrogate_problem(value)


def provider_text(value: str, limit: int | None = MAX_FIELD_CHARS) -> str:
    """A provider-supplied string made storable: NULs and lone surrogates become U+FFFD, and a string over
    ``limit`` characters is cut (marked with ``…[truncated]``)."""
    if not value.isascii() or "\x00" in value:
        value = _UNSTORABLE.sub("\ufffd", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - len(TRUNCATED)] + TRUNCATED
    return value


def optional_provider_text(value: object, limit: int = MAX_FIELD_CHARS) -> str | None:
    """``provider_text`` of a string; anything else a provider put where a string belongs is unknown."""
    return provider_text(value, limit) if isinstance(value, str) else None


def provider_count(value: object) -> int | None:
    """A provider-reported count (tokens) that an event can hold exactly, or None when it is not one
    (negative, fractional, non-finite, or beyond ``MAX_EXACT_INTEGER``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value) if math.isfinite(value) else -1
    if isinstance(value, int) and 0 <= value <= MAX_EXACT_INTEGER:
        return value
    return None


def provider_cost(value: object) -> float | None:
    """A provider-reported cost (US dollars) an event can hold, or None when it is not one (not a number,
    negative, not finite, or beyond ``MAX_CALL_COST_USD``). Never raises: an integer too large for a float
    is no cost either."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        cost = float(value)
    except OverflowError:
        return None
    return cost if 0 <= cost <= MAX_CALL_COST_USD else None


def provider_seconds(value: float | None) -> float | None:
    """A provider-supplied duration an event can hold: NaN is unknown (None), a negative one 0, and one
    beyond ``MAX_RETRY_AFTER_SECONDS`` (infinity included) that maximum."""
    if value is None or math.isnan(value):
        return None
    return min(max(value, 0.0), MAX_RETRY_AFTER_SECONDS)
