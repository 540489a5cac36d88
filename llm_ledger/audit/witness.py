"""The sealer's witness: before extending a tenant's seal chain, the sealer checks that the database's newest
seal is the head it recorded itself (``heads.HeadLog``), and after sealing it records the new head.

What it refuses, per tenant (``SealRefusedError`` names each): seals gone (the database's newest seal is
older than the recorded head, or there is none, or the tenant is gone altogether), a head replaced (same
sequence, another hash) or its row edited under the recorded hash, and seals after the recorded head that
this sealer did not sign. A seal after the head that *is* signed with the sealer's key and chains from the
head is its own, made by a run that stopped before recording it: it is recorded (``recovered``) and sealing
goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from llm_ledger.audit.heads import Head, HeadLog
from llm_ledger.audit.keys import SigningKey
from llm_ledger.audit.queries import AuditQueries
from llm_ledger.audit.seals import Seal


def head_of(seal: Seal) -> Head:
    return Head(seal.tenant_id, seal.sequence, seal.seal_hash)


@dataclass(slots=True)
class SealerWitness:
    """The witness of one ``seal_ledger`` run, read (and locked) by the caller."""

    log: HeadLog
    signing_key: SigningKey | None
    refusals: list[str] = field(default_factory=list)

    def refuse(self, tenant_id: str, detail: str) -> None:
        # As stored: whoever shows it escapes it (the CLI with ``report.printable``, as verify's report does).
        self.refusals.append(f"tenant '{tenant_id}': {detail}; not sealing it ({self.log.path})")

    def is_new(self) -> bool:
        return not self.log.entries

    def adopt(self, connection: Connection, queries: AuditQueries, tenants: Sequence[str]) -> None:
        """Start the witness on a ledger already sealed: trust the database's current heads."""
        heads = []
        for tenant in tenants:
            row = queries.last_seal(connection, tenant)
            if row is not None:
                heads.append(head_of(Seal.from_row(row)))
        self.log.append(heads, "adopted", self.signing_key)

    def allows(self, connection: Connection, queries: AuditQueries, tenant_id: str, newest: Seal | None) -> bool:
        """Whether the sealer may extend ``tenant_id``'s chain, whose newest seal in the database is
        ``newest`` (called under the tenant's sealing lock); records what it refuses."""
        recorded = self.log.heads().get(tenant_id)
        if recorded is None:
            if newest is None:
                return True
            self.refuse(tenant_id, f"the database has seals up to {newest.sequence} that this witness never recorded")
            return False
        head = recorded.head
        if newest is None:
            self.refuse(
                tenant_id,
                f"the witness recorded seal {head.sequence} ({head.seal_hash}) at line {recorded.line}, the database"
                " has no seal of this tenant: its seals were removed",
            )
            return False
        if newest.sequence < head.sequence:
            self.refuse(
                tenant_id,
                f"the witness recorded seal {head.sequence} ({head.seal_hash}) at line {recorded.line}, the"
                f" database's newest is seal {newest.sequence}: seals were removed",
            )
            return False
        # From the recorded head on: the seals before it are verify's to check, and a tenant has a seal for
        # every round of the sealer.
        chain = [Seal.from_row(row) for row in queries.seals_of(connection, tenant_id, head.sequence)]
        at_head = next((seal for seal in chain if seal.sequence == head.sequence), None)
        if at_head is None or at_head.seal_hash != head.seal_hash:
            shown = at_head.seal_hash if at_head else "missing"
            self.refuse(
                tenant_id,
                f"seal {head.sequence} is {shown}, the witness recorded {head.seal_hash} at line {recorded.line}:"
                " the chain was replaced",
            )
            return False
        if at_head.computed_hash() != at_head.seal_hash:
            # The next seal starts where this row's range ends and links to its stored hash: a row edited
            # under the recorded hash would have the sealer sign on from a range it never sealed.
            self.refuse(
                tenant_id,
                f"seal {head.sequence}'s fields do not give its hash (they give {at_head.computed_hash()}): the"
                " recorded head's row was edited",
            )
            return False
        later = [seal for seal in chain if seal.sequence > head.sequence]
        return not later or self._recover(at_head, later)

    def _recover(self, head: Seal, later: list[Seal]) -> bool:
        """Record seals after the head that this sealer signed and that chain from it; refuse otherwise."""
        previous = head
        for seal in later:
            is_ours = (
                self.signing_key is not None
                and seal.signature is not None
                and seal.sequence == previous.sequence + 1
                and seal.prev_seal_hash == previous.seal_hash
                and seal.computed_hash() == seal.seal_hash
                and self.signing_key.public_key.is_signature_of(seal.signature, seal.seal_hash)
            )
            if not is_ours:
                self.refuse(
                    seal.tenant_id,
                    f"seal {seal.sequence} after the recorded head {head.sequence} was not made by this sealer"
                    " (not signed with its key, or not chained from its head)",
                )
                return False
            previous = seal
        self.log.append([head_of(seal) for seal in later], "recovered", self.signing_key)
        return True

    def record(self, seal: Seal) -> None:
        self.log.append([head_of(seal)], "sealed", self.signing_key)
