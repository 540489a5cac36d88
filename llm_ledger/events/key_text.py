"""The one text form of a 32-byte key or secret an operator passes: its base64, given as the value itself or
as the path of a file holding it (a secrets manager's mount). Shared by the digest secret and keys
(``events.digests``, ``executor.digest_secret``, ``audit.digests``) and the seal keys (``audit.keys``), each
of which words its own error.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Final

KEY_BYTES: Final = 32
_BASE64_LENGTH = 44


def looks_like_key(text: str) -> bool:
    """Base64 of 32 bytes is 44 characters ending in '='; a file path hardly ever is."""
    return len(text) == _BASE64_LENGTH and text.endswith("=")


def decode_key(text: str) -> bytes | None:
    """The 32 bytes ``text`` is the base64 of (surrounding blanks ignored), None when it is not that."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def key_file(value: str) -> Path | None:
    """The file ``value`` names, when it is no key itself but the path of an existing file."""
    text = value.strip()
    if looks_like_key(text):
        return None
    path = Path(text).expanduser()
    return path if path.is_file() else None


def read_key_file(path: Path) -> str:
    """A key file's text (ASCII); ``OSError`` or ``UnicodeDecodeError`` to the caller, to word."""
    return path.read_text(encoding="ascii").strip()
