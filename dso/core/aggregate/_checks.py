"""Input checks shared by the aggregators: the validation that runs before any of the math."""

from __future__ import annotations

import numpy as np

from dso.errors import AggregationError


def check_vectors(vectors: np.ndarray) -> np.ndarray:
    """`vectors` as a float64 (n, d) array with n >= 1, d >= 1 and finite values, or AggregationError."""
    try:
        array = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AggregationError(f"vectors must be an (n, d) array of numbers: {exc}") from exc
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise AggregationError(f"vectors must have shape (n, d) with n, d >= 1; got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise AggregationError("vectors contain NaN or infinity: drop those reports before aggregating")
    return array


def check_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """Weights as a float64 (n,) array of finite positive numbers; None means one each."""
    if weights is None:
        return np.ones(n)
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AggregationError(f"weights must be numbers: {exc}") from exc
    if array.shape != (n,):
        raise AggregationError(f"weights must have shape ({n},), one per vector; got {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise AggregationError("weights must be finite and > 0 (leave a node out instead of weighting it 0)")
    return array


def check_f(f: int, what: str) -> int:
    """The assumed number of Byzantine inputs: a non-negative int (there is no default on purpose)."""
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 0:
        raise AggregationError(f"{what}: f (assumed Byzantine inputs) must be an integer >= 0; got {f!r}")
    return int(f)


def distinct_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of (n, d) `vectors` in first-occurrence order, and for each row the index
    of its distinct row (a cluster's voices often share a text, hence a vector)."""
    first: dict[bytes, int] = {}
    inverse = np.array([first.setdefault(row.tobytes(), len(first)) for row in vectors], dtype=np.intp)
    if len(first) == len(vectors):
        return vectors, inverse
    return vectors[np.unique(inverse, return_index=True)[1]], inverse


def pairwise_sq_distances(vectors: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances of (n, d) float64 vectors, row by row: exact, symmetric
    and zero on the diagonal (the Gram-matrix shortcut is faster but rounds differently in d(i, j)
    and d(j, i)). Identical rows are computed once and get identical rows of distances."""
    unique, inverse = distinct_rows(vectors)
    distances = np.stack([((unique - row) ** 2).sum(axis=1) for row in unique])
    return distances if len(unique) == len(vectors) else distances[inverse][:, inverse]
