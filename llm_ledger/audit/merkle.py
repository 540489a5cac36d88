"""RFC 6962 (Certificate Transparency) Merkle tree hashes, computed in one pass over the leaves.

MTH({}) = SHA-256(""); MTH({d}) = SHA-256(0x00 || d); MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) ||
MTH(D[k:n])) with k the largest power of two smaller than n (RFC 6962 section 2.1). A seal covers
millions of events, so the tree is never built: ``MerkleAccumulator`` keeps one root per perfect subtree
of the leaves seen so far (at most one per bit of the count), which is also how RFC 6962 splits the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_sha256 = hashlib.sha256
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


class MerkleAccumulator:
    """Add leaves in order; ``root()`` is the RFC 6962 tree hash of those added so far. O(log n) memory."""

    __slots__ = ("_count", "_subtrees")

    def __init__(self) -> None:
        self._subtrees: list[tuple[int, bytes]] = []  # (leaf count, root) of perfect subtrees, left to right
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def add(self, leaf: bytes) -> None:
        # leaf_hash and node_hash written out: this runs for every event a seal or a verify reads.
        size, digest = 1, _sha256(_LEAF + leaf).digest()
        subtrees = self._subtrees
        while subtrees and subtrees[-1][0] == size:
            left_size, left = subtrees.pop()
            size, digest = left_size + size, _sha256(_NODE + left + digest).digest()
        subtrees.append((size, digest))
        self._count += 1

    def root(self) -> bytes:
        """The tree hash: the perfect subtrees folded right to left, which is where RFC 6962 splits (the
        left part of each split is the largest perfect subtree that fits)."""
        if not self._subtrees:
            return hashlib.sha256(b"").digest()
        digest = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            digest = node_hash(left, digest)
        return digest


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of ``leaves`` (raw bytes each; a seal's leaves are the events' 32-byte
    hashes)."""
    accumulator = MerkleAccumulator()
    for leaf in leaves:
        accumulator.add(leaf)
    return accumulator.root()
