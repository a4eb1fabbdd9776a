"""The experience model: validation with clear errors, one canonical encoding, strict decoding."""

from __future__ import annotations

import math

import cbor2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dso.core.experience import (
    MAX_TEXT_BYTES,
    Experience,
    ExperienceError,
    check_embedding,
    domain_matches,
)

NODE = bytes(range(20))


def make(**overrides) -> Experience:
    fields = dict(
        text="When solving equations, verify by substitution.",
        domain="math.algebra",
        confidence=0.9,
        model="all-MiniLM-L6-v2",
        codec="bitdelta-1",
        code=b"\x01" * 50,
        node=NODE,
        created_at=1_700_000_000,
        metadata=None,
    )
    fields.update(overrides)
    return Experience.create(**fields)


texts = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn")), min_size=1, max_size=200).filter(lambda t: t.strip())
domains = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}(\.[a-z0-9][a-z0-9_-]{0,8}){0,3}", fullmatch=True)
metadata = st.dictionaries(st.text(min_size=1, max_size=10), st.one_of(st.text(max_size=20), st.integers(-(2**40), 2**40), st.booleans()), max_size=4)


@given(text=texts, domain=domains, confidence=st.floats(0, 1), code=st.binary(min_size=1, max_size=100), meta=metadata)
def test_canonical_bytes_round_trip_and_are_deterministic(text, domain, confidence, code, meta):
    experience = make(text=text, domain=domain, confidence=confidence, code=code, metadata=meta)
    data = experience.canonical_bytes()
    again = Experience.from_bytes(data)
    assert again == experience
    assert again.canonical_bytes() == data
    assert abs(again.confidence - confidence) <= 5e-7


def test_equal_insights_in_different_unicode_forms_encode_identically():
    composed, decomposed = "Caf\u00e9 rule: verify.", "Cafe\u0301 rule: verify."
    assert make(text=composed).canonical_bytes() == make(text=f"  {decomposed}\n").canonical_bytes()


def test_non_canonical_encodings_are_refused():
    body = make().to_cbor_map()
    non_canonical = cbor2.dumps(dict(reversed(list(body.items()))))  # same map, unsorted keys
    assert non_canonical != make().canonical_bytes()
    with pytest.raises(ExperienceError, match="canonical"):
        Experience.from_bytes(non_canonical)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text": "   "}, "text is empty"),
        ({"text": "x" * (MAX_TEXT_BYTES + 1)}, "limit is"),
        ({"text": "bell\x07"}, "control"),
        ({"text": 42}, "must be a string"),
        ({"domain": "Math.Algebra"}, "dotted lowercase"),
        ({"domain": "math..algebra"}, "dotted lowercase"),
        ({"domain": ""}, "dotted lowercase"),
        ({"confidence": 1.5}, r"in \[0, 1\]"),
        ({"confidence": -0.1}, r"in \[0, 1\]"),
        ({"confidence": math.nan}, r"in \[0, 1\]"),
        ({"confidence": True}, "number"),
        ({"model": ""}, "model"),
        ({"codec": "bit delta"}, "codec"),
        ({"code": b""}, "code"),
        ({"node": b"\x00" * 19}, "20-byte"),
        ({"node": "0xnothex"}, "hex address"),
        ({"created_at": -1}, "created_at"),
        ({"metadata": {"score": 0.5}}, "string, integer or boolean"),
        ({"metadata": {"": "x"}}, "key"),
        ({"metadata": {"k": "v" * 3000}}, "exceeds"),
    ],
)
def test_invalid_fields_are_rejected_with_a_clear_error(overrides, message):
    with pytest.raises(ExperienceError, match=message):
        make(**overrides)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xff", cbor2.dumps([1, 2]), cbor2.dumps({"v": 1}), cbor2.dumps({**make().to_cbor_map(), "v": 2}, canonical=True),
     cbor2.dumps({**make().to_cbor_map(), "extra": 1}, canonical=True), cbor2.dumps({**make().to_cbor_map(), "conf": 2_000_000}, canonical=True)],
)
def test_malformed_bytes_are_rejected(data):
    with pytest.raises(ExperienceError):
        Experience.from_bytes(data)


@pytest.mark.parametrize(
    ("vector", "message"),
    [([0.1] * 383, "shape"), ([math.nan] + [0.1] * 383, "NaN"), ([math.inf] + [0.1] * 383, "NaN or infinite"), ([0.0] * 384, "zeros"), (["a"] * 384, "not a list of numbers")],
)
def test_bad_embeddings_are_rejected(vector, message):
    with pytest.raises(ExperienceError, match=message):
        check_embedding(vector, 384)


def test_good_embedding_becomes_float32():
    assert check_embedding(np.ones(384), 384).dtype == np.float32


def test_experience_id_is_sha256_of_canonical_bytes_and_changes_with_any_field():
    base = make()
    assert len(base.experience_id) == 64
    variants = [make(text="Other."), make(domain="math"), make(confidence=0.8), make(code=b"\x02" * 50), make(created_at=1)]
    assert len({base.experience_id, *(v.experience_id for v in variants)}) == 6


def test_domain_prefix_matching_respects_segments():
    assert domain_matches("math.algebra", "math") and domain_matches("math", "math")
    assert not domain_matches("mathematics", "math")
