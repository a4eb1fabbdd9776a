"""Cross-model alignment on synthetic data: a hidden orthogonal map plus offsets and noise is
recovered, centering is what makes offsets harmless, unequal dimensions work by zero padding or PCA,
an alignment has exactly one byte spelling, and bad input fails with AlignmentError."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.align import HEADER, Alignment, fit_procrustes
from dso.errors import AlignmentError, DsoError


def random_orthogonal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(rows × cols) with orthonormal columns (rows ≥ cols) or rows (rows < cols)."""
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), max(rows, cols))))
    return q[:rows, :cols] if rows >= cols else q[:cols, :rows].T


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def synthetic_pair(rng: np.random.Generator, n: int, d_s: int, d_t: int, noise: float, offset: float = 3.0):
    """Source points with a common offset (like real embeddings' shared component) and their images
    under a hidden orthogonal map, shifted by another offset, plus noise."""
    source = rng.standard_normal((n, d_s)) + offset * rng.standard_normal(d_s)
    hidden = random_orthogonal(d_s, d_t, rng)
    target_offset = offset * rng.standard_normal(d_t)
    target = (source - source.mean(axis=0)) @ hidden + target_offset + noise * rng.standard_normal((n, d_t))
    return source, target, hidden


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dim=st.integers(2, 40), noise=st.sampled_from([0.0, 0.01, 0.05]))
def test_a_hidden_orthogonal_map_plus_noise_is_recovered(seed, dim, noise):
    rng = np.random.default_rng(seed)
    source, target, hidden = synthetic_pair(rng, n=20 * dim, d_s=dim, d_t=dim, noise=noise)
    alignment = fit_procrustes(source, target)
    assert np.allclose(alignment.matrix, hidden, atol=0.02 + 4 * noise)
    assert alignment.scale == pytest.approx(1.0, abs=0.05)
    fresh = rng.standard_normal((5, dim)) + source.mean(axis=0)
    expected = unit((fresh - source.mean(axis=0)) @ hidden + target.mean(axis=0))
    assert np.allclose(alignment.apply(fresh), expected, atol=0.02 + 4 * noise)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_uniform_scale_between_the_spaces_is_recovered(seed):
    rng = np.random.default_rng(seed)
    source, target, hidden = synthetic_pair(rng, n=400, d_s=16, d_t=16, noise=0.0)
    alignment = fit_procrustes(source, 0.25 * target)
    assert alignment.scale == pytest.approx(0.25, rel=1e-4)
    assert np.allclose(alignment.matrix, hidden, atol=1e-4)


def test_centering_is_what_makes_offsets_harmless():
    rng = np.random.default_rng(7)
    source, target, hidden = synthetic_pair(rng, n=500, d_s=12, d_t=12, noise=0.0, offset=5.0)
    assert np.allclose(fit_procrustes(source, target).matrix, hidden, atol=1e-4)
    assert not np.allclose(fit_procrustes(source, target, center=False).matrix, hidden, atol=0.1)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d_s=st.integers(2, 30), d_t=st.integers(2, 30))
def test_unequal_dimensions_are_padded_to_a_map_with_orthonormal_rows_or_columns(seed, d_s, d_t):
    rng = np.random.default_rng(seed)
    source, target, _ = synthetic_pair(rng, n=200, d_s=d_s, d_t=d_t, noise=0.01)
    alignment = fit_procrustes(source, target)
    assert alignment.matrix.shape == (d_s, d_t)
    gram = alignment.matrix.T @ alignment.matrix if d_s >= d_t else alignment.matrix @ alignment.matrix.T
    assert np.allclose(gram, np.eye(min(d_s, d_t)), atol=1e-4)
    mapped = alignment.apply(source[:7])
    assert mapped.shape == (7, d_t) and mapped.dtype == np.float32
    assert np.allclose(np.linalg.norm(mapped, axis=1), 1.0, atol=1e-5)


def test_a_larger_source_whose_extra_dimensions_are_noise_is_recovered_by_padding_and_pca():
    rng = np.random.default_rng(3)
    core, target, hidden = synthetic_pair(rng, n=600, d_s=10, d_t=10, noise=0.0)
    source = np.hstack([core, 0.01 * rng.standard_normal((600, 20))])  # 30-d source, 10-d signal
    fresh = np.hstack([rng.standard_normal((5, 10)) + core.mean(axis=0), np.zeros((5, 20))])
    expected = unit((fresh[:, :10] - core.mean(axis=0)) @ hidden + target.mean(axis=0))
    for reduce in ("pad", "pca"):
        assert np.allclose(fit_procrustes(source, target, reduce=reduce).apply(fresh), expected, atol=0.01)


