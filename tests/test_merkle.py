"""Merkle batches: proofs verify with nothing but the root, agree with pymerkle, and tampering fails."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymerkle import verify_inclusion as pymerkle_verify

from dso.core.merkle import (
    InclusionProof,
    ProofError,
    build_tree,
    leaf_hash,
    merkle_root,
    node_hash,
    prove_inclusion,
    verify_inclusion,
)

leaf_lists = st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=70)


@given(leaves=leaf_lists, data=st.data())
def test_every_proof_verifies_from_json_with_only_the_root(leaves, data):
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    proof = InclusionProof.from_json(prove_inclusion(leaves, index).to_json())
    verify_inclusion(proof, root, leaves[index])


@given(leaves=leaf_lists, data=st.data())
def test_our_proofs_are_pymerkles_proofs(leaves, data):
    index = data.draw(st.integers(0, len(leaves) - 1))
    tree = build_tree(leaves)
    ours = prove_inclusion(leaves, index, tree)
    pymerkle_verify(ours.leaf_hash, tree.get_root(), tree.prove_inclusion(index + 1))
    assert ours.leaf_hash == leaf_hash(leaves[index])


@given(leaves=st.lists(st.binary(min_size=0, max_size=8), min_size=1, max_size=300))
def test_the_level_by_level_root_is_pymerkles_root(leaves):
    """merkle_root hashes level by level (fast); pymerkle builds the RFC 9162 tree node by node."""
    assert merkle_root(leaves) == bytes(build_tree(leaves).get_root())


def test_root_is_rfc9162_with_domain_separation():
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([a]) == leaf_hash(a)
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))


def test_an_inner_node_cannot_pose_as_a_leaf():
    """Without 0x00/0x01 prefixes, L||R of an inner node would prove as a 64-byte 'leaf'."""
    leaves = [b"a", b"b", b"c", b"d"]
    root = merkle_root(leaves)
    forged_leaf = leaf_hash(b"a") + leaf_hash(b"b")
    forged = InclusionProof(2, 0, leaf_hash(forged_leaf), (node_hash(leaf_hash(b"c"), leaf_hash(b"d")),))
    with pytest.raises(ProofError):
        verify_inclusion(forged, root, forged_leaf)


@given(leaves=st.lists(st.binary(max_size=20), min_size=2, max_size=40, unique=True), data=st.data())
def test_any_tampering_with_a_proof_is_detected(leaves, data):
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    proof = prove_inclusion(leaves, index)
    mutation = data.draw(st.sampled_from(["index", "size", "leaf", "path_bit", "path_drop", "path_extra"]))
    if mutation == "index":
        other = data.draw(st.integers(0, len(leaves) - 1).filter(lambda i: i != index))
        bad = InclusionProof(proof.tree_size, other, proof.leaf_hash, proof.path)
    elif mutation == "size":
        bad = InclusionProof(proof.tree_size + data.draw(st.integers(1, 64)), index, proof.leaf_hash, proof.path)
    elif mutation == "leaf":
        bad = InclusionProof(proof.tree_size, index, bytes(32), proof.path)
    elif mutation == "path_bit" and proof.path:
        i = data.draw(st.integers(0, len(proof.path) - 1))
        flipped = bytes([proof.path[i][0] ^ 1]) + proof.path[i][1:]
        bad = InclusionProof(proof.tree_size, index, proof.leaf_hash, proof.path[:i] + (flipped,) + proof.path[i + 1 :])
    elif mutation == "path_drop" and proof.path:
        bad = InclusionProof(proof.tree_size, index, proof.leaf_hash, proof.path[:-1])
    else:
        bad = InclusionProof(proof.tree_size, index, proof.leaf_hash, proof.path + (bytes(32),))
    with pytest.raises(ProofError):
        verify_inclusion(bad, root, leaves[index] if mutation != "leaf" else None, tree_size=len(leaves))


def test_a_path_can_fit_another_tree_size_so_the_size_must_be_bound():
    leaves = [b"a", b"b", b"c"]
    proof = prove_inclusion(leaves, 0)
    claims_four = InclusionProof(4, 0, proof.leaf_hash, proof.path)
    verify_inclusion(claims_four, merkle_root(leaves))  # true inclusion, false size: RFC 9162 allows it
    with pytest.raises(ProofError, match="tree of 4 leaves"):
        verify_inclusion(claims_four, merkle_root(leaves), tree_size=3)


def test_proof_for_other_data_is_refused():
    leaves = [b"x", b"y"]
    with pytest.raises(ProofError, match="another leaf"):
        verify_inclusion(prove_inclusion(leaves, 0), merkle_root(leaves), b"y")


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        json.dumps({"version": 2, "algorithm": "sha256", "tree_size": 1, "leaf_index": 0, "leaf_hash": "00" * 32, "path": []}),
        json.dumps({"version": 1, "algorithm": "sha256", "tree_size": 1, "leaf_index": 1, "leaf_hash": "00" * 32, "path": []}),
        json.dumps({"version": 1, "algorithm": "sha256", "tree_size": 2, "leaf_index": 0, "leaf_hash": "zz" * 32, "path": []}),
        json.dumps({"version": 1, "algorithm": "sha256", "tree_size": 2, "leaf_index": 0, "leaf_hash": "00" * 32, "path": ["00"]}),
        json.dumps({"version": 1, "algorithm": "sha256", "tree_size": True, "leaf_index": 0, "leaf_hash": "00" * 32, "path": []}),
    ],
)
def test_malformed_proof_documents_are_refused(document):
    with pytest.raises(ProofError):
        InclusionProof.from_json(document)


def test_empty_tree_and_out_of_range_index_are_errors():
    with pytest.raises(ProofError):
        merkle_root([])
    with pytest.raises(ProofError):
        prove_inclusion([b"a"], 1)
