"""Coordinate-wise trimmed mean.

Paper: D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018 (the beta-trimmed mean, Algorithm 1 option II).

For each coordinate, drop the `f` largest and the `f` smallest values and average the rest.
Breakdown point f / n: with at most `f` Byzantine inputs, every output coordinate lies between the
smallest and largest honest value of that coordinate; with f + 1 it can be moved arbitrarily far.
Yin et al. need f >= the number of Byzantine inputs (beta >= alpha); f < n / 2 so something is left.

`f` has no default: zero would be the plain mean, which one input breaks. Weights are not
supported (the paper's estimator is unweighted); callers that weight nodes must choose another
aggregator rather than have their weights silently ignored.
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_f, check_vectors
from dso.errors import InsufficientReports


def trimmed_mean(vectors: np.ndarray, f: int) -> np.ndarray:
    """Mean of each coordinate of (n, d) `vectors` after removing its `f` largest and `f` smallest
    values, as a float64 (d,) array.

    Raises InsufficientReports unless n > 2f, AggregationError for bad input.
    """
    x = check_vectors(vectors)
    f = check_f(f, "trimmed_mean")
    n = len(x)
    if n <= 2 * f:
        raise InsufficientReports(
            f"a trimmed mean with f={f} needs n > 2f = {2 * f} vectors; got {n}: collect more reports or lower f"
        )
    return np.sort(x, axis=0)[f : n - f].mean(axis=0)
