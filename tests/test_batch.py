"""Batch documents: canonical bytes, strict parsing, verification against the chain's commitments."""

from __future__ import annotations

import hashlib
import random

import cbor2
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core.batch import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_CBOR_BYTES, BatchError, build_batch, compress_document, parse_document, verify_document
from dso.core.experience import Experience
from dso.core.merkle import merkle_root, prove_inclusion, verify_inclusion

NODE = bytes.fromhex("976ea74026e726554db657fa54763abd0c3a0aa9")
BASELINE = hashlib.sha256(b"baseline").digest()


def experiences(n: int, node: bytes = NODE) -> list[Experience]:
    return [
        Experience.create(
            text=f"When step {i} of a problem is unclear, restate the question in your own words.",
            domain="math.reasoning",
            confidence=0.5 + (i % 50) / 100,
            model="all-MiniLM-L6-v2",
            codec="bitdelta-1",
            code=bytes([i % 256]) * 50,
            node=node,
            created_at=1_700_000_000 + i,
        )
        for i in range(n)
    ]


def test_document_round_trips_and_root_is_the_merkle_root_of_the_leaves():
    document = build_batch(experiences(16), dim=384, baseline=BASELINE, created_at=1_700_000_100)
    data = document.to_bytes()
    assert data == build_batch(experiences(16), dim=384, baseline=BASELINE, created_at=1_700_000_100).to_bytes()
    parsed = verify_document(data, document.header.root, 16, document.header.schema_id)
    assert parsed == document
    assert document.header.root == merkle_root([e.canonical_bytes() for e in experiences(16)])


def test_a_leaf_proof_from_the_document_verifies_against_the_header_root():
    document = build_batch(experiences(9), dim=384, baseline=BASELINE, created_at=0)
    proof = prove_inclusion(document.leaves, 4)
    verify_inclusion(proof, document.header.root, document.leaves[4], tree_size=9)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_single_byte_mutation_is_rejected(data):
    """Strict parsing, the recomputed root and the schema reject every change except the creation
    time, which only the CID binds (the content store checks it on every get)."""
    document = build_batch(experiences(5), dim=384, baseline=BASELINE, created_at=1_700_000_000)
    original = document.to_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != original[position]))
    mutated = original[:position] + bytes([value]) + original[position + 1 :]
    try:
        parsed = verify_document(mutated, document.header.root, 5, document.header.schema_id)
    except BatchError:
        return
    assert parsed.header.created_at != document.header.created_at  # the only field the CID alone binds
    assert hashlib.sha256(mutated).digest() != hashlib.sha256(original).digest()


def test_wrong_onchain_root_count_or_schema_is_rejected():
    document = build_batch(experiences(3), dim=384, baseline=BASELINE, created_at=0)
    data = document.to_bytes()
    with pytest.raises(BatchError, match="on-chain root"):
        verify_document(data, bytes(32))
    with pytest.raises(BatchError, match="the chain says 4"):
        verify_document(data, document.header.root, 4)
    with pytest.raises(BatchError, match="schema"):
        verify_document(data, document.header.root, 3, bytes(32))


def test_valid_cbor_with_the_wrong_schema_is_rejected():
    document = build_batch(experiences(2), dim=384, baseline=BASELINE, created_at=0)
    body = cbor2.loads(document.to_cbor())
    cases = [
        {**body, "v": 2},
        {**body, "extra": 1},
        {k: v for k, v in body.items() if k != "root"},
        {**body, "leaves": []},
        {**body, "leaves": ["text"]},
        {**body, "count": 3},
        {**body, "node": b"\x00" * 20},
        {**body, "root": b"\x00" * 32},
        {**body, "baseline": b"\x00" * 31},
        {**body, "dim": -1},
        {**body, "leaves": body["leaves"][::-1]},
    ]
    for case in cases:
        with pytest.raises(BatchError):
            parse_document(cbor2.dumps(case, canonical=True))
    with pytest.raises(BatchError, match="canonical"):
        parse_document(cbor2.dumps(dict(reversed(list(body.items())))))
    for junk in (b"", b"\xff", cbor2.dumps([1]), b"\x00" * 10):
        with pytest.raises(BatchError):
            parse_document(junk)


def test_build_refuses_mixed_nodes_duplicates_empty_and_oversize():
    other = experiences(1, node=b"\x01" * 20)
    with pytest.raises(BatchError, match="share"):
        build_batch(experiences(2) + other, dim=384, baseline=BASELINE, created_at=0)
    with pytest.raises(BatchError, match="repeat"):
        build_batch(experiences(2) + experiences(1), dim=384, baseline=BASELINE, created_at=0)
    with pytest.raises(BatchError, match="at least one"):
        build_batch([], dim=384, baseline=BASELINE, created_at=0)
    big = [
        # random codes: incompressible, so the compressed document exceeds one IPFS block too
        Experience.create(text="x" * 900 + str(i), domain="d", confidence=1, model="m", codec="c", code=random.Random(i).randbytes(4000), node=NODE, created_at=0)
        for i in range(300)
    ]
    with pytest.raises(BatchError, match="split it"):
        build_batch(big, dim=384, baseline=BASELINE, created_at=0).to_bytes()
    with pytest.raises(BatchError, match="above"):
        parse_document(b"\x00" * (MAX_DOCUMENT_BYTES + 1))


def test_the_pinned_object_is_one_zstd_frame_of_the_canonical_cbor_and_bare_cbor_still_reads():
    document = build_batch(experiences(64), dim=384, baseline=BASELINE, created_at=1_700_000_100)
    pinned, cbor = document.to_bytes(), document.to_cbor()
    assert zstandard.ZstdDecompressor().decompress(pinned) == cbor and len(pinned) < len(cbor) / 2
    assert parse_document(pinned) == parse_document(cbor) == document  # documents published before compression


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (zstandard.ZstdCompressor(write_content_size=True).compress(bytes(MAX_DOCUMENT_CBOR_BYTES + 1)), "declares 33,554,433 bytes"),
        (zstandard.ZstdCompressor(write_content_size=False).compress(b"\xa0" * 1000), "does not declare its size"),
        (compress_document(b"\xa0") + b"\x00", "exactly one complete zstd frame"),
        (compress_document(b"\xa0")[:-2], "corrupt|exactly one complete"),
        (b"\x28\xb5\x2f\xfd" + bytes(3), "not a valid zstd frame|does not declare"),
    ],
    ids=["bomb", "no-size", "trailing", "truncated", "bad-header"],
)
def test_a_compressed_document_is_bounded_before_it_is_decompressed(frame, needle):
    """A 32 MiB-and-one-byte bomb compresses to a few KB; it is refused from its frame header."""
    assert len(frame) < MAX_DOCUMENT_BYTES
    with pytest.raises(BatchError, match=needle):
        parse_document(frame)
