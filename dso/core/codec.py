"""Compressed embeddings: ~1 bit per dimension plus one scale, relative to a published baseline.

An experience travels (in IPFS batches) as a short code instead of a 1,536-byte float32 vector.
Both codecs quantize the *residual* ``r = v - baseline``, where the baseline is the mean embedding
of a documented corpus, published per embedding model as package data
(``dso/data/<model>.mean.npy``, made by ``scripts/make_baseline.py``) and named by ``baseline_id``
= sha256 of its float32 little-endian bytes, which every batch header carries. Sentence embeddings
share a common direction; subtracting it lets the bits describe what tells texts apart.

- ``bitdelta-1``: one bit per dimension, ``sign(r)``, and one float16 scale ``mean |r|`` (the
  least-squares scale for a sign code). 384-d: 48 + 2 = 50 bytes.
- ``ternary-2``: two bit-planes per dimension coding {-1, 0, +1}, the 70 % smallest ``|r_i|`` set
  to 0, and one float16 scale ``mean |r_i|`` over the kept entries. 384-d: 96 + 2 = 98 bytes.

Byte layout of one code (exactly one representation per vector; the batch format hashes it):
``bitdelta-1`` = packbits(r >= 0) ‖ float16-le(scale); ``ternary-2`` = packbits(t != 0) ‖
packbits(t < 0) ‖ float16-le(scale). ``np.packbits`` order: dimension 0 is the high bit of byte 0.

How to search, from ``bench/results/retrieval.json`` (``python scripts/bench.py retrieval``):
score the float query against the codes (``score``, asymmetric, cosine with the decoded vector),
take the top ``RESCORE_DEPTH`` candidates, and rank those by exact cosine with float vectors
re-embedded from the experience texts (the library keeps every text). Comparing codes with each
other (``code_similarity``, popcount) finds less of the exact top-10 and is meant for code-vs-code
work (near-duplicates) or as a fast prefilter before ``score`` on very large collections (faiss
``IndexBinaryFlat`` over the sign bits). A rotation before coding (random, or ITQ learned on the
baseline corpus) was measured too: with asymmetric scoring it moved recall@10 by less than 0.01
either way, so none is applied; it would cost a second published parameter for no gain.

Pure numpy (< 2, so popcount uses a 256-entry lookup table); no I/O except reading the baseline.
"""

from __future__ import annotations

import functools
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dso.core.models import DIM, model_file_stem
from dso.core.models import MODEL_ID as DEFAULT_MODEL_ID
from dso.errors import CodecError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_CODEC = "bitdelta-1"
# Candidates to rescore with float vectors after `score`: where the default codec's recall@10 curve
# flattens out on both benchmark data sets (bench/results/retrieval.json, "default").
RESCORE_DEPTH = 100
TERNARY_ZERO_FRACTION = 0.7
SCALE_BYTES = 2  # float16, little-endian
# The baseline id batch headers carry for "no baseline" (plain sign codes of v itself).
NO_BASELINE = bytes(32)
# Codes are unpacked to float in chunks: a (1024, dim) float block stays in cache, which measured
# 2.5x faster than 32k-row blocks on a 1M-code scan, and a million codes never become a (1M, dim) array.
SCORE_CHUNK = 1_024

POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_rows(packed: np.ndarray) -> np.ndarray:
    """Number of set bits in each row of a uint8 array, as int32 (lookup table: numpy < 2 has no bitwise_count)."""
    return POPCOUNT_TABLE[packed].sum(axis=-1, dtype=np.int32)


def baseline_id(baseline: np.ndarray) -> str:
    """The id every batch header carries: hex sha256 of the baseline's float32 little-endian bytes."""
    return hashlib.sha256(np.ascontiguousarray(baseline, dtype="<f4").tobytes()).hexdigest()


