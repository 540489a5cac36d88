"""Ed25519 keys for signing seals, in the forms an operator can pass through the environment.

A key is the base64 of its 32 raw bytes (what ``llm-ledger audit keygen`` prints). The private key
(``LLM_LEDGER_SEAL_KEY``) may also be PEM (PKCS#8) text or the path of a PEM file, for keys kept by a
secrets manager in that form. A signature signs the seal's hash with a domain prefix, so that a seal
signature can never be replayed as a signature of anything else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.environment import LLM_LEDGER_SEAL_KEY, LLM_LEDGER_SEAL_PUBLIC_KEY
from llm_ledger.events import decode_key, key_file

SEAL_KEY_VARIABLE = LLM_LEDGER_SEAL_KEY.name
PUBLIC_KEY_VARIABLE = LLM_LEDGER_SEAL_PUBLIC_KEY.name
_SIGNED_PREFIX = b"llm-ledger seal v1\n"
_HEAD_PREFIX = b"llm-ledger head v1\n"
"""Heads kept outside the database (``audit.heads``) are signed under their own prefix: a head's
signature can never pass for a seal's, nor a seal's for a head's."""


def _raw_bytes(text: str, what: str) -> bytes:
    raw = decode_key(text)
    if raw is None:
        raise AuditConfigurationError(
            f"{what} must be the base64 of 32 raw Ed25519 key bytes (as `llm-ledger audit keygen` prints)"
        )
    return raw


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key that signs seals."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, value: str) -> SigningKey:
        """From base64 of the 32 raw bytes, PEM text, or the path of a PEM file."""
        text = value.strip()
        path = None if text.startswith("-----BEGIN") else key_file(text)
        if path is not None:
            text = path.read_text()
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(text.encode(), password=None)
            except (ValueError, TypeError) as exc:
                raise AuditConfigurationError(f"{SEAL_KEY_VARIABLE}: not a readable PEM private key ({exc})") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise AuditConfigurationError(f"{SEAL_KEY_VARIABLE}: the PEM key is not an Ed25519 key")
            return cls(key)
        return cls(Ed25519PrivateKey.from_private_bytes(_raw_bytes(text, SEAL_KEY_VARIABLE)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SigningKey | None:
        value = LLM_LEDGER_SEAL_KEY.get(environ)
        return cls.parse(value) if value else None

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.private.public_key())

    def text(self) -> str:
        """The base64 of the 32 raw private bytes."""
        raw = self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(raw).decode()

    def sign(self, seal_hash: str) -> str:
        """The base64 signature of a seal hash."""
        return base64.b64encode(self.private.sign(_SIGNED_PREFIX + seal_hash.encode())).decode()

    def sign_head(self, entry_hash: str) -> str:
        """The base64 signature of a witness entry's hash (``audit.heads``)."""
        return base64.b64encode(self.private.sign(_HEAD_PREFIX + entry_hash.encode())).decode()


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key that checks seal signatures."""

    public: Ed25519PublicKey

    @classmethod
    def parse(cls, value: str, what: str = PUBLIC_KEY_VARIABLE) -> PublicKey:
        return cls(Ed25519PublicKey.from_public_bytes(_raw_bytes(value, what)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PublicKey | None:
        value = LLM_LEDGER_SEAL_PUBLIC_KEY.get(environ)
        return cls.parse(value) if value else None

    def text(self) -> str:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def is_signature_of(self, signature: str, seal_hash: str) -> bool:
        return self._verifies(signature, _SIGNED_PREFIX + seal_hash.encode())

    def is_head_signature_of(self, signature: str, entry_hash: str) -> bool:
        return self._verifies(signature, _HEAD_PREFIX + entry_hash.encode())

    def _verifies(self, signature: str, message: bytes) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
            self.public.verify(raw, message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.text() == other.text()

    def __hash__(self) -> int:
        return hash(self.text())
