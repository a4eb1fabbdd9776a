"""Krum and Multi-Krum.

Paper: P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine Learning with
Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017 (Krum, and its variant Multi-Krum).

Each input gets a score: the sum of squared distances to its n - f - 2 nearest other inputs. Krum
returns the input with the lowest score; Multi-Krum averages the m inputs with the lowest scores.
Precondition n > 2f + 2 (raises InsufficientReports otherwise), so the breakdown point is
f_max / n with f_max = ceil(n / 2) - 2, approaching 1/2 from below: with at most f Byzantine inputs
the choice is (alpha, f)-Byzantine resilient (the paper's main result), i.e. it stays within a
bounded distance of the honest inputs.

`f` has no default (Flower's Krum defaults to f = 0, which assumes no attacker at all). Multi-Krum's
m defaults to n - f and may not exceed it: averaging more than n - f inputs includes at least one
Byzantine input whenever f of them are present. Weights are not supported. Ties in the score go to
the lowest index, so callers that sort their inputs get an order-independent result.
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_f, check_vectors, pairwise_sq_distances
from dso.errors import AggregationError, InsufficientReports


def krum_scores(vectors: np.ndarray, f: int) -> np.ndarray:
    """Blanchard et al.'s score of each of (n, d) `vectors`: the sum of squared distances to its
    n - f - 2 nearest other vectors, as a float64 (n,) array.

    Raises InsufficientReports unless n > 2f + 2, AggregationError for bad input.
    """
    x = check_vectors(vectors)
    f = check_f(f, "krum")
    n = len(x)
    if n <= 2 * f + 2:
        raise InsufficientReports(
            f"Krum with f={f} needs n > 2f + 2 = {2 * f + 2} vectors; got {n}: collect more reports or lower f"
        )
    distances = pairwise_sq_distances(x)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, : n - f - 2].sum(axis=1)


def krum(vectors: np.ndarray, f: int) -> np.ndarray:
    """The input with the lowest Krum score (ties: the lowest index), as a float64 (d,) array."""
    x = check_vectors(vectors)
    return x[int(np.argmin(krum_scores(x, f)))].copy()


def multi_krum(vectors: np.ndarray, f: int, m: int | None = None) -> np.ndarray:
    """The mean of the m inputs with the lowest Krum scores (m defaults to n - f; 1 <= m <= n - f;
    ties: lower indices first), as a float64 (d,) array."""
    x = check_vectors(vectors)
    scores = krum_scores(x, f)
    limit = len(x) - f
    m = limit if m is None else m
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= limit:
        raise AggregationError(f"multi_krum needs 1 <= m <= n - f = {limit}; got m={m!r}")
    return x[np.argsort(scores, kind="stable")[:m]].mean(axis=0)