def load_baseline(model_id: str = DEFAULT_MODEL_ID) -> np.ndarray:
    """The published baseline (mean vector) of `model_id`, checked against the id in its sidecar JSON.

    Raises CodecError if no baseline is shipped for the model or the file does not match its id.
    """
    stem = model_file_stem(model_id)
    vector_path, meta_path = DATA_DIR / f"{stem}.mean.npy", DATA_DIR / f"{stem}.mean.json"
    if not vector_path.is_file() or not meta_path.is_file():
        raise CodecError(
            f"no baseline is published for {model_id!r} (looked for {vector_path}); "
            "pass baseline= explicitly or run scripts/make_baseline.py"
        )
    baseline = np.load(vector_path).astype("<f4")
    expected = json.loads(meta_path.read_text())["baseline_id"]
    if baseline_id(baseline) != expected:
        raise CodecError(f"{vector_path} does not match its published id {expected}; reinstall dso")
    return baseline


def check_vectors(vectors: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """Return `vectors` as a float32 (n, dim) array, or raise CodecError for a wrong shape or NaN/inf."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise CodecError(f"{what} must have shape (n, {dim}); got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise CodecError(f"{what} must be real numbers; got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise CodecError(f"{what} contain NaN or infinity")
    return array


def pack_scales(scales: np.ndarray) -> np.ndarray:
    """Per-vector scales as (n, 2) float16 little-endian bytes; raise CodecError if one overflows float16."""
    with np.errstate(over="ignore"):
        half = scales.astype("<f2")
    if not np.all(np.isfinite(half)):
        raise CodecError("a vector is too large to code: its scale overflows float16 (are the vectors normalized?)")
    return half.view(np.uint8).reshape(-1, SCALE_BYTES)


def unpack_scales(scale_bytes: np.ndarray) -> np.ndarray:
    """Inverse of pack_scales, as float32; raise CodecError for a non-finite scale or a set sign bit
    (encode never writes -0.0, so accepting it would give one vector two spellings)."""
    scales = np.ascontiguousarray(scale_bytes).view("<f2").reshape(-1).astype(np.float32)
    if not np.all(np.isfinite(scales)) or np.any(np.signbit(scales)):
        raise CodecError("a code carries a non-finite scale or a set sign bit: it was not made by this codec")
    return scales


class Codec(ABC):
    """A vector codec of fixed dimension relative to a baseline.

    A code is a body of bit-planes followed by one float16 scale. Subclasses say how a residual
    becomes the body, what levels in {-1, 0, +1} the body stands for, and how to compare two
    bodies; this base class owns validation, decoding and asymmetric scoring.
    """

    codec_id: str
    dim: int
    body_bytes: int

    def __init__(self, dim: int, baseline: np.ndarray) -> None:
        if dim <= 0 or dim % 8:
            raise CodecError(f"dim must be a positive multiple of 8 (codes pack 8 levels per byte); got {dim}")
        if np.shape(baseline) != (dim,):
            raise CodecError(f"the baseline must have shape ({dim},) for {dim}-d vectors; got {np.shape(baseline)}")
        self.dim = dim
        self.baseline = check_vectors(np.reshape(baseline, (1, dim)), dim, "baseline")[0]
        self.baseline.setflags(write=False)
        self.baseline_id = baseline_id(self.baseline)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(codec_id={self.codec_id!r}, dim={self.dim}, baseline_id={self.baseline_id[:12]}...)"

    @property
    def code_bytes(self) -> int:
        """Bytes per coded vector: the bit-planes plus the float16 scale."""
        return self.body_bytes + SCALE_BYTES

    @abstractmethod
    def _encode_residuals(self, residuals: np.ndarray) -> np.ndarray:
        """(n, dim) float32 residuals -> (n, code_bytes) uint8 codes."""

    @abstractmethod
    def levels(self, codes: np.ndarray) -> np.ndarray:
        """(n, code_bytes) checked codes -> (n, dim) float32 levels in {-1, 0, +1} (scale not applied)."""

    @abstractmethod
    def _bit_weights(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weights, offset) such that levels @ probes == unpacked body bits @ weights + offset."""

    @abstractmethod
    def level_norms(self, codes: np.ndarray) -> np.ndarray:
        """|levels|^2 of each checked code, as float32."""

    @abstractmethod
    def code_similarity(self, code: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Symmetric code-vs-code similarity of one code against each of `codes` (int32, higher = closer)."""

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Code each row of an (n, dim) array; raise CodecError for NaN/inf, a wrong shape or a zero row.

        A zero vector is no embedding (embedders L2-normalize), so coding one hides a bug upstream.
        """
        array = check_vectors(vectors, self.dim)
        if np.any(~array.any(axis=1)):
            raise CodecError("cannot code a zero vector: embeddings are L2-normalized")
        return self._encode_residuals(array - self.baseline)

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        """Return `codes` as a (n, code_bytes) uint8 array or raise CodecError."""
        array = np.asarray(codes)
        if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != self.code_bytes:
            raise CodecError(
                f"{self.codec_id} codes must be uint8 of shape (n, {self.code_bytes}); got {array.dtype} {array.shape}"
            )
        return array

    def check_single(self, code: np.ndarray) -> np.ndarray:
        """One code given as (code_bytes,) or (1, code_bytes), returned as (1, code_bytes)."""
        array = self.check_codes(np.asarray(code).reshape(1, -1) if np.ndim(code) == 1 else code)
        if len(array) != 1:
            raise CodecError(f"expected one code, got {len(array)}")
        return array

    def scales(self, codes: np.ndarray) -> np.ndarray:
        """The per-vector scale stored in the last two bytes of each code."""
        return unpack_scales(self.check_codes(codes)[:, -SCALE_BYTES:])

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruct (n, dim) float32 vectors: baseline + scale * levels."""
        codes = self.check_codes(codes)
        return self.baseline + self.scales(codes)[:, None] * self.levels(codes)

    def _project(self, codes: np.ndarray, probes: np.ndarray) -> np.ndarray:
        """levels(codes) @ probes for checked codes and (dim, m) probes, SCORE_CHUNK codes at a time,
        multiplying the raw bits (building the {-1, 0, +1} levels first would add two passes)."""
        weights, offset = self._bit_weights(np.asarray(probes, dtype=np.float32))
        out = np.empty((len(codes), weights.shape[1]), dtype=np.float32)
        for start in range(0, len(codes), SCORE_CHUNK):
            bits = np.unpackbits(codes[start : start + SCORE_CHUNK, : self.body_bytes], axis=1)
            out[start : start + SCORE_CHUNK] = bits.astype(np.float32) @ weights + offset
        return out

    def score(self, query: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Cosine between float queries and decoded codes: (dim,) -> (n,), (q, dim) -> (q, n).

        Asymmetric on purpose: the query is not quantized, which finds much more of the exact
        top-10 than comparing codes (``code_similarity``). Cosine rather than dot because decoded
        vectors are not unit length, and those with an overestimated scale would crowd the top.
        Both measured in bench/results/retrieval.json ("asymmetric" vs "hamming", "asymmetric-dot").
        Equals cos(query, decode(codes)) without building the decoded vectors.
        """
        single = np.ndim(query) == 1
        queries = check_vectors(np.atleast_2d(query), self.dim, "query")
        codes = self.check_codes(codes)
        scales = unpack_scales(codes[:, -SCALE_BYTES:])
        # One pass gives levels·query for every query and levels·baseline for the decoded norm.
        projections = self._project(codes, np.vstack([queries, self.baseline]).T)
        # |baseline + s*l|^2 = |baseline|^2 + 2 s (l·baseline) + s^2 |l|^2
        norms_sq = self.baseline @ self.baseline + 2 * scales * projections[:, -1] + scales**2 * self.level_norms(codes)
        norms = np.sqrt(np.maximum(norms_sq, np.finfo(np.float32).tiny))
        dots = (queries @ self.baseline)[:, None] + (scales[:, None] * projections[:, :-1]).T
        scores = (dots / norms).astype(np.float32)
        return scores[0] if single else scores


class BitDelta(Codec):
    """1 bit per dimension: the signs of v - baseline, plus one float16 scale mean|v - baseline|."""

    codec_id = "bitdelta-1"

    def __init__(self, dim: int, baseline: np.ndarray) -> None:
        super().__init__(dim, baseline)
        self.body_bytes = dim // 8

    def _encode_residuals(self, residuals: np.ndarray) -> np.ndarray:
        # A residual of exactly 0 codes as +: one fixed choice keeps the encoding deterministic.
        signs = np.packbits(residuals >= 0, axis=1)
        return np.hstack([signs, pack_scales(np.abs(residuals).mean(axis=1))])

    def levels(self, codes: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(self.check_codes(codes)[:, : self.body_bytes], axis=1).astype(np.float32)
        return 2 * bits - 1

    def _bit_weights(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # (2b - 1)·p = b·(2p) - sum(p)
        return 2 * probes, -probes.sum(axis=0)

    def level_norms(self, codes: np.ndarray) -> np.ndarray:
        return np.full(len(codes), self.dim, dtype=np.float32)

    def code_similarity(self, code: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Number of agreeing sign bits (dim - Hamming distance), as int32."""
        a = self.check_single(code)[:, : self.body_bytes]
        b = self.check_codes(codes)[:, : self.body_bytes]
        return self.dim - popcount_rows(np.bitwise_xor(a, b))


class Ternary(Codec):
    """2 bits per dimension, levels {-1, 0, +1}, the 70 % smallest |v_i - baseline_i| zeroed."""

    codec_id = "ternary-2"

    def __init__(self, dim: int, baseline: np.ndarray, zero_fraction: float = TERNARY_ZERO_FRACTION) -> None:
        super().__init__(dim, baseline)
        self.plane_bytes = dim // 8
        self.body_bytes = 2 * self.plane_bytes
        self.zeros = int(round(zero_fraction * dim))
        if not 0 <= self.zeros < dim:
            raise CodecError(f"zero_fraction must leave at least one nonzero level; got {zero_fraction}")

    def _encode_residuals(self, residuals: np.ndarray) -> np.ndarray:
        magnitude = np.abs(residuals)
        # A stable sort breaks ties by index, so equal inputs give equal codes on every machine.
        order = np.argsort(magnitude, axis=1, kind="stable")
        kept = np.ones_like(residuals, dtype=bool)
        np.put_along_axis(kept, order[:, : self.zeros], False, axis=1)
        negative = kept & (residuals < 0)
        scales = (magnitude * kept).sum(axis=1) / kept.sum(axis=1)
        return np.hstack([np.packbits(kept, axis=1), np.packbits(negative, axis=1), pack_scales(scales)])

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        """As Codec.check_codes, and refuse a sign bit on a zero level (a second spelling of one code)."""
        array = super().check_codes(codes)
        nonzero, negative = self.planes(array)
        if np.any(negative & ~nonzero):
            raise CodecError("ternary code marks a zero level negative: it is not canonical")
        return array

    def planes(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nonzero and negative bit-planes of (n, code_bytes) codes."""
        return codes[:, : self.plane_bytes], codes[:, self.plane_bytes : self.body_bytes]

    def levels(self, codes: np.ndarray) -> np.ndarray:
        nonzero, negative = self.planes(self.check_codes(codes))
        return np.unpackbits(nonzero, axis=1).astype(np.float32) - 2 * np.unpackbits(negative, axis=1)

    def _bit_weights(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # nonzero·p - 2 negative·p
        return np.vstack([probes, -2 * probes]), np.zeros(probes.shape[1], dtype=np.float32)

    def level_norms(self, codes: np.ndarray) -> np.ndarray:
        return popcount_rows(self.planes(codes)[0]).astype(np.float32)

    def code_similarity(self, code: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Dot product of the ternary levels, as int32: shared nonzeros minus twice the sign conflicts."""
        nz_a, neg_a = self.planes(self.check_single(code))
        nz_b, neg_b = self.planes(self.check_codes(codes))
        both = nz_a & nz_b
        return popcount_rows(both) - 2 * popcount_rows(both & (neg_a ^ neg_b))


CODECS: dict[str, type[Codec]] = {BitDelta.codec_id: BitDelta, Ternary.codec_id: Ternary}


def get_codec(
    codec_id: str = DEFAULT_CODEC, dim: int = DIM, baseline: np.ndarray | None = None, *, model_id: str = DEFAULT_MODEL_ID
) -> Codec:
    """The codec `codec_id` for `dim`-dimensional vectors.

    `baseline` defaults to the published mean vector of `model_id`; pass ``np.zeros(dim)`` for plain
    sign codes (measured worse, kept for comparison). Raises CodecError for an unknown id.
    """
    if codec_id not in CODECS:
        raise CodecError(f"unknown codec {codec_id!r}; choose one of {sorted(CODECS)}")
    return CODECS[codec_id](dim, load_baseline(model_id) if baseline is None else baseline)


def first_bad_code(codec_id: str, dim: int, codes: Sequence[bytes]) -> tuple[int, str] | None:
    """(index, why) of the first of `codes` that a `codec_id` codec of `dim` dimensions could not
    decode (wrong length, a scale no encoder writes, a second spelling of one code), or None.
    Needs no baseline: a code's form does not depend on it. An unknown codec id is not judged
    (clients that cannot read it leave it out of every vote). CodecError for an unusable `dim`."""
    if codec_id not in CODECS:
        return None
    codec = _form_checker(codec_id, dim)
    if codes and all(len(code) == codec.code_bytes for code in codes):
        try:  # every code at once; only a failure needs the loop below to name the first bad one
            codec.scales(np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), codec.code_bytes))
            return None
        except CodecError:
            pass
    for index, code in enumerate(codes):
        if len(code) != codec.code_bytes:
            return index, f"its code is {len(code)} bytes; a {codec_id} code of {dim} dimensions is {codec.code_bytes}"
        try:
            codec.scales(np.frombuffer(code, dtype=np.uint8)[None, :])
        except CodecError as exc:
            return index, f"its code cannot be decoded: {exc}"
    return None


@functools.lru_cache(maxsize=16)
def _form_checker(codec_id: str, dim: int) -> Codec:
    """A codec on a zero baseline: enough to check a code's form."""
    return CODECS[codec_id](dim, np.zeros(dim, dtype=np.float32))


@functools.cache
def published_baselines() -> dict[str, str]:
    """hex baseline_id -> model_id of every baseline shipped in dso/data."""
    metas = [json.loads(path.read_text()) for path in sorted(DATA_DIR.glob("*.mean.json"))]
    return {meta["baseline_id"]: meta["model_id"] for meta in metas}


@functools.lru_cache(maxsize=64)
def codec_for(codec_id: str, dim: int, baseline: bytes | str) -> Codec:
    """The codec a batch header names: codec id, dimension and baseline id (32 raw bytes or 64 hex
    characters; all zeros = no baseline). Cached, since a library resolves it on every query.

    Raises CodecError for an unknown codec, or a baseline id that no shipped baseline has (codes
    made against an unknown baseline cannot be decoded: the batch needs a newer dso).
    """
    try:
        key = bytes.fromhex(baseline) if isinstance(baseline, str) else bytes(baseline)
    except ValueError as exc:
        raise CodecError(f"baseline id {baseline!r} is not hex") from exc
    if len(key) != 32:
        raise CodecError(f"a baseline id is 32 bytes (sha256); got {len(key)}")
    if key == NO_BASELINE:
        return get_codec(codec_id, dim, baseline=np.zeros(dim, dtype=np.float32))
    model_id = published_baselines().get(key.hex())
    if model_id is None:
        raise CodecError(f"no shipped baseline has id {key.hex()}; upgrade dso to read codes made against it")
    return get_codec(codec_id, dim, model_id=model_id)
