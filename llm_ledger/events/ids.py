"""UUIDv7 identifiers (RFC 9562): time-ordered, so ids sort the way events happened."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Random bits are drawn from the OS in blocks: one getrandom() call per id cost a third of the id.
_RANDOM_BLOCK = 4096
_random = b""
_random_at = 0

_COUNTER_BITS = 12
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1


def _forget_random_after_fork() -> None:
    # A forked child must not hand out the random bits its parent will also use.
    global _random, _random_at
    _random, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random_after_fork)


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7, monotonic within this process.

    RFC 9562 method 1: the 12 ``rand_a`` bits are a counter seeded at random each millisecond, so
    ids made in the same millisecond still sort in creation order; when the counter runs out the
    timestamp is advanced by one millisecond rather than breaking the order.
    """
    global _last_ms, _counter, _random, _random_at
    with _lock:
        if _random_at + 10 > len(_random):
            _random, _random_at = os.urandom(_RANDOM_BLOCK), 0
        bits = int.from_bytes(_random[_random_at : _random_at + 10], "big")
        _random_at += 10
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = (bits >> 64) & (_COUNTER_MAX >> 1)
        else:
            _counter += 1
            if _counter > _COUNTER_MAX:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = bits & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand_b
    # uuid.UUID(int=...) re-validates what is built right here, at a third of this function's cost.
    result = object.__new__(uuid.UUID)
    object.__setattr__(result, "int", value)
    object.__setattr__(result, "is_safe", uuid.SafeUUID.unknown)
    return result


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The Unix time in milliseconds encoded in a UUIDv7."""
    if value.version != 7:
        raise ValueError(f"not a UUIDv7: {value}")
    return value.int >> 80
