"""The keyed digests the executor must make, computed here independently of ``llm_ledger.events.digests``:
HKDF-SHA256 of the suite's digest secret (``LLM_LEDGER_DIGEST_KEY``, set by tests/conftest.py) with the
tenant in the ``info``, then the standard library's HMAC-SHA-256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO_PREFIX = b"llm-ledger digest key v1\x00"


def suite_secret() -> bytes:
    return base64.b64decode(os.environ["LLM_LEDGER_DIGEST_KEY"], validate=True)


def tenant_key(tenant: str, secret: bytes | None = None) -> bytes:
    derive = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO_PREFIX + tenant.encode())
    return derive.derive(suite_secret() if secret is None else secret)


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"llm-ledger digest key id v1\x00" + key).hexdigest()[:16]


def keyed(tenant: str, data: bytes, secret: bytes | None = None) -> str:
    """The hex HMAC-SHA-256 of ``data`` under ``tenant``'s key."""
    return hmac.new(tenant_key(tenant, secret), data, hashlib.sha256).hexdigest()


def keyed_record(tenant: str, data: bytes) -> dict[str, str]:
    """The digest fields a record holds for ``data`` under ``tenant``'s key."""
    key = tenant_key(tenant)
    return {
        "digest": hmac.new(key, data, hashlib.sha256).hexdigest(),
        "digest_alg": "hmac-sha256",
        "key_id": key_id(key),
    }
