"""Whether stored text holds the card number the tests' captured texts quote (4111), as plain text."""

from __future__ import annotations

import re

_PLAIN_CARD = re.compile(r"(?<![0-9A-Za-z+/=_.-])4111(?![0-9A-Za-z+/=_.-])")
"""The card number the sessions' texts quote, as plain text: on its own, never inside a run of the characters
of an id, a hash, a nonce, a ciphertext (hex, base64, UUIDs) or a number (a latency's decimals), where "4111"
turns up by chance (one run in some dozens)."""


def holds_plain_card(stored: str | bytes) -> bool:
    text = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else stored
    return _PLAIN_CARD.search(text) is not None
