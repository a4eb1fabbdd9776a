"""Which texts state the same experience, judged from their 1-bit codes alone.

A client must cluster what it synced without embedding every text first (embedding is what made
sync slow: 35 experiences/s), and the library must stay a pure function of the reports, so the
similarity is computed from what the reports carry: bitdelta-1 codes, v = baseline + s * l with
l in {-1, +1}^D. The cosine of two decoded codes follows from their Hamming distance H:

    v_i . v_j = |b|^2 + s_i (b . l_i) + s_j (b . l_j) + s_i s_j (D - 2H)

so candidate pairs come from an exact Hamming range search (faiss `IndexBinaryFlat`, ~2 ns per
pair in C; sub-quadratic for the incremental case: k new texts against n known ones cost k x n)
and are confirmed by that exact cosine. Measured on GSM8K/STS-B paraphrases (issue 9's scale
benchmark), a decoded-code cosine of 0.74 reproduces today's float-cosine >= 0.9 clusters with an
adjusted Rand index of 0.99; `CODE_NEAR_DUPLICATE_COSINE` is that calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dso.core.codec import SCALE_BYTES, Codec, unpack_scales
from dso.errors import AggregationError

# Decoded-code cosine at or above which two texts state the same experience (calibrated against
# float cosine >= 0.9, NEAR_DUPLICATE_COSINE, in bench/results/scale.json).
CODE_NEAR_DUPLICATE_COSINE = 0.74
# Pairs at this Hamming distance or less are candidates. Above it no pair of codes made from unit
# embeddings reaches CODE_NEAR_DUPLICATE_COSINE (checked against the exact cosine in tests): the
# confirmation, not the radius, decides, so the radius only needs to be generous.
CANDIDATE_HAMMING = 128
QUERY_CHUNK = 4_096


@dataclass(frozen=True)
class CodeTerms:
    """What the cosine of two decoded codes needs from each: its sign bits, scale, b . l and norm."""

    bits: np.ndarray  # (n, D/8) uint8: the sign bits as packed
    scales: np.ndarray  # (n,) float64
    b_dot_l: np.ndarray  # (n,) float64: baseline . levels
    norms: np.ndarray  # (n,) float64: |baseline + scale * levels|
    b2: float  # |baseline|^2
    dim: int


def code_terms(codec: Codec, codes: np.ndarray) -> CodeTerms:
    """The terms of (n, code_bytes) bitdelta-1 `codes` (AggregationError for another codec)."""
    if codec.codec_id != "bitdelta-1":
        raise AggregationError(f"code neighbours need bitdelta-1 codes, not {codec.codec_id}")
    codes = codec.check_codes(np.asarray(codes, dtype=np.uint8).reshape(-1, codec.code_bytes))
    baseline = codec.baseline.astype(np.float64)
    scales = unpack_scales(codes[:, -SCALE_BYTES:]).astype(np.float64)
    levels_dot = codec.levels(codes).astype(np.float64) @ baseline if len(codes) else np.zeros(0)
    b2 = float(baseline @ baseline)
    norms = np.sqrt(np.maximum(b2 + 2 * scales * levels_dot + scales * scales * codec.dim, 0.0))
    return CodeTerms(np.ascontiguousarray(codes[:, : codec.dim // 8]), scales, levels_dot, norms, b2, codec.dim)


def pair_cosines(a: CodeTerms, i: np.ndarray, b: CodeTerms, j: np.ndarray, hamming: np.ndarray) -> np.ndarray:
    """Exact cosines of the decoded codes a[i] and b[j], given their Hamming distances."""
    dot = a.b2 + a.scales[i] * a.b_dot_l[i] + b.scales[j] * b.b_dot_l[j] + a.scales[i] * b.scales[j] * (a.dim - 2.0 * hamming)
    denominator = a.norms[i] * b.norms[j]
    return np.divide(dot, denominator, out=np.zeros_like(dot), where=denominator > 0)


def neighbour_pairs(queries: CodeTerms, base: CodeTerms, threshold: float = CODE_NEAR_DUPLICATE_COSINE,
                    skip_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(query index, base index) of every pair whose decoded codes have cosine >= `threshold`.
    `skip_self` drops the pair of a row with itself (queries and base are the same set)."""
    import faiss

    if not len(queries.scales) or not len(base.scales):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexBinaryFlat(base.dim)
    index.add(base.bits)
    found_q, found_b = [], []
    for start in range(0, len(queries.scales), QUERY_CHUNK):  # bounds the candidate arrays' memory
        limits, hamming, base_index = index.range_search(queries.bits[start : start + QUERY_CHUNK], CANDIDATE_HAMMING + 1)  # faiss: < radius
        qi = start + np.repeat(np.arange(len(limits) - 1), np.diff(limits.astype(np.int64)))
        bj = base_index.astype(np.int64)
        keep = pair_cosines(queries, qi, base, bj, hamming.astype(np.float64)) >= threshold
        if skip_self:
            keep &= qi != bj
        found_q.append(qi[keep])
        found_b.append(bj[keep])
    return np.concatenate(found_q), np.concatenate(found_b)


def pairs_within(terms: CodeTerms, threshold: float = CODE_NEAR_DUPLICATE_COSINE) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, of every pair of rows of one set whose decoded codes have cosine >= `threshold`:
    the pairs of `neighbour_pairs(terms, terms, skip_self=True)` with i < j, in half its scan (each
    chunk of rows is searched only against itself and the rows after it)."""
    import faiss

    n = len(terms.scales)
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, n, QUERY_CHUNK):
        index = faiss.IndexBinaryFlat(terms.dim)
        index.add(terms.bits[start:])
        limits, hamming, local = index.range_search(terms.bits[start : start + QUERY_CHUNK], CANDIDATE_HAMMING + 1)
        qi = start + np.repeat(np.arange(len(limits) - 1), np.diff(limits.astype(np.int64)))
        bj = start + local.astype(np.int64)
        later = bj > qi
        qi, bj, hamming = qi[later], bj[later], hamming[later]
        keep = pair_cosines(terms, qi, terms, bj, hamming.astype(np.float64)) >= threshold
        found_i.append(qi[keep])
        found_j.append(bj[keep])
    return np.concatenate(found_i), np.concatenate(found_j)
