"""Seals: per tenant, an RFC 6962 Merkle root over the events not sealed yet, chained to the previous seal.

A seal's leaves are the 32-byte hashes of its range's events in cursor order (``queries.SealRange``). Its
own hash covers every field but the signature, including the previous seal's hash, so a removed or edited
seal breaks the chain that follows it; with ``LLM_LEDGER_SEAL_KEY`` it is also signed (Ed25519). The
manifest rows (one per stream of the range) are covered through ``manifest_digest``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_ledger.audit.merkle import MerkleAccumulator
from llm_ledger.audit.queries import SealRange
from llm_ledger.events import canonical_json, sha256_hex
from llm_ledger.store import Cursor, as_utc


@dataclass(frozen=True, slots=True)
class Seal:
    """One seal as stored in ``llm_ledger_seals``."""

    tenant_id: str
    sequence: int
    after: Cursor
    through: Cursor
    event_count: int
    stream_count: int
    first_occurred_at: datetime
    last_occurred_at: datetime
    merkle_root: str
    manifest_digest: str
    sealed_at: datetime
    prev_seal_hash: str | None
    seal_hash: str
    public_key: str | None = None
    signature: str | None = None

    @property
    def range(self) -> SealRange:
        return SealRange(self.tenant_id, self.after, self.through)

    def computed_hash(self) -> str:
        """SHA-256 over the canonical JSON of every field but the hash, key and signature (timestamps in UTC
        to the microsecond, which both databases keep); equal to ``seal_hash`` unless the row was changed."""
        return sha256_hex(
            canonical_json(
                {
                    "tenant_id": self.tenant_id,
                    "sequence": self.sequence,
                    "after": [self.after.tx_id, self.after.position],
                    "through": [self.through.tx_id, self.through.position],
                    "event_count": self.event_count,
                    "stream_count": self.stream_count,
                    "first_occurred_at": _timestamp(self.first_occurred_at),
                    "last_occurred_at": _timestamp(self.last_occurred_at),
                    "merkle_root": self.merkle_root,
                    "manifest_digest": self.manifest_digest,
                    "sealed_at": _timestamp(self.sealed_at),
                    "prev_seal_hash": self.prev_seal_hash,
                }
            )
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "sequence": self.sequence,
            "after_tx": self.after.tx_id,
            "after_position": self.after.position,
            "through_tx": self.through.tx_id,
            "through_position": self.through.position,
            "event_count": self.event_count,
            "stream_count": self.stream_count,
            "first_occurred_at": self.first_occurred_at,
            "last_occurred_at": self.last_occurred_at,
            "merkle_root": self.merkle_root,
            "manifest_digest": self.manifest_digest,
            "sealed_at": self.sealed_at,
            "prev_seal_hash": self.prev_seal_hash,
            "seal_hash": self.seal_hash,
            "public_key": self.public_key,
            "signature": self.signature,
        }

    @classmethod
    def from_row(cls, row: Any) -> Seal:
        return cls(
            tenant_id=row.tenant_id,
            sequence=int(row.sequence),
            after=Cursor(int(row.after_tx), int(row.after_position)),
            through=Cursor(int(row.through_tx), int(row.through_position)),
            event_count=int(row.event_count),
            stream_count=int(row.stream_count),
            first_occurred_at=as_utc(row.first_occurred_at),
            last_occurred_at=as_utc(row.last_occurred_at),
            merkle_root=row.merkle_root,
            manifest_digest=row.manifest_digest,
            sealed_at=as_utc(row.sealed_at),
            prev_seal_hash=row.prev_seal_hash,
            seal_hash=row.seal_hash,
            public_key=row.public_key,
            signature=row.signature,
        )


def _timestamp(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def leaf_of(event_hash: str) -> bytes:
    """An event's leaf: its hash's 32 bytes (a stored hash that is not 64 hex digits is hashed as text: it
    cannot match a sealed leaf, and it must not stop the count)."""
    try:
        raw = bytes.fromhex(event_hash)
    except (TypeError, ValueError):
        raw = b""
    return raw if len(raw) == 32 else hashlib.sha256(str(event_hash).encode()).digest()


@dataclass(slots=True)
class RangeDigest:
    """What a pass over a range's events in cursor order gives."""

    root: str
    count: int
    first_occurred_at: datetime | None
    last_occurred_at: datetime | None


def digest_range(leaves: Iterable[Sequence[Any]]) -> RangeDigest:
    """The Merkle root, count and time span of a range's events: each one's ``(hash, occurred_at)`` in cursor
    order (the rows of ``AuditQueries.leaves`` as they are: a row is unpacked, since reading a SQLAlchemy row's
    columns by name costs more than hashing the leaf)."""
    tree = MerkleAccumulator()
    add, leaf = tree.add, leaf_of
    first: datetime | None = None
    last: datetime | None = None
    for event_hash, moment in leaves:
        add(leaf(event_hash))
        # Compared as read (one query gives them all in the same zone, or all naive in UTC on SQLite), and
        # only the two kept turned into UTC.
        if first is None or moment < first:
            first = moment
        if last is None or moment > last:
            last = moment
    return RangeDigest(
        tree.root().hex(), tree.count, None if first is None else as_utc(first), None if last is None else as_utc(last)
    )


def manifest_digest(rows: Iterable[Sequence[Any]]) -> tuple[str, int]:
    """SHA-256 over a seal's manifest rows (``stream_id, first_position, last_position, event_count,
    head_hash``, unpacked as ``digest_range`` does) in byte order of the stream id, and how many rows."""
    digest = hashlib.sha256()
    count = 0
    for stream_id, first_position, last_position, event_count, head_hash in rows:
        digest.update(f"{stream_id} {first_position} {last_position} {event_count} {head_hash}\n".encode())
        count += 1
    return digest.hexdigest(), count
