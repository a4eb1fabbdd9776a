"""The consensus of BitDelta codes: centered clipping around a geometric-median start, on
scale-capped codes, with the per-bit majority kept wherever two thirds of the weight agree.

Papers: S. P. Karimireddy, L. He, M. Jaggi, "Learning from History for Byzantine Robust
Optimization", ICML 2021 (centered clipping); K. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust
Aggregation for Federated Learning", 2019 (a few smoothed Weiszfeld steps towards the geometric
median); Z. Sun, P. Kairouz, A. T. Suresh, H. B. McMahan, "Can You Really Backdoor Federated
Learning?", 2019 (norm bounding); J. Bernstein et al., ICLR 2019 (per-bit majority).

A ``bitdelta-1`` code decodes to baseline + s (2b - 1): signs b and one scale s. Steps:

1. Cap every scale at the weighted median scale (norm bounding): no code counts as longer than the
   typical one, so a huge scale (the Gaussian attack, IPM with a large epsilon) buys nothing.
2. Start from the per-bit weighted majority (`majority_bits`) at that median scale, and take
   `GM_STEPS` smoothed Weiszfeld steps towards the weighted geometric median of the capped
   residuals (breakdown point 1/2 for the whole vector, not per coordinate).
3. `CC_ITERATIONS` of centered clipping from there, tau = the weighted median distance to it.
4. Re-encode: the sign of each coordinate, and the weighted median scale (as `bitdelta_consensus`).
5. Every bit on which at least LOCK_SHARE of the weight agrees is set to that majority, and so is
   every coordinate within ROUNDING of zero: the float steps run through BLAS, whose last bits may
   differ between builds, and a client must not store a different code for such a coordinate.
   Clusters of one or two voices get the majority directly.

Why not the per-bit majority alone: it ignores everything but each bit's vote, so on the bits where
honest wordings split (most bits of a paraphrase), attackers who vote together decide them. The
Byzantine bench (README "Byzantine robustness") measured the majority within cosine 0.95 of the
honest-only aggregate only at 10% attackers under ALIE and IPM; this rule holds 0.95 up to 45% under
sign flips, Gaussian noise and IPM with a small epsilon, and up to 20% under IPM with a large one.
Against ALIE it gains little (0.90 at 20%, where the majority is at 0.88): ALIE places every
attacker just inside the honest spread, and Karimireddy, He and Jaggi (ICLR 2022, "Byzantine-Robust
Learning on Heterogeneous Datasets via Bucketing") prove that no aggregator can do better than an
error proportional to the attackers' share times that spread. What narrows the spread's effect is
weight: reputation (`dso.core.reputation`) gives newly admitted attackers a fraction of a voice.

Per-bit guarantee (step 5): a bit on which every honest voice agrees is never flipped while the
Byzantine voices hold less than 1 - LOCK_SHARE = 1/3 of the weight (the honest side then holds at
least 2/3 and the bit is locked to it). Between 1/3 and 1/2 the bit is decided by steps 2-3; the
bench measured no such bit flipped under any of its attacks, but that is a measurement, not a
bound. The lock also never forces an honest-unanimous bit the wrong way while the Byzantine weight
is below 2/3. Locking at a share closer to 1/2 would extend the guarantee and hand the attackers
the bits they outvote: at 0.55 the bench lost 0.05-0.3 of cosine at 20-45%.

Cost: O(n d) per step (distances by the Gram identity), about 10 array operations per step; measured
in `dso/bench/byzantine.py` (``per_cluster_us``).
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_weights
from dso.core.aggregate.centered_clipping import _centered_clipping
from dso.core.aggregate.geometric_median import _weiszfeld_steps
from dso.core.aggregate.majority import check_codes
from dso.core.aggregate.median import _weighted_median
from dso.core.codec import SCALE_BYTES, pack_scales, unpack_scales
from dso.errors import AggregationError, CodecError

# Two Weiszfeld steps and two clipping iterations measured within 0.006 of three and three in
# every cell of the Byzantine bench, at two thirds of the cost.
GM_STEPS = 2
CC_ITERATIONS = 2
# Up to this many voices the majority is returned: between two codes every point is as central as
# any other, so no robust statistic has anything to add (and most clusters of a library are small).
SMALL_CLUSTER = 2
# Coordinates closer to 0 than this times the scale take the majority's bit (see below).
ROUNDING = 1e-9
# Bits on which at least this share of the weight agrees keep the majority's value (the comparison
# is written out as 3 x ones >= 2 x total, exact for integer weights).
LOCK_SHARE = 2 / 3


def clipped_bitdelta_consensus(codes: np.ndarray, weights: np.ndarray | None = None) -> bytes:
    """One ``bitdelta-1`` code for (n, k + 2) codes of the same codec, dimension and baseline (see
    the module docstring). Raises AggregationError for malformed codes."""
    array = check_codes(codes)
    w = check_weights(weights, len(array))
    try:
        scales = unpack_scales(array[:, -SCALE_BYTES:]).astype(np.float64)
    except CodecError as exc:
        raise AggregationError(f"codes are not bitdelta-1 codes: {exc}") from exc
    scale = _weighted_median(scales, w)
    scale_bytes = pack_scales(np.array([scale], dtype=np.float32)).tobytes()
    bits = np.unpackbits(array[:, :-SCALE_BYTES], axis=1)
    # Weight voting 1, compared in forms that are exact for integer weights (as `majority_bits`).
    ones, total = w @ bits, w.sum()
    majority = 2 * ones >= total
    if scale == 0 or len(array) <= SMALL_CLUSTER:
        return np.packbits(majority).tobytes() + scale_bytes
    # Finite by construction (valid scales, signs), so the vector rules' input checks are skipped.
    capped = np.minimum(scales, scale)
    residuals = (2.0 * bits - 1.0) * capped[:, None]
    squares = bits.shape[1] * capped**2
    floor = 1e-9 * scale
    start = _weiszfeld_steps(residuals, w, squares, np.where(majority, scale, -scale), GM_STEPS, floor)
    consensus = _centered_clipping(residuals, w, squares, start, CC_ITERATIONS, None)
    locked = (3 * ones >= 2 * total) | (3 * ones <= total)
    # A coordinate within rounding of 0 could come out either way on another BLAS build: the vote decides it.
    undecided = np.abs(consensus) <= ROUNDING * scale
    signs = np.where(locked | undecided, majority, consensus >= 0)
    return np.packbits(signs).tobytes() + scale_bytes
