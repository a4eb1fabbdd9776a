"""Per-bit majority vote, and the consensus of BitDelta codes built on it.

Paper: J. Bernstein, J. Zhao, K. Azizzadenesheli, A. Anandkumar, "signSGD with Majority Vote is
Communication Efficient and Fault Tolerant", ICLR 2019 (majority vote over 1-bit signs).

Each output bit is the value carrying at least half of the voting weight; a tie gives 1, the same
choice BitDelta makes for a residual of exactly 0 (``r >= 0`` codes as 1), so a tie reads as "no
evidence either way" consistently. Breakdown point 1/2 per bit: a bit on which the honest voters
agree cannot be flipped while the Byzantine voters hold less than half of the weight.
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_weights
from dso.core.aggregate.median import weighted_median
from dso.core.codec import SCALE_BYTES, BitDelta, pack_scales, unpack_scales
from dso.errors import AggregationError, CodecError

# The codec whose codes `bitdelta_consensus` votes on: a library's consensus codes are in it.
CONSENSUS_CODEC = BitDelta.codec_id


def _check_packed(packed: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(packed)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise AggregationError(f"{what} must be a uint8 array of shape (n, bytes) with n >= 1; got {array.dtype} {array.shape}")
    return array


def check_codes(codes: np.ndarray) -> np.ndarray:
    """`codes` as a uint8 (n, k + 2) array of sign bytes followed by a scale, or AggregationError."""
    array = _check_packed(codes, "codes")
    if array.shape[1] <= SCALE_BYTES:
        raise AggregationError(f"a bitdelta-1 code is sign bytes followed by a {SCALE_BYTES}-byte scale; got {array.shape[1]} bytes")
    return array


def majority_bits(packed: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-bit weighted majority of (n, k) packed bit rows (``np.packbits`` order), as a (k,) uint8
    row; a bit is 1 when the weight voting 1 is at least the weight voting 0."""
    bits = np.unpackbits(_check_packed(packed, "packed bits"), axis=1).astype(np.float64)
    w = check_weights(weights, len(bits))
    ones = w @ bits
    # `ones >= total - ones`, written so that unit weights compare exact integers.
    return np.packbits(2 * ones >= w.sum())


def bitdelta_consensus(codes: np.ndarray, weights: np.ndarray | None = None) -> bytes:
    """One ``bitdelta-1`` code for (n, k + 2) codes of the same codec, dimension and baseline: the
    per-bit weighted majority of the sign bits ‖ the weighted median scale (float16, as the codec).

    Raises AggregationError for malformed codes (including a scale no BitDelta encoder writes).
    """
    array = check_codes(codes)
    w = check_weights(weights, len(array))
    try:
        scales = unpack_scales(array[:, -SCALE_BYTES:])
        scale = pack_scales(np.array([weighted_median(scales, w)], dtype=np.float32))
    except CodecError as exc:
        raise AggregationError(f"codes are not bitdelta-1 codes: {exc}") from exc
    return majority_bits(array[:, :-SCALE_BYTES], w).tobytes() + scale.tobytes()