def test_to_bytes_round_trips_and_the_id_is_the_sha256_of_the_bytes():
    rng = np.random.default_rng(11)
    source, target, _ = synthetic_pair(rng, n=100, d_s=24, d_t=16, noise=0.05)
    alignment = fit_procrustes(source, target)
    data = alignment.to_bytes()
    assert len(data) == HEADER.size + 4 * (24 + 16 + 24 * 16)
    again = Alignment.from_bytes(data)
    assert again.to_bytes() == data and again.alignment_id == alignment.alignment_id
    assert np.array_equal(again.apply(source[:3]), alignment.apply(source[:3]))
    assert alignment.alignment_id == hashlib.sha256(data).hexdigest()


def test_the_same_anchors_give_the_same_id_and_different_anchors_a_different_one():
    rng = np.random.default_rng(5)
    source, target, _ = synthetic_pair(rng, n=100, d_s=8, d_t=8, noise=0.05)
    first = fit_procrustes(source, target).alignment_id
    assert fit_procrustes(source.copy(), target.copy()).alignment_id == first
    assert fit_procrustes(source[1:], target[1:]).alignment_id != first


@pytest.mark.parametrize(
    "data",
    [b"", b"DSOALGN", Alignment(np.zeros(2, np.float32), np.ones(2, np.float32), np.eye(2, dtype=np.float32), 1.0).to_bytes()[:-1],
     b"NOTALGN" + bytes(40)],
)
def test_from_bytes_rejects_truncated_or_foreign_bytes_with_AlignmentError(data):
    with pytest.raises(AlignmentError):
        Alignment.from_bytes(data)


def test_from_bytes_rejects_nan_values():
    good = Alignment(np.zeros(2, np.float32), np.ones(2, np.float32), np.eye(2, dtype=np.float32), 1.0).to_bytes()
    bad = good[: HEADER.size] + np.array([np.nan], "<f4").tobytes() + good[HEADER.size + 4 :]
    with pytest.raises(AlignmentError):
        Alignment.from_bytes(bad)


def test_mismatched_anchor_counts_raise_AlignmentError():
    with pytest.raises(AlignmentError, match="anchors"):
        fit_procrustes(np.ones((10, 4)) + np.eye(10, 4), np.eye(9, 4))


@pytest.mark.parametrize("bad", [np.ones(4), np.ones((2, 2, 2)), np.zeros((0, 4)), np.array([["a", "b"], ["c", "d"]])])
def test_source_that_is_not_a_numeric_matrix_raises_AlignmentError(bad):
    with pytest.raises(AlignmentError):
        fit_procrustes(bad, np.eye(len(np.atleast_1d(bad)), 2))


def test_nan_or_inf_anchors_raise_AlignmentError():
    rng = np.random.default_rng(0)
    source, target = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    for value in (np.nan, np.inf):
        poisoned = source.copy()
        poisoned[3, 1] = value
        with pytest.raises(AlignmentError, match="NaN"):
            fit_procrustes(poisoned, target)
        with pytest.raises(AlignmentError, match="NaN"):
            fit_procrustes(target, poisoned)


def test_fewer_than_two_anchors_or_identical_anchors_raise_AlignmentError():
    with pytest.raises(AlignmentError, match="at least 2"):
        fit_procrustes(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(AlignmentError, match="same vector"):
        fit_procrustes(np.ones((5, 3)), np.arange(15.0).reshape(5, 3))


def test_fewer_anchors_than_dimensions_is_allowed():
    rng = np.random.default_rng(1)
    alignment = fit_procrustes(rng.standard_normal((5, 32)), rng.standard_normal((5, 16)))
    assert alignment.apply(rng.standard_normal((2, 32))).shape == (2, 16)


def test_apply_rejects_the_wrong_width_and_nan_with_AlignmentError():
    rng = np.random.default_rng(2)
    alignment = fit_procrustes(rng.standard_normal((50, 6)), rng.standard_normal((50, 4)))
    with pytest.raises(AlignmentError, match="columns"):
        alignment.apply(rng.standard_normal((3, 4)))
    with pytest.raises(AlignmentError, match="NaN"):
        alignment.apply(np.full((1, 6), np.nan))
    assert alignment.apply(rng.standard_normal(6)).shape == (4,)


def test_unknown_reduction_raises_AlignmentError_which_is_a_DsoError():
    with pytest.raises(DsoError):
        fit_procrustes(np.eye(4), np.eye(4), reduce="truncate")
