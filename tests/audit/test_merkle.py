"""The Merkle tree hash against RFC 6962's definition and Certificate Transparency's reference vectors."""

from __future__ import annotations

import hashlib
import random

import pytest

from llm_ledger.audit import MerkleAccumulator, merkle_root

# Certificate Transparency's test data (merkle_tree_test.cc): the leaves, and the tree hash of the first n.
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the definition reads: recursive, split at the largest power of two
    smaller than n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_the_root_of_the_first_n_reference_leaves_is_certificate_transparencys(size: int) -> None:
    assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_the_reference_implementation_agrees_with_the_vectors_too() -> None:
    assert [reference_root(CT_LEAVES[:size]).hex() for size in range(len(CT_ROOTS))] == CT_ROOTS


def test_every_tree_shape_up_to_130_leaves_matches_the_recursive_definition() -> None:
    rng = random.Random(6962)
    leaves = [rng.randbytes(32) for _ in range(130)]
    accumulator = MerkleAccumulator()
    for size in range(1, len(leaves) + 1):
        accumulator.add(leaves[size - 1])
        assert accumulator.root() == reference_root(leaves[:size]), size
        assert accumulator.count == size


def test_order_matters_and_a_leaf_is_not_a_node() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert merkle_root([a, b]) != merkle_root([b, a])
    # A one-leaf tree over the concatenation of two children is not their parent (0x00 versus 0x01).
    assert merkle_root([a + b]) != merkle_root([a, b])
