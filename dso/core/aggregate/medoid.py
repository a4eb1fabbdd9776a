"""Medoid: the input that minimizes the weighted sum of distances to all inputs.

Paper: L. Kaufman, P. J. Rousseeuw, "Clustering by means of medoids", in Statistical Data Analysis
Based on the L1-Norm and Related Methods (Y. Dodge, ed.), North-Holland 1987 (PAM).

Used to pick one experience text for a cluster: the report whose vector is most central. It is a
geometric median restricted to the inputs, and its breakdown point is 1/2 in the same sense: while
Byzantine inputs hold less than half of the weight, the chosen input lies within a bounded distance
of the honest inputs (a far input's sum of distances exceeds the central honest input's).

WARNING: it bounds *where* the chosen input is, not *whose* it is. A Byzantine node whose text
embeds right in the middle of the honest ones can have its text chosen; its words then still mean
nearly the same thing (cosine close to the honest reports), but they are its words. The acceptance
rule, not the medoid, is what keeps a minority from adding experiences of its own.

Ties go to the lowest index, so callers that sort their inputs get an order-independent choice.
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_vectors, check_weights, distinct_rows, pairwise_sq_distances


def medoid_index(vectors: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Index of the (n, d) input minimizing sum_j w_j |x_i - x_j| (Euclidean); ties: the lowest index."""
    return int(np.argmin(medoid_costs(vectors, weights)))


def medoid_costs(vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """sum_j w_j |x_i - x_j| for each of the (n, d) inputs, as a float64 (n,) array."""
    x = check_vectors(vectors)
    w = check_weights(weights, len(x))
    unique, inverse = distinct_rows(x)
    distances = np.sqrt(pairwise_sq_distances(unique))[:, inverse]
    # One row reduction per distinct input, so equal inputs get bit-identical costs and the tie goes
    # to the lowest index (a BLAS product rounds a row differently by where it falls in a block).
    return (distances * w).sum(axis=1)[inverse]
