"""The audit's errors."""

from __future__ import annotations

from typing import Any

from llm_ledger.errors import LedgerError


class AuditError(LedgerError):
    """Base of the audit's errors: sealing and verifying the ledger."""


class AuditConfigurationError(AuditError, ValueError):
    """Raised for an audit option or key that cannot be used (a malformed key, an unreadable ``--since``, a
    database without the audit tables); the CLI exits with status 2."""


class SealRefusedError(AuditError):
    """Raised by ``seal_ledger`` with a witness when a tenant's seal chain in the database is not the one the
    witness recorded (seals removed, replaced, or added by someone else): the sealer does not extend a chain
    whose head it did not write. ``made`` holds the seals made for the other tenants; the CLI exits 1."""

    def __init__(self, refusals: list[str], made: list[Any]) -> None:
        super().__init__("\n".join(refusals))
        self.refusals = refusals
        self.made = made
