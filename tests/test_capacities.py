"""ballot_dask.capacities: size requests as per-cluster intervals, and the target projection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballot_dask import Capacities, resolve_capacities


def _check_interval(cap: Capacities, n: int, k: int) -> None:
    assert isinstance(cap, Capacities)
    assert cap.n_clusters == k
    assert cap.lower.shape == (k,) and cap.upper.shape == (k,)
    assert cap.lower.dtype == np.int64 and cap.upper.dtype == np.int64
    assert np.all(cap.lower >= 0) and np.all(cap.lower <= cap.upper) and np.all(cap.upper <= n)
    assert cap.lower.sum() <= n <= cap.upper.sum()


# --------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("k", [1, 2, 3, 7, 10])
@pytest.mark.parametrize("n", [10, 11, 50, 99, 2000, 2003])
def test_default_is_floor_and_ceil(n: int, k: int) -> None:
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    _check_interval(cap, n, k)
    np.testing.assert_array_equal(cap.lower, np.full(k, n // k))
    np.testing.assert_array_equal(cap.upper, np.full(k, -(-n // k)))
    assert cap.is_equality == (n % k == 0)
    # the interval leaves room for exactly n mod k extra points
    assert cap.upper.sum() - n == (k - n % k) % k
    assert n - cap.lower.sum() == n % k


def test_k_equals_n_is_an_assignment_problem() -> None:
    cap = resolve_capacities(12, 12, sizes=None, size_min=None, size_max=None)
    np.testing.assert_array_equal(cap.lower, np.ones(12))
    assert cap.is_equality


def test_more_clusters_than_points_with_explicit_sizes_or_bounds() -> None:
    # equal sizes need a point per cluster; explicit sizes and bounds may leave some empty
    cap = resolve_capacities(3, 5, sizes=[1, 0, 1, 1, 0])
    _check_interval(cap, 3, 5)
    np.testing.assert_array_equal(cap.lower, [1, 0, 1, 1, 0])
    cap = resolve_capacities(3, 5, size_min=0, size_max=1)
    _check_interval(cap, 3, 5)
    np.testing.assert_array_equal(cap.upper, np.ones(5))
    with pytest.raises(ValueError, match="size_max is infeasible"):
        resolve_capacities(3, 5, size_max=[1, 1, 0, 0, 0])


@pytest.mark.parametrize(
    "sizes", [[3, 5, 2], (3, 5, 2), np.array([3, 5, 2]), np.array([3.0, 5.0, 2.0]), [0, 10, 0]]
)
def test_explicit_sizes(sizes) -> None:
    expected = np.asarray(sizes, dtype=np.int64)
    cap = resolve_capacities(10, 3, sizes=sizes, size_min=None, size_max=None)
    _check_interval(cap, 10, 3)
    np.testing.assert_array_equal(cap.lower, expected)
    np.testing.assert_array_equal(cap.upper, expected)
    assert cap.is_equality
    # the bounds do not alias each other or the input
    assert not np.shares_memory(cap.lower, cap.upper)
    if isinstance(sizes, np.ndarray):
        assert not np.shares_memory(cap.lower, sizes)


def test_scalar_sizes_broadcast() -> None:
    cap = resolve_capacities(12, 4, sizes=3, size_min=None, size_max=None)
    np.testing.assert_array_equal(cap.lower, [3, 3, 3, 3])
    np.testing.assert_array_equal(cap.upper, [3, 3, 3, 3])


@pytest.mark.parametrize(
    "size_min, size_max, lower, upper",
    [
        (2, 5, [2, 2, 2], [5, 5, 5]),
        ([1, 2, 3], 6, [1, 2, 3], [6, 6, 6]),
        (0, [4, 4, 5], [0, 0, 0], [4, 4, 5]),
        ([1, 2, 3], [9, 8, 7], [1, 2, 3], [9, 8, 7]),
        (3, None, [3, 3, 3], [12, 12, 12]),  # no maximum: at most every point
        (None, 5, [0, 0, 0], [5, 5, 5]),  # no minimum: possibly empty
        (None, 100, [0, 0, 0], [12, 12, 12]),  # maxima above n are clipped to n
        (4, 4, [4, 4, 4], [4, 4, 4]),  # a degenerate interval is an equality
        (np.int32(2), np.float64(6.0), [2, 2, 2], [6, 6, 6]),
    ],
)
def test_size_bounds_broadcast(size_min, size_max, lower, upper) -> None:
    cap = resolve_capacities(12, 3, sizes=None, size_min=size_min, size_max=size_max)
    _check_interval(cap, 12, 3)
    np.testing.assert_array_equal(cap.lower, lower)
    np.testing.assert_array_equal(cap.upper, upper)
    assert cap.is_equality == (lower == upper)


def test_dual_term_is_the_min_of_both_bounds() -> None:
    cap = Capacities(np.array([1, 2, 3, 0]), np.array([4, 2, 5, 7]))
    v = np.array([-1.5, 2.0, 0.25, -3.0])
    # v < 0 pays the upper bound, v >= 0 the lower one
    expected = 4 * -1.5 + 2 * 2.0 + 3 * 0.25 + 7 * -3.0
    assert cap.dual_term(v) == pytest.approx(expected, rel=1e-15)
    assert cap.dual_term(np.zeros(4)) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = rng.standard_normal(4)
        assert cap.dual_term(w) == pytest.approx(
            float(np.minimum(cap.lower * w, cap.upper * w).sum()), rel=1e-14
        )
        # concave and piecewise linear: it lies below each linear piece
        assert cap.dual_term(w) <= float(cap.lower @ w) + 1e-12
        assert cap.dual_term(w) <= float(cap.upper @ w) + 1e-12


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "n, k, kwargs, exc, match",
    [
        (10, 0, {}, ValueError, r"n_clusters must be at least 1"),
        (10, 11, {}, ValueError, r"n_clusters=11 is larger than the number of samples"),
        (10, 2, {"sizes": [5, 5], "size_min": 1}, ValueError, r"either sizes or size_min"),
        (10, 2, {"sizes": [5, 5], "size_max": 9}, ValueError, r"either sizes or size_min"),
        (10, 2, {"sizes": [5, 4]}, ValueError, r"sizes must sum to the number of samples \(10\)"),
        (10, 2, {"sizes": [-1, 11]}, ValueError, r"sizes must be non-negative"),
        (10, 2, {"sizes": [4.5, 5.5]}, ValueError, r"sizes must hold whole numbers"),
        (10, 2, {"sizes": [np.nan, 10]}, ValueError, r"sizes must hold whole numbers"),
        (10, 2, {"sizes": [np.inf, 10]}, ValueError, r"sizes must hold whole numbers"),
        (10, 2, {"sizes": [2, 3, 5]}, ValueError, r"sizes must be a scalar or have one entry"),
        (10, 2, {"sizes": [[5, 5]]}, ValueError, r"sizes must be a scalar or have one entry"),
        (10, 2, {"sizes": [True, False]}, TypeError, r"sizes must be an integer"),
        (10, 2, {"sizes": ["5", "5"]}, TypeError, r"sizes must be an integer"),
        (10, 2, {"size_min": [6, 5]}, ValueError, r"size_min is infeasible.*sum to 11"),
        (10, 2, {"size_max": [4, 5]}, ValueError, r"size_max is infeasible.*sum to 9"),
        (10, 3, {"size_min": [1, 5, 1], "size_max": 4}, ValueError, r"size_min exceeds size_max"),
        (10, 2, {"size_min": -1}, ValueError, r"size_min must be non-negative"),
        (10, 2, {"size_max": [5, -1]}, ValueError, r"size_max must be non-negative"),
        (10, 2, {"size_min": 1.5}, ValueError, r"size_min must hold whole numbers"),
        (10, 2, {"size_max": [5, 6, 7]}, ValueError, r"size_max must be a scalar or have one"),
        (10, 2, {"size_min": "a"}, TypeError, r"size_min must be an integer"),
    ],
)
def test_errors_name_the_argument(n, k, kwargs, exc, match) -> None:
    full = {"sizes": None, "size_min": None, "size_max": None, **kwargs}
    with pytest.raises(exc, match=match):
        resolve_capacities(n, k, **full)


def test_size_min_exceeding_size_max_lists_the_clusters() -> None:
    with pytest.raises(ValueError, match=r"size_min exceeds size_max for clusters \[1, 3\]"):
        resolve_capacities(20, 4, sizes=None, size_min=[1, 6, 2, 7], size_max=[9, 5, 9, 6])


# --------------------------------------------------------------------------- target


def _check_projection(cap: Capacities, counts: np.ndarray, target: np.ndarray) -> None:
    """``target`` is the Euclidean projection of ``counts`` on the capped simplex:
    ``target = clip(counts - t, lower, upper)`` for one shift ``t`` (the KKT conditions)."""
    lo, hi = cap.lower.astype(float), cap.upper.astype(float)
    scale = max(1.0, float(np.abs(counts).max()))
    tol = 1e-9 * scale
    assert np.all(target >= lo - tol) and np.all(target <= hi + tol)
    assert target.sum() == pytest.approx(counts.sum(), rel=1e-12, abs=1e-12)
    shift = counts - target
    inside = (target > lo + tol) & (target < hi - tol)
    if inside.any():
        t = shift[inside].mean()
        np.testing.assert_allclose(shift[inside], t, atol=tol)
    else:  # every coordinate at a bound: any t between the two groups' shifts will do
        free = lo < hi  # a fixed coordinate (lo == hi) says nothing about the shift
        at_lo = free & (np.abs(target - lo) <= tol)
        at_hi = free & (np.abs(target - hi) <= tol)
        t = 0.5 * (shift[at_lo].max(initial=-np.inf) + shift[at_hi].min(initial=np.inf))
        if not np.isfinite(t):
            t = shift[at_lo].max() if at_lo.any() else shift[at_hi].min(initial=0.0)
    np.testing.assert_allclose(target, np.clip(counts - t, lo, hi), atol=10 * tol)


def test_target_of_equal_sizes_is_the_sizes() -> None:
    cap = resolve_capacities(12, 3, sizes=[2, 4, 6], size_min=None, size_max=None)
    target = cap.target(np.array([12.0, 0.0, 0.0]))
    np.testing.assert_array_equal(target, [2.0, 4.0, 6.0])
    assert target.dtype == np.float64


@pytest.mark.parametrize(
    "counts",
    [[4, 4, 4], [2, 4, 6], [3, 3, 6], [2, 2, 8], [5.5, 3.25, 3.25]],
)
def test_target_equals_feasible_counts(counts) -> None:
    cap = resolve_capacities(12, 3, sizes=None, size_min=2, size_max=[6, 6, 8])
    counts = np.asarray(counts, dtype=float)
    np.testing.assert_allclose(cap.target(counts), counts, rtol=1e-12)


@pytest.mark.parametrize(
    "counts, expected",
    [
        ([12, 0, 0], [6, 3, 3]),  # capped at 6, the rest shared equally
        ([0, 0, 12], [2, 2, 8]),
        ([10, 1, 1], [6, 3, 3]),
        ([7, 5, 0], [6, 4, 2]),  # a shift of 1: the first at its upper, the third at its lower
        ([5, 5, 2], [5, 5, 2]),
    ],
)
def test_target_projects_infeasible_counts(counts, expected) -> None:
    cap = resolve_capacities(12, 3, sizes=None, size_min=2, size_max=[6, 6, 8])
    counts = np.asarray(counts, dtype=float)
    target = cap.target(counts)
    np.testing.assert_allclose(target, expected, rtol=1e-12, atol=1e-12)
    _check_projection(cap, counts, target)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(data=st.data(), n=st.integers(1, 60))
def test_target_is_the_projection(data: st.DataObject, n: int) -> None:
    k = data.draw(st.integers(1, min(6, n)))
    lower = np.array(data.draw(st.lists(st.integers(0, n), min_size=k, max_size=k)))
    extra = np.array(data.draw(st.lists(st.integers(0, n), min_size=k, max_size=k)))
    upper = np.minimum(lower + extra, n)
    if lower.sum() > n or upper.sum() < n:
        lower = np.zeros(k, dtype=np.int64)
        upper = np.full(k, n, dtype=np.int64)
    cap = resolve_capacities(n, k, sizes=None, size_min=lower, size_max=upper)
    weights = np.array(data.draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    counts = n * weights / weights.sum() if weights.sum() > 0 else np.full(k, n / k)
    target = cap.target(counts)
    _check_projection(cap, counts, target)
    assert target.sum() == pytest.approx(n, rel=1e-12)
    # projecting twice changes nothing
    np.testing.assert_allclose(cap.target(target), target, rtol=1e-9, atol=1e-9)
