"""Synthetic balanced data: planted sizes, centre geometry, noise models, laziness, checks."""

from __future__ import annotations

import pickle

import dask
import dask.array as da
import numpy as np
import pytest
from scipy.spatial.distance import pdist

from ballot_dask.datasets import (
    MODELS,
    ball_centers,
    gaussian_mixture,
    make_data,
    stochastic_ball,
)


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def _expected_sizes(n: int, k: int) -> np.ndarray:
    return np.array([n // k + (j < n % k) for j in range(k)])


# --------------------------------------------------------------------------------------------
# centres
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "d", "delta"),
    [(2, 2, 3.0), (3, 5, 1.5), (5, 5, 2.0), (5, 2, 3.0), (9, 2, 1.0), (10, 3, 2.5), (7, 1, 4.0)],
)
def test_ball_centers_nearest_distance_is_delta(k, d, delta):
    centers = ball_centers(k, d, delta)
    assert centers.shape == (k, d)
    assert centers.dtype == np.float64
    dist = pdist(centers)
    assert dist.min() == pytest.approx(delta, rel=1e-12)
    np.testing.assert_allclose(centers.mean(axis=0), 0.0, atol=1e-12)
    if k <= d:  # regular simplex: every pair at distance delta
        np.testing.assert_allclose(dist, delta, rtol=1e-12)


def test_ball_centers_layouts():
    simplex = ball_centers(3, 4, np.sqrt(2.0))
    np.testing.assert_allclose(simplex + 1 / 3 * np.array([1, 1, 1, 0]), np.eye(3, 4), atol=1e-15)
    # k=5 > d=2: side ceil(sqrt 5) = 3, first five grid points in row-major order
    grid = ball_centers(5, 2, 1.0)
    raw = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]], dtype=float)
    np.testing.assert_allclose(grid, raw - raw.mean(axis=0), atol=1e-15)
    # side of the grid is the exact integer root (64 ** (1/3) is 3.999... in floating point)
    cube = ball_centers(64, 3, 1.0)
    assert np.ptp(cube, axis=0).tolist() == [3.0, 3.0, 3.0]
    np.testing.assert_allclose(ball_centers(1, 3, 2.0), np.zeros((1, 3)))


# --------------------------------------------------------------------------------------------
# planted labels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize(
    ("n", "k", "chunks"),
    [(1000, 7, 128), (10, 3, 4), (100, 100, 7), (12, 5, 1), (50, 1, 50), (999, 4, 10_000)],
)
def test_sizes_exact(model, n, k, chunks):
    _, labels, _ = make_data(model, n, 2, k, chunks=chunks, seed=5)
    y = labels.compute()
    assert y.dtype == np.int64
    assert y.shape == (n,)
    np.testing.assert_array_equal(np.bincount(y, minlength=k), _expected_sizes(n, k))
    # each chunk holds the multiset {i % k} of its rows, permuted
    start = 0
    for size in labels.chunks[0]:
        block = y[start : start + size]
        np.testing.assert_array_equal(np.sort(block), np.sort(np.arange(start, start + size) % k))
        start += size


def test_labels_are_permuted_within_chunks():
    _, labels, _ = stochastic_ball(1000, 2, 10, chunks=250)
    y = labels.compute()
    assert not np.array_equal(y, np.arange(1000) % 10)
    # the permutation differs between chunks (seeded by the chunk index)
    assert not np.array_equal(y[:250], y[250:500])


def test_chunks_and_dtype_honoured():
    for dtype in (np.float32, np.float64):
        X, labels, centers = gaussian_mixture(1003, 3, 4, chunks=250, dtype=dtype)
        assert X.dtype == dtype
        assert X.shape == (1003, 3)
        assert X.chunks == ((250, 250, 250, 250, 3), (3,))
        assert X.chunks[0] == labels.chunks[0]
        assert labels.dtype == np.int64
        assert centers.dtype == np.float64
        x = X.compute()
        assert x.dtype == dtype
        assert x.shape == (1003, 3)
    X32 = stochastic_ball(100, 2, 3, chunks=30, dtype="float32")[0].compute()
    X64 = stochastic_ball(100, 2, 3, chunks=30, dtype="float64")[0].compute()
    np.testing.assert_array_equal(X32, X64.astype(np.float32))


