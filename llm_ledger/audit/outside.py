"""Verify's check of the database's seal chains against heads kept outside it (``heads.HeadLog``): the
sealer's witness and verify's own state of earlier runs.

The chain of seals in the database is checked link by link (``verify``), so a recorded head that is still
there with its hash vouches for every seal before it; what only a record kept elsewhere can show is a head
that is gone (seals removed, the newest or all of them), replaced, or a tenant gone altogether. Against the
witness, a seal after its head is one the sealer never recorded: a forgery unless it is signed with the
sealer's key (then the sealer stopped before recording it, or is recording it at this moment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.audit.heads import Entry, Head, HeadLog
from llm_ledger.audit.keys import PublicKey
from llm_ledger.audit.report import Finding, TenantResult
from llm_ledger.audit.seals import Seal

CHAIN_CONTRADICTED = frozenset({"tenant_gone", "seal_head_gone", "seal_head_replaced"})
"""The findings that a head kept outside is not the database's: its seal chain as a whole is in doubt (the
seals before the head are vouched for only by it), whatever seal the finding names."""


@dataclass(slots=True)
class RecordedHeads:
    """One head log as verify uses it: ``label`` names it in findings; ``is_witness`` for the sealer's (read
    again when a chain has a seal after the head it recorded: the sealer may have sealed since verify began).
    """

    log: HeadLog
    label: str
    is_witness: bool
    public_key: PublicKey | None = None

    def findings(self) -> list[Finding]:
        """What is wrong with the log itself."""
        return [
            Finding(problem.tenant_id or "", problem.kind, problem.severity, f"{self.label}: {problem.detail}")
            for problem in self.log.problems
        ]

    def check(self, result: TenantResult, chain: Sequence[Seal], has_events: bool) -> None:
        """Hold ``result``'s tenant's seal chain (as stored, in sequence) against the recorded head."""
        recorded = self.log.heads().get(result.tenant_id)
        if self.is_witness and chain and chain[-1].sequence > (recorded.head.sequence if recorded else 0):
            # Read when verify began, before this chain: a seal made since then is in the witness now, and
            # without a seal key it could not be told from a forgery.
            self.log = HeadLog.read(self.log.path, self.public_key)
            recorded = self.log.heads().get(result.tenant_id)
        if recorded is not None and not self._head_is_there(result, recorded, chain, has_events):
            return
        if self.is_witness:
            self._check_unwitnessed(result, chain, recorded.head.sequence if recorded else 0)

    def _where(self, recorded: Entry) -> str:
        return f"the {self.label} {self.log.path} recorded at line {recorded.line}"

    def _head_is_there(self, result: TenantResult, recorded: Entry, chain: Sequence[Seal], has_events: bool) -> bool:
        head, tenant = recorded.head, result.tenant_id
        if not chain and not has_events:
            result.add(
                Finding(
                    tenant,
                    "tenant_gone",
                    "broken",
                    f"the tenant has no event and no seal left; {self._where(recorded)} {_described(head)}",
                )
            )
            return False
        if head.sequence == 0:
            return True
        newest = chain[-1] if chain else None
        if newest is None or newest.sequence < head.sequence:
            result.add(
                Finding(
                    tenant,
                    "seal_head_gone",
                    "broken",
                    f"{self._where(recorded)} {_described(head)}; the database's newest seal is"
                    f" {newest.sequence if newest else 'none'}: seals were removed",
                    seal_sequence=head.sequence,
                )
            )
            return False
        at_head = next((seal for seal in chain if seal.sequence == head.sequence), None)
        if at_head is None or at_head.seal_hash != head.seal_hash:
            result.add(
                Finding(
                    tenant,
                    "seal_head_replaced",
                    "broken",
                    f"{self._where(recorded)} {_described(head)}; the database's seal {head.sequence} is"
                    f" {at_head.seal_hash if at_head else 'missing'}: the chain up to it was replaced",
                    seal_sequence=head.sequence,
                )
            )
            return False
        return True

    def _check_unwitnessed(self, result: TenantResult, chain: Sequence[Seal], head_sequence: int) -> None:
        later = [seal for seal in chain if seal.sequence > head_sequence]
        # Only then: without a signed line, finding the signer looks through the whole witness.
        signer = self._signer() if later else None
        for seal in later:
            if (
                signer is not None
                and seal.signature is not None
                and signer.is_signature_of(seal.signature, seal.seal_hash)
            ):
                result.add(
                    Finding(
                        result.tenant_id,
                        "seal_not_witnessed_yet",
                        "warning",
                        f"signed with the sealer's key but not in the {self.label} {self.log.path} (yet): the"
                        " sealer records it after committing, or stopped before it could",
                        seal_sequence=seal.sequence,
                    )
                )
            else:
                result.add(
                    Finding(
                        result.tenant_id,
                        "seal_unwitnessed",
                        "broken",
                        f"not in the {self.label} {self.log.path} and not signed with the sealer's key: the sealer"
                        f" did not make it (its last recorded seal of the tenant is {head_sequence or 'none'})",
                        seal_sequence=seal.sequence,
                    )
                )

    def _signer(self) -> PublicKey | None:
        """The pinned key, else the key the witness's newest signed entry names."""
        if self.public_key is not None:
            return self.public_key
        named = self.log.signer()
        if named is None:
            return None
        try:
            return PublicKey.parse(named, "the witness's public_key")
        except AuditConfigurationError:
            return None


def _described(head: Head) -> str:
    if head.sequence == 0:
        return "the tenant (with events, not sealed yet)"
    return f"seal {head.sequence} ({head.seal_hash})"
