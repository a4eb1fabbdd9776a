"""Coordinate-wise (weighted) median.

Paper: D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018 (the `median` rule, Algorithm 1 option I).

Breakdown point 1/2, per coordinate: while the Byzantine inputs hold less than half of the total
weight (with unit weights: at most ceil(n/2) - 1 of n inputs), every output coordinate lies between
the smallest and largest honest value of that coordinate, however large the Byzantine values are.
The mean breaks with a single input.

CAUTION: the guarantee is per coordinate. The output vector as a whole need not be any input, and
in high dimension it can sit farther from every honest vector than they sit from each other
(geometric_median and krum bound the whole vector instead).

Convention: where the weight below a value is exactly half the total (with unit weights: an even
n), the two middle values are averaged, so unit weights give exactly `np.median`.
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_vectors, check_weights
from dso.errors import AggregationError

# Relative slack when asking "is the cumulative weight exactly half?": float weights accumulate
# rounding, unit (integer) weights are exact either way.
_HALF_RTOL = 1e-12


def coordinate_median(vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The weighted median of each coordinate of (n, d) `vectors`, as a float64 (d,) array.

    `weights` (n,) are finite and > 0 (None: one each). Raises AggregationError for bad input.
    """
    x = check_vectors(vectors)
    w = check_weights(weights, len(x))
    order = np.argsort(x, axis=0, kind="stable")
    sorted_x = np.take_along_axis(x, order, axis=0)
    cumulative = np.cumsum(w[order], axis=0)
    half = cumulative[-1] / 2
    # The first sorted value whose cumulative weight reaches half the total is the (lower) median.
    lower = np.argmax(cumulative >= half * (1 - _HALF_RTOL), axis=0)
    columns = np.arange(x.shape[1])
    at_half = np.abs(cumulative[lower, columns] - half) <= _HALF_RTOL * half
    upper = np.minimum(lower + at_half, len(x) - 1)
    return (sorted_x[lower, columns] + sorted_x[upper, columns]) / 2


def weighted_median(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The weighted median of (n,) `values` (same convention and breakdown point as coordinate_median).

    The same arithmetic as one column of coordinate_median, written for one dimension: it runs
    several times per cluster, where the 2-d path's overhead was half the cost of a code consensus.
    """
    if np.ndim(values) != 1:
        raise AggregationError(f"values must be one-dimensional; got shape {np.shape(values)}")
    x = check_vectors(np.reshape(values, (-1, 1)))[:, 0]
    return _weighted_median(x, check_weights(weights, len(x)))


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """`weighted_median` of validated float64 (n,) values and weights."""
    order = np.argsort(x, kind="stable")
    cumulative = np.cumsum(w[order])
    half = cumulative[-1] / 2
    lower = int(np.argmax(cumulative >= half * (1 - _HALF_RTOL)))
    upper = lower + 1 if lower + 1 < len(x) and abs(cumulative[lower] - half) <= _HALF_RTOL * half else lower
    return float((x[order[lower]] + x[order[upper]]) / 2)