# --------------------------------------------------------------------------------------------
# noise models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 5])
def test_ball_points_within_unit_distance_and_uniform(d):
    n = 20_000
    X, labels, centers = stochastic_ball(n, d, 6, chunks=3_000, seed=2)
    x, y = da.compute(X, labels)
    r = np.linalg.norm(x - centers[y], axis=1)
    assert r.max() <= 1.0 + 1e-12
    # uniform in the ball: r^d is uniform on [0, 1] (mean 1/2, std 1/sqrt(12 n))
    assert np.mean(r**d) == pytest.approx(0.5, abs=0.015)
    # delta = 3 > 2: the balls are disjoint, so every point's nearest centre is its own
    nearest = np.argmin(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, y)


def test_gmm_means_and_variance():
    n, d, k = 40_000, 3, 4
    X, labels, centers = gaussian_mixture(n, d, k, delta=5.0, chunks=7_000, seed=3)
    x, y = da.compute(X, labels)
    for j in range(k):
        # 10^4 points per cluster: the mean's standard error is 0.01 per coordinate
        np.testing.assert_allclose(x[y == j].mean(axis=0), centers[j], atol=0.05)
    resid = x - centers[y]
    np.testing.assert_allclose(resid.var(axis=0), 1.0, atol=0.05)
    np.testing.assert_allclose(np.corrcoef(resid.T) - np.eye(d), 0.0, atol=0.05)


# --------------------------------------------------------------------------------------------
# determinism and laziness
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_deterministic_and_seeded(model):
    a = make_data(model, 500, 3, 4, chunks=128, seed=11)
    b = make_data(model, 500, 3, 4, chunks=128, seed=11)
    c = make_data(model, 500, 3, 4, chunks=128, seed=12)
    assert a[0].name == b[0].name and a[1].name == b[1].name
    assert a[0].name != c[0].name
    xa, ya = da.compute(a[0], a[1])
    xb, yb = da.compute(b[0], b[1])
    xc, yc = da.compute(c[0], c[1])
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(xa, xc)
    assert not np.array_equal(ya, yc)
    np.testing.assert_array_equal(a[2], c[2])  # the centres do not depend on the seed
    # a chunk is the same whether computed alone or with the others
    np.testing.assert_array_equal(a[0].blocks[2].compute(), xa[256:384])


def test_graph_holds_no_data():
    X, labels, _ = stochastic_ball(10**6, 8, 10, chunks=100_000)
    assert X.nbytes == 64_000_000
    graph = X.__dask_graph__()
    assert len(pickle.dumps(graph)) < 20_000
    assert len(pickle.dumps(labels.__dask_graph__())) < 20_000
    assert len(dict(graph)) == 10
    # X's tasks do not depend on the labels array
    assert labels.name not in graph.layers
    assert not any(isinstance(key, tuple) and key[0] == labels.name for key in graph)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 3, "d": 2, "k": 4}, "n must be >= 4"),
        ({"n": 10, "d": 2, "k": 0}, "k must be >= 1"),
        ({"n": 10, "d": 0, "k": 2}, "d must be >= 1"),
        ({"n": 10, "d": 2, "k": 2, "chunks": 0}, "chunks must be >= 1"),
        ({"n": 10, "d": 2, "k": 2, "delta": -1}, "delta must be > 0, got -1"),
        ({"n": 10, "d": 2, "k": 2, "delta": 0.0}, "delta must be > 0"),
        ({"n": 10, "d": 2, "k": 2, "seed": -1}, "seed must be >= 0"),
    ],
)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_validation_value_errors(model, kwargs, match):
    kwargs = dict(kwargs)
    n, d, k = kwargs.pop("n"), kwargs.pop("d"), kwargs.pop("k")
    with pytest.raises(ValueError, match=match):
        MODELS[model](n, d, k, **kwargs)


def test_validation_other_errors():
    with pytest.raises(ValueError, match="raise n or lower k"):
        stochastic_ball(3, 2, 4)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        stochastic_ball(10, 2, 2, dtype=np.int64)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        gaussian_mixture(10, 2, 2, dtype="not-a-dtype")
    with pytest.raises(TypeError, match="chunks must be an integer"):
        gaussian_mixture(10, 2, 2, chunks=2.5)
    with pytest.raises(ValueError, match=r"model must be one of \['ball', 'gmm'\]"):
        make_data("uniform", 10, 2, 2)
    with pytest.raises(ValueError, match="delta must be > 0, got -1"):
        ball_centers(3, 2, -1)
    with pytest.raises(ValueError, match="delta must be finite"):
        ball_centers(3, 2, float("nan"))
    with pytest.raises(ValueError, match="k must be >= 1"):
        ball_centers(0, 2, 1.0)
    with pytest.raises(ValueError, match="d must be >= 1"):
        ball_centers(2, 0, 1.0)
