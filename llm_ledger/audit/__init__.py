"""Tamper evidence over the ledger: Merkle seals of each tenant's events, ``llm-ledger audit verify``, and
what the dashboard shows of both (a session's events as stored, each shown stream checked, the last run).
See docs/ARCHITECTURE.md for its place among the layers."""

from llm_ledger.audit.errors import AuditConfigurationError, AuditError, SealRefusedError
from llm_ledger.audit.heads import SEAL_WITNESS_VARIABLE, VERIFY_STATE_VARIABLE, VERIFY_WITNESS_VARIABLE
from llm_ledger.audit.keys import PUBLIC_KEY_VARIABLE, SEAL_KEY_VARIABLE, PublicKey, SigningKey
from llm_ledger.audit.merkle import MerkleAccumulator, merkle_root
from llm_ledger.audit.report import AuditReport, Finding, Severity, TenantResult
from llm_ledger.audit.runs import MAX_STORED_FINDINGS
from llm_ledger.audit.sealer import seal_ledger
from llm_ledger.audit.seals import Seal
from llm_ledger.audit.since import parse_since
from llm_ledger.audit.verify import verify_ledger

__all__ = [
    "MAX_STORED_FINDINGS",
    "PUBLIC_KEY_VARIABLE",
    "SEAL_KEY_VARIABLE",
    "SEAL_WITNESS_VARIABLE",
    "VERIFY_STATE_VARIABLE",
    "VERIFY_WITNESS_VARIABLE",
    "AuditConfigurationError",
    "AuditError",
    "AuditReport",
    "Finding",
    "MerkleAccumulator",
    "PublicKey",
    "Seal",
    "SealRefusedError",
    "Severity",
    "SigningKey",
    "TenantResult",
    "merkle_root",
    "parse_since",
    "seal_ledger",
    "verify_ledger",
]
