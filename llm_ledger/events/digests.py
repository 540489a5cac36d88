"""Keyed digests of captured content: HMAC-SHA-256 under a per-tenant key, so that nobody without the key
can confirm a guessed prompt against the ledger, while an auditor given the tenant's key can.

One operator secret (32 random bytes) gives every tenant its key by HKDF-SHA256, the tenant id in the
``info``: the writer derives a key without asking the database, and a tenant's key handed to an auditor
tells nothing of another tenant's (nor of the secret). A key is named by its ``key_id``, a SHA-256 of the
key under a prefix of its own, stored beside each digest: a digest names the key it was made under, so a
secret can be replaced (rotation) and older digests still be checked with the keys they name.

What is digested is what the plain SHA-256 of events before keyed digests was over (``values``): the
canonical JSON of the messages sent, the UTF-8 bytes of a response text, a tool call's arguments or a
tool's result. Pure: where the secret comes from is the executor's business (``executor.digest_secret``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from llm_ledger.errors import LedgerError
from llm_ledger.events.key_text import KEY_BYTES, decode_key

DIGEST_ALG: Final = "hmac-sha256"
"""``digest_alg`` of a keyed digest. Digests of events before keyed digests are the plain SHA-256 in the
record's ``sha256`` field (the audit views label them ``sha256``)."""
PLAIN_DIGEST_ALG: Final = "sha256"
_INFO_PREFIX = b"llm-ledger digest key v1\x00"
_KEY_ID_PREFIX = b"llm-ledger digest key id v1\x00"
_SECRET_ID_PREFIX = b"llm-ledger digest secret id v1\x00"
_KEY_ID_HEX = 16


class DigestKeyError(LedgerError, ValueError):
    """A digest key or secret that is not the base64 of 32 bytes."""


def _raw_key(text: str, what: str) -> bytes:
    raw = decode_key(text)
    if raw is None:
        raise DigestKeyError(f"{what} must be the base64 of {KEY_BYTES} bytes")
    return raw


def key_id_of(key: bytes) -> str:
    """The name of a key as events store it: hex of the first 8 bytes of SHA-256 over the key, under a
    prefix of its own (so that it is the digest of nothing else)."""
    return hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:_KEY_ID_HEX]


@dataclass(frozen=True, slots=True)
class DigestKey:
    """One tenant's HMAC-SHA-256 key and its id."""

    key: bytes = field(repr=False)
    key_id: str

    @classmethod
    def of(cls, key: bytes) -> DigestKey:
        if len(key) != KEY_BYTES:
            raise DigestKeyError(f"a digest key is {KEY_BYTES} bytes, not {len(key)}")
        return cls(key, key_id_of(key))

    @classmethod
    def parse(cls, text: str, what: str = "the digest key") -> DigestKey:
        """From the base64 of its 32 bytes (what ``llm-ledger audit digest-key`` prints)."""
        return cls.of(_raw_key(text, what))

    def text(self) -> str:
        return base64.b64encode(self.key).decode()

    def digest(self, data: bytes) -> str:
        """Lower-case hex HMAC-SHA-256 of ``data``."""
        return hmac.digest(self.key, data, "sha256").hex()

    def values(self, data: bytes) -> dict[str, Any]:
        """The record fields of a keyed digest of ``data``: ``digest``, ``digest_alg``, ``key_id``."""
        return {"digest": self.digest(data), "digest_alg": DIGEST_ALG, "key_id": self.key_id}


@dataclass(frozen=True, slots=True)
class DigestSecret:
    """The operator's secret that every tenant's digest key is derived from (HKDF-SHA256, no salt: the
    secret is uniformly random; ``info`` is a fixed prefix and the tenant id's UTF-8)."""

    secret: bytes = field(repr=False)
    _keys: dict[str, DigestKey] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise DigestKeyError(f"a digest secret is {KEY_BYTES} bytes, not {len(self.secret)}")

    @classmethod
    def generate(cls) -> DigestSecret:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def parse(cls, text: str, what: str = "the digest secret") -> DigestSecret:
        return cls(_raw_key(text, what))

    def text(self) -> str:
        return base64.b64encode(self.secret).decode()

    def fingerprint(self) -> str:
        """A name of the secret to log and compare (hex, as a key id), which tells nothing of it."""
        return hashlib.sha256(_SECRET_ID_PREFIX + self.secret).hexdigest()[:_KEY_ID_HEX]

    def tenant_key(self, tenant_id: str) -> DigestKey:
        """Tenant ``tenant_id``'s key, derived once per tenant and kept (a dict read on the call path)."""
        key = self._keys.get(tenant_id)
        if key is None:
            derived = HKDF(
                algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_INFO_PREFIX + tenant_id.encode()
            ).derive(self.secret)
            key = self._keys.setdefault(tenant_id, DigestKey.of(derived))
        return key
