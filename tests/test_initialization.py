"""Tests for ballot_dask.initialization."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist, squareform

from ballot_dask.initialization import INITIALIZERS, initial_centers

NAMES = ["k-means++", "random", "diameter", "coupon"]


def _ball(rng: np.random.Generator, n: int, center: np.ndarray) -> np.ndarray:
    """Uniform sample of ``n`` points from the unit ball around ``center``."""
    d = center.size
    g = rng.standard_normal((n, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return center + g * rng.random((n, 1)) ** (1.0 / d)


def _ball_model(seed: int, k: int, n_per: int = 300, spacing: float = 10.0):
    """Balanced stochastic ball model: k unit balls in R^2 with centres on a line."""
    rng = np.random.default_rng(seed)
    centres = np.column_stack([spacing * np.arange(k), np.zeros(k)])
    X = np.vstack([_ball(rng, n_per, c) for c in centres])
    return X[rng.permutation(len(X))], centres


def _is_row_of(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """For each center, whether it (approximately) equals some row of X."""
    return np.array([np.isclose(X, c).all(axis=1).any() for c in centers])


def _blocked_max_dist(X: np.ndarray, block: int = 2048) -> float:
    best = max(cdist(X[s : s + block], X, "sqeuclidean").max() for s in range(0, len(X), block))
    return float(np.sqrt(best))


def test_registry_keys() -> None:
    assert set(INITIALIZERS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3])
def test_named_init_shape_dtype_and_rows(name: str, dtype: type, d: int) -> None:
    k = 2 if name == "diameter" else 4
    X: np.ndarray = np.random.default_rng(1).standard_normal((60, d)).astype(dtype)
    C = initial_centers(X, k, name, np.random.RandomState(0))
    assert C.shape == (k, d)
    assert C.dtype == np.float64
    assert C.flags.c_contiguous
    assert np.isfinite(C).all()
    assert _is_row_of(X, C).all()
    # Distinct data points (X has no duplicate rows).
    assert len(np.unique(C, axis=0)) == k


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 7])
def test_deterministic_for_seed(name: str, seed: int) -> None:
    k = 2 if name == "diameter" else 3
    X = np.random.default_rng(2).standard_normal((200, 2))
    a = initial_centers(X, k, name, np.random.RandomState(seed))
    b = initial_centers(X, k, name, np.random.RandomState(seed))
    np.testing.assert_array_equal(a, b)


def test_random_differs_across_seeds() -> None:
    X = np.random.default_rng(3).standard_normal((500, 2))
    outs = [initial_centers(X, 3, "random", np.random.RandomState(s)) for s in range(5)]
    n_distinct = len({o.tobytes() for o in outs})
    assert n_distinct == 5


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("duplicates", [False, True])
def test_diameter_matches_pdist(seed: int, d: int, duplicates: bool) -> None:
    rng = np.random.default_rng(100 * seed + d)
    n = int(rng.integers(50, 501))
    X = rng.standard_normal((n, d))
    if duplicates:
        X = np.round(X, 1)  # many exact ties
        X = np.vstack([X, X[rng.integers(0, n, n // 3)]])
    C = initial_centers(X, 2, "diameter", np.random.RandomState(0))
    D = squareform(pdist(X))
    assert np.isclose(np.linalg.norm(C[0] - C[1]), D.max(), rtol=1e-12, atol=0)
    assert _is_row_of(X, C).all()


def test_diameter_tie_break_smallest_indices() -> None:
    # Square: both diagonals tie; the lexicographically smallest index pair is (0, 2).
    X = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    C = initial_centers(X, 2, "diameter", np.random.RandomState(0))
    np.testing.assert_array_equal(C, X[[0, 2]])


def test_diameter_all_points_equal() -> None:
    X = np.ones((10, 3))
    C = initial_centers(X, 2, "diameter", np.random.RandomState(0))
    np.testing.assert_array_equal(C, np.ones((2, 3)))


@pytest.mark.parametrize("d", [2, 5])
def test_diameter_large_two_ball(d: int) -> None:
    rng = np.random.default_rng(d)
    shift = np.zeros(d)
    shift[0] = 3.0
    X = np.vstack([_ball(rng, 10000, np.zeros(d)), _ball(rng, 10000, shift)])
    C = initial_centers(X, 2, "diameter", np.random.RandomState(0))
    assert np.isclose(np.linalg.norm(C[0] - C[1]), _blocked_max_dist(X), rtol=1e-12, atol=0)
    # One endpoint in each ball.
    assert {int(C[0, 0] > 1.5), int(C[1, 0] > 1.5)} == {0, 1}


@pytest.mark.parametrize("k", [1, 3, 4])
def test_diameter_requires_two_clusters(k: int) -> None:
    X = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.raises(ValueError, match="diameter"):
        initial_centers(X, k, "diameter", np.random.RandomState(0))


@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coupon_hits_every_ball(k: int, seed: int) -> None:
    X, centres = _ball_model(seed, k)
    C = initial_centers(X, k, "coupon", np.random.RandomState(seed))
    assert C.shape == (k, 2)
    dist = cdist(C, centres)
    owner = dist.argmin(axis=1)
    assert (dist.min(axis=1) <= 1.0 + 1e-12).all()
    assert sorted(owner.tolist()) == list(range(k))
    assert _is_row_of(X, C).all()


def test_coupon_ties_still_give_k_distinct() -> None:
    # Equally spaced grid: every single-linkage merge height ties, so fcluster cannot cut
    # at exactly k groups and the fallback must kick in.
    X = np.array([[i, j] for i in range(6) for j in range(6)], dtype=float)
    for seed in range(5):
        C = initial_centers(X, 4, "coupon", np.random.RandomState(seed))
        assert C.shape == (4, 2)
        assert len(np.unique(C, axis=0)) == 4
        assert _is_row_of(X, C).all()


@pytest.mark.parametrize("name", ["k-means++", "random", "coupon"])
def test_single_cluster(name: str) -> None:
    X = np.random.default_rng(4).standard_normal((30, 3))
    C = initial_centers(X, 1, name, np.random.RandomState(0))
    assert C.shape == (1, 3)
    assert C.dtype == np.float64
    assert _is_row_of(X, C).all()


@pytest.mark.parametrize("name", ["k-means++", "random", "coupon"])
def test_n_equals_k(name: str) -> None:
    X = np.random.default_rng(5).standard_normal((4, 2))
    C = initial_centers(X, 4, name, np.random.RandomState(0))
    # Every point must be used exactly once.
    np.testing.assert_array_equal(np.unique(C, axis=0), np.unique(X, axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_array_init_is_float64_copy(dtype: type) -> None:
    X = np.zeros((10, 2))
    init: np.ndarray = np.array([[1, 2], [3, 4], [5, 6]], dtype=dtype)
    C = initial_centers(X, 3, init, np.random.RandomState(0))
    assert C.dtype == np.float64
    np.testing.assert_array_equal(C, init.astype(np.float64))
    C[0, 0] = -99.0
    assert init[0, 0] == 1


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (3,), (1, 3, 2)])
def test_array_init_wrong_shape(shape: tuple[int, ...]) -> None:
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="init") as excinfo:
        initial_centers(X, 3, np.ones(shape), np.random.RandomState(0))
    assert str((3, 2)) in str(excinfo.value)
    assert str(shape) in str(excinfo.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_array_init_non_finite(bad: float) -> None:
    init = np.ones((3, 2))
    init[1, 1] = bad
    with pytest.raises(ValueError, match="init"):
        initial_centers(np.zeros((10, 2)), 3, init, np.random.RandomState(0))


@pytest.mark.parametrize("name", ["kmeans++", "", "Random", "diam"])
def test_unknown_name(name: str) -> None:
    with pytest.raises(ValueError, match="coupon") as excinfo:
        initial_centers(np.zeros((10, 2)), 2, name, np.random.RandomState(0))
    for allowed in NAMES:
        assert allowed in str(excinfo.value)


@pytest.mark.parametrize("bad", [3, 2.5, None, {"a": 1}])
def test_bad_type(bad: object) -> None:
    with pytest.raises(TypeError, match="init"):
        initial_centers(np.zeros((10, 2)), 2, bad, np.random.RandomState(0))  # type: ignore[arg-type]
