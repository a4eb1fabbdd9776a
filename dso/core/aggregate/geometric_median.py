"""Geometric median by Weiszfeld's algorithm, with Vardi and Zhang's step at data points.

Papers: K. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust Aggregation for Federated Learning"
(RFA), arXiv:1912.13445, 2019 (the geometric median as a robust aggregate, computed by Weiszfeld
iterations); E. Weiszfeld, "Sur le point pour lequel la somme des distances de n points donnés est
minimum", Tohoku Math. J. 43, 1937; Y. Vardi, C.-H. Zhang, "The multivariate L1-median and
associated data depth", PNAS 97(4), 2000 (the modified step below).

The geometric median minimizes sum_i w_i |z - x_i| (Euclidean). Breakdown point 1/2: while the
Byzantine inputs hold less than half of the total weight, the output stays within a bounded distance
of the honest inputs however far away the Byzantine ones are (Lopuhaä and Rousseeuw, Ann. Stat.
1991). Unlike the coordinate-wise median, the bound is on the whole vector, not per coordinate.

Weiszfeld's step is z <- T(z) = sum_i b_i x_i / sum_i b_i with b_i = w_i / |z - x_i|. It is undefined
at a data point and gets stuck next to one (RFA's smoothing max(nu, |z - x_i|) still sticks when it
starts there). Vardi and Zhang's step fixes that: at a data point carrying weight eta, with
r = |sum_{x_i != z} b_i (x_i - z)|, z is optimal if r <= eta, else z <- (1 - eta/r) T(z) + (eta/r) z.
It never increases the objective and converges from any start, but only sublinearly towards an
optimum that *is* a data point, so that case is settled first by the same test at every input. We
start from the coordinate-wise median, which is already robust, rather than from the mean, which one far input drags away, and
measure steps against a robust scale (the weighted median distance of the inputs to that start), so
far-away Byzantine inputs cannot loosen the stopping tolerance.

`weiszfeld_steps` is RFA's own recipe for when the exact optimum is too expensive: a fixed, small
number of smoothed Weiszfeld steps b_i = w_i / max(nu, |z - x_i|) from a robust start (RFA
Algorithm 3; the paper finds a few steps enough). No step increases the smoothed objective, so the
result is never farther from optimal than its start. Used per cluster, where the exact solver's
cost (a test at every input, then up to 1,000 steps) would dominate the aggregation.
"""

from __future__ import annotations

import numpy as np

from dso.core.aggregate._checks import check_vectors, check_weights
from dso.core.aggregate.median import coordinate_median, weighted_median
from dso.errors import AggregationError

DEFAULT_TOL = 1e-10
DEFAULT_MAX_ITER = 1_000
# Rounding slack in "the pull does not exceed the weight at z" (equality is the optimal boundary).
_RTOL = 1e-12


def geometric_median(
    vectors: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
) -> np.ndarray:
    """The weighted geometric median of (n, d) `vectors`, as a float64 (d,) array.

    Stops at a data point that is optimal, when a step moves less than `tol` times the robust scale,
    or after `max_iter` steps (the iterate is then returned: no step raised the objective, so it is
    never worse than the coordinate-wise median it started from). Raises AggregationError for bad
    input or settings.
    """
    x = check_vectors(vectors)
    w = check_weights(weights, len(x))
    if not (np.isfinite(tol) and tol > 0) or isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise AggregationError(f"geometric_median needs tol > 0 and an integer max_iter >= 1; got {tol!r}, {max_iter!r}")
    for point in x:
        if _pull(x, w, point) is None:
            return point.copy()
    z = coordinate_median(x, w)
    # Positive: were half the weight or more on one input, that input would have been returned above.
    scale = weighted_median(np.linalg.norm(x - z, axis=1), w)
    for _ in range(max_iter):
        step = _vardi_zhang_step(x, w, z)
        moved = np.linalg.norm(step - z)
        z = step
        if moved <= tol * scale:
            break
    return z


def weiszfeld_steps(vectors: np.ndarray, weights: np.ndarray | None, start: np.ndarray, steps: int, nu: float | None = None) -> np.ndarray:
    """`steps` smoothed Weiszfeld steps towards the weighted geometric median of (n, d) `vectors`
    from `start` (d,), as a float64 (d,) array. Distances below `nu` count as `nu` (default: 1e-9
    times the largest input norm, only there to avoid dividing by zero at a data point).

    Distances come from the Gram identity |x - z|^2 = |x|^2 - 2 x.z + |z|^2: one (n, d) product per
    step. Raises AggregationError for bad input.
    """
    x = check_vectors(vectors)
    w = check_weights(weights, len(x))
    z = np.array(start, dtype=np.float64)
    if z.shape != (x.shape[1],) or not np.all(np.isfinite(z)):
        raise AggregationError(f"start must be a finite vector of shape ({x.shape[1]},); got shape {z.shape}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise AggregationError(f"steps must be an integer >= 0; got {steps!r}")
    squares = np.einsum("ij,ij->i", x, x)
    floor = nu if nu is not None else 1e-9 * float(np.sqrt(squares.max()))
    if not floor > 0:
        raise AggregationError(f"nu must be > 0; got {nu!r}")
    return _weiszfeld_steps(x, w, squares, z, steps, floor)


def _weiszfeld_steps(x: np.ndarray, w: np.ndarray, squares: np.ndarray, z: np.ndarray, steps: int, floor: float) -> np.ndarray:
    """The steps of `weiszfeld_steps` on validated input (for callers that validated it already)."""
    for _ in range(steps):
        b = w / np.maximum(gram_distances(x, squares, z), floor)
        z = b @ x / b.sum()
    return z


def gram_distances(x: np.ndarray, squares: np.ndarray, z: np.ndarray) -> np.ndarray:
    """|x_i - z| for the rows of `x`, whose squared norms are `squares`, by the Gram identity
    (clamped at 0 where rounding makes the square negative)."""
    return np.sqrt(np.maximum(squares - 2 * (x @ z) + z @ z, 0.0))


def _pull(x: np.ndarray, w: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """(Weiszfeld's T(z), eta, r) at z, or None when z is optimal: the inputs elsewhere pull with
    force r = |sum b_i (x_i - z)|, and the weight eta sitting on z itself holds out while r <= eta."""
    distances = np.linalg.norm(x - z, axis=1)
    away = distances > 0
    if not away.any():
        return None
    eta = float(w[~away].sum())
    b = w[away] / distances[away]
    r = float(np.linalg.norm(b @ (x[away] - z)))
    if eta > 0 and r <= eta * (1 + _RTOL):
        return None
    return b @ x[away] / b.sum(), eta, r


def _vardi_zhang_step(x: np.ndarray, w: np.ndarray, z: np.ndarray) -> np.ndarray:
    pull = _pull(x, w, z)
    if pull is None:
        return z
    target, eta, r = pull
    return target if eta == 0 else (1 - eta / r) * target + (eta / r) * z
