"""The codecs: what a code means (signs or ternary levels of v - baseline, one scale), that its bytes
are exactly one spelling, that scores agree with decode, and that the default still retrieves
paraphrases once the top candidates are rescored."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dso.core.codec import (
    CODECS,
    DATA_DIR,
    DEFAULT_CODEC,
    NO_BASELINE,
    BitDelta,
    Codec,
    Ternary,
    baseline_id,
    codec_for,
    get_codec,
    load_baseline,
    popcount_rows,
)
from dso.errors import CodecError

CODEC_IDS = sorted(CODECS)


@st.composite
def coded_batches(draw: st.DrawFn) -> tuple[Codec, np.ndarray]:
    """A codec of a random dimension and baseline, and unit vectors to code (seeded numpy draws:
    hypothesis picks the sizes and the seed, numpy fills hundreds of coordinates fast)."""
    codec_id = draw(st.sampled_from(CODEC_IDS))
    dim = 8 * draw(st.integers(1, 48))
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    baseline = rng.normal(0, draw(st.sampled_from([0.0, 0.02, 0.3])), dim)
    vectors = rng.standard_normal((n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return CODECS[codec_id](dim, baseline), vectors.astype(np.float32)


@given(coded_batches())
def test_encode_gives_code_bytes_per_vector_and_decode_gives_dim_floats(batch):
    codec, vectors = batch
    codes = codec.encode(vectors)
    assert codes.shape == (len(vectors), codec.code_bytes) and codes.dtype == np.uint8
    decoded = codec.decode(codes)
    assert decoded.shape == vectors.shape and decoded.dtype == np.float32


@given(coded_batches())
def test_encoding_is_deterministic_and_row_by_row(batch):
    codec, vectors = batch
    codes = codec.encode(vectors)
    np.testing.assert_array_equal(codes, codec.encode(vectors.copy()))
    np.testing.assert_array_equal(codes[-1:], codec.encode(vectors[-1:]))


@given(coded_batches())
def test_bitdelta_signs_agree_with_the_residual_and_the_scale_is_its_mean_magnitude(batch):
    codec, vectors = batch
    codec = BitDelta(codec.dim, codec.baseline)
    residual = vectors - codec.baseline
    codes = codec.encode(vectors)
    np.testing.assert_array_equal(codec.levels(codes), np.where(residual >= 0, 1.0, -1.0))
    np.testing.assert_allclose(codec.scales(codes), np.abs(residual).mean(axis=1), rtol=1e-3)


@given(coded_batches())
def test_ternary_zeroes_the_smallest_70_percent_and_keeps_signs_of_the_rest(batch):
    codec, vectors = batch
    codec = Ternary(codec.dim, codec.baseline)
    residual = vectors - codec.baseline
    levels = codec.levels(codec.encode(vectors))
    kept = levels != 0
    assert np.all(kept.sum(axis=1) == codec.dim - round(0.7 * codec.dim))
    magnitude = np.abs(residual)
    for row, mask in zip(magnitude, kept):
        assert row[mask].min() >= row[~mask].max(initial=0)
    np.testing.assert_array_equal(levels[kept], np.sign(residual[kept]))


@given(coded_batches())
@settings(deadline=None)
def test_asymmetric_score_is_the_cosine_with_the_decoded_vector(batch):
    codec, vectors = batch
    codes = codec.encode(vectors)
    decoded = codec.decode(codes).astype(np.float64)
    expected = vectors @ decoded.T / np.linalg.norm(decoded, axis=1)
    np.testing.assert_allclose(codec.score(vectors, codes), expected, atol=1e-4)
    np.testing.assert_allclose(codec.score(vectors[0], codes), expected[0], atol=1e-4)


@given(coded_batches())
def test_code_similarity_is_the_dot_product_of_levels(batch):
    codec, vectors = batch
    codes = codec.encode(vectors)
    levels = codec.levels(codes)
    dots = (levels @ levels[0]).astype(np.int32)
    # Sign codes: agreements = (dim + dot) / 2; ternary codes: the dot itself.
    expected = (codec.dim + dots) // 2 if isinstance(codec, BitDelta) else dots
    np.testing.assert_array_equal(codec.code_similarity(codes[0], codes), expected)


@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=70)))
def test_popcount_equals_a_slow_reference(packed):
    expected = [sum(bin(int(byte)).count("1") for byte in row) for row in packed]
    assert popcount_rows(packed).tolist() == expected


def test_bitdelta_byte_layout_is_packbits_then_float16_little_endian_scale():
    codec = BitDelta(16, np.zeros(16))
    vector = np.array([[1, -1] * 4 + [-1] * 7 + [1]], dtype=np.float32) / 4.0
    code = codec.encode(vector)[0]
    assert code[:2].tobytes() == bytes([0b10101010, 0b00000001])
    assert code[2:].tobytes() == np.float16(0.25).newbyteorder("<").tobytes()


def test_ternary_byte_layout_is_nonzero_plane_negative_plane_scale():
    codec = Ternary(8, np.zeros(8), zero_fraction=0.5)
    code = codec.encode(np.array([[0.1, -0.9, 0.0, 0.8, -0.05, 0.02, -0.7, 0.6]], dtype=np.float32))[0]
    assert code[0] == 0b01010011 and code[1] == 0b01000010  # keeps dims 1, 3, 6, 7; 1 and 6 negative
    assert code[2:].tobytes() == np.float16(0.75).tobytes()


@pytest.mark.parametrize("codec_id", CODEC_IDS)
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((2, 384), np.nan), "NaN"),
        (np.array([[np.inf] + [0.0] * 383]), "NaN or infinity"),
        (np.ones((2, 383)), r"shape \(n, 384\)"),
        (np.ones(384), r"shape \(n, 384\)"),
        (np.zeros((1, 384)), "zero vector"),
        (np.full((1, 384), 1e6), "overflows float16"),
    ],
)
def test_encode_rejects_unusable_vectors_with_CodecError(codec_id: str, bad: np.ndarray, message: str):
    with pytest.raises(CodecError, match=message):
        get_codec(codec_id).encode(bad)


@pytest.mark.parametrize("codec_id", CODEC_IDS)
def test_decode_and_score_reject_codes_of_another_width_or_type(codec_id: str):
    codec = get_codec(codec_id)
    codes = codec.encode(np.eye(384, dtype=np.float32)[:3])
    for bad in (codes[:, :-1], codes.astype(np.int16), codes[0]):
        with pytest.raises(CodecError, match="codes must be uint8"):
            codec.decode(bad)
    with pytest.raises(CodecError, match=r"shape \(n, 384\)"):
        codec.score(np.ones(100), codes)
    with pytest.raises(CodecError, match="NaN"):
        codec.score(np.full(384, np.nan), codes)


@pytest.mark.parametrize("codec_id", CODEC_IDS)
@pytest.mark.parametrize("scale", [-1.0, -0.0, np.inf, np.nan])
def test_a_negative_or_non_finite_scale_is_rejected(codec_id: str, scale: float):
    codec = get_codec(codec_id)
    codes = codec.encode(np.eye(384, dtype=np.float32)[:1])
    codes[0, -2:] = np.frombuffer(np.float16(scale).tobytes(), np.uint8)
    with pytest.raises(CodecError, match="non-finite scale or a set sign bit"):
        codec.decode(codes)


def test_a_ternary_code_with_a_sign_on_a_zero_level_is_not_canonical():
    codec = get_codec("ternary-2")
    codes = codec.encode(np.eye(384, dtype=np.float32)[:1])
    zero_level = np.flatnonzero(np.unpackbits(codes[0, :48]) == 0)[0]
    codes[0, 48 + zero_level // 8] |= 0x80 >> (zero_level % 8)
    with pytest.raises(CodecError, match="not canonical"):
        codec.score(np.ones(384), codes)


def test_unknown_codec_id_raises_CodecError_listing_the_choices():
    with pytest.raises(CodecError, match="bitdelta-1"):
        get_codec("bitdelta-2")


def test_published_baseline_id_is_the_sha256_of_its_little_endian_float32_bytes():
    baseline = load_baseline()
    meta = json.loads((DATA_DIR / "all-MiniLM-L6-v2.mean.json").read_text())
    assert baseline.shape == (384,) and baseline.dtype == np.dtype("<f4")
    assert baseline_id(baseline) == meta["baseline_id"] == hashlib.sha256(baseline.tobytes()).hexdigest()
    assert get_codec().baseline_id == meta["baseline_id"]
    assert get_codec(DEFAULT_CODEC).codec_id == "bitdelta-1" and get_codec().code_bytes == 50


def test_a_model_without_a_published_baseline_needs_one_passed_explicitly():
    with pytest.raises(CodecError, match="pass baseline="):
        get_codec("bitdelta-1", 768, model_id="sentence-transformers/all-mpnet-base-v2")
    assert get_codec("bitdelta-1", 768, baseline=np.zeros(768)).code_bytes == 98


def test_codec_for_resolves_the_ids_a_batch_header_carries():
    published = get_codec()
    by_bytes = codec_for("ternary-2", 384, bytes.fromhex(published.baseline_id))
    assert by_bytes.baseline_id == published.baseline_id and by_bytes.codec_id == "ternary-2"
    assert codec_for("bitdelta-1", 384, published.baseline_id) is codec_for("bitdelta-1", 384, published.baseline_id)
    assert not codec_for("bitdelta-1", 384, NO_BASELINE).baseline.any()
    for unknown, message in ((bytes(31) + b"\x01", "no shipped baseline"), (b"short", "32 bytes"), ("zz" * 32, "not hex")):
        with pytest.raises(CodecError, match=message):
            codec_for("bitdelta-1", 384, unknown)
    with pytest.raises(CodecError, match="shape"):
        codec_for("bitdelta-1", 768, published.baseline_id)


def test_paraphrases_retrieve_each_other_with_the_default_codec_and_rescoring():
    """STS-B dev pairs scored >= 4.5, among every other dev sentence as distractors: each second
    sentence finds its first in the top 10 after rescoring the codec's top 100 by float cosine."""
    from dso.bench.retrieval import rescore, top_indices, unique
    from dso.edges.datasets import sts_pairs
    from dso.edges.embed import load_embedder

    pairs = [p for p in sts_pairs("dev") if p.score >= 4.5 and p.first != p.second]
    docs = unique([p.first for p in pairs] + [p.first for p in sts_pairs("dev")[:400]])
    embedder = load_embedder("minilm")
    doc_vectors, query_vectors = embedder.embed(docs), embedder.embed([p.second for p in pairs])
    codec = get_codec()
    candidates = top_indices(codec.score(query_vectors, codec.encode(doc_vectors)), 100)
    found = rescore(candidates, query_vectors @ doc_vectors.T)
    targets = np.array([docs.index(p.first) for p in pairs])
    hits = np.array([t in row for t, row in zip(targets, found)])
    assert len(pairs) >= 100 and hits.all(), [pairs[i] for i in np.flatnonzero(~hits)]
