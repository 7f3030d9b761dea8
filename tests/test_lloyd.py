"""Tests for the BalLOT / E-BalLOT Lloyd loop, ``ballot_dask.lloyd.lloyd``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from ballot_dask import BalancedKMeans, balanced_assign, balanced_kmeans
from ballot_dask.blocks import RowBlocks
from ballot_dask.capacities import resolve_capacities
from ballot_dask.initialization import initial_centers
from ballot_dask.lloyd import lloyd
from ballot_dask.solvers import SolverOptions


def _overlapping_blobs(n: int, k: int, seed: int) -> np.ndarray:
    X, _ = make_blobs(n, centers=k, cluster_std=2.5, random_state=seed)
    return X


def _uniform_cube(n: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3))


def _anisotropic(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)) @ np.array([[3.0, 0.0], [1.5, 0.3]])


DATASETS = {"blobs": _overlapping_blobs, "uniform": _uniform_cube, "aniso": _anisotropic}


_WHOLE: dict = {}


def _whole(data, n: int, k: int, seed: int):
    """``_run`` on one block, cached: several tests compare against it."""
    key = (data.__name__, n, k, seed)
    if key not in _WHOLE:
        _WHOLE[key] = _run(data(n, k, seed), k, seed)
    return _WHOLE[key]


def _run(X, k, seed, *, method="exact", block_rows=None, sizes=None, tol=0.0, max_iter=300):
    centers = initial_centers(X, k, "random", np.random.RandomState(seed))
    return lloyd(
        RowBlocks(X, block_rows=block_rows),
        resolve_capacities(X.shape[0], k, sizes=sizes),
        centers,
        method=method,
        options=SolverOptions(),
        max_iter=max_iter,
        tol=tol,
    )


def _objective(X, centers, labels) -> float:
    return float(((X - centers[labels]) ** 2).sum())


# --------------------------------------------------------------------------------------------
# Theorem 17: monotone objective, finite termination
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("data", sorted(DATASETS))
def test_objective_history_is_non_increasing(data, seed):
    # Measured: largest increase between consecutive iterations 3e-11 on objectives ~2e4
    # (relative 2e-15, round-off of the parallel-axis update).
    X = DATASETS[data](1500, 5, seed)
    result = _whole(DATASETS[data], 1500, 5, seed)
    history = np.asarray(result.objective_history)
    assert len(history) == result.n_iter
    assert np.all(np.diff(history) <= 1e-12 * np.abs(history[1:]))
    assert history[-1] < history[0]
    # finite termination (tol = 0: until the centers stop moving)
    assert result.converged
    assert result.n_iter < 300
    assert result.inertia == pytest.approx(history[-1], rel=1e-12)
    assert result.inertia == pytest.approx(_objective(X, result.centers, result.labels), rel=1e-10)
    np.testing.assert_array_equal(result.sizes, np.full(5, 300))
    assert result.certificate is not None
    assert result.certificate.optimal


@pytest.mark.parametrize("seed", [0, 1])
def test_estimator_history_is_non_increasing_and_terminates(seed):
    X = _anisotropic(2000, 4, seed)
    km = BalancedKMeans(4, init="random", tol=0.0, random_state=seed).fit(X)
    history = np.asarray(km.objective_history_)
    assert np.all(np.diff(history) <= 1e-12 * np.abs(history[1:]))
    assert km.converged_
    assert 1 <= km.n_iter_ < km.max_iter
    assert len(history) == km.n_iter_
    # the last step changed nothing: its objective equals the one before it
    if km.n_iter_ >= 2:
        assert history[-1] == pytest.approx(history[-2], rel=1e-12)


def test_max_iter_stops_the_loop_unconverged():
    X = _overlapping_blobs(1500, 5, 1)
    full = _whole(_overlapping_blobs, 1500, 5, 1)
    assert full.n_iter >= 3  # measured: 30 iterations
    cut = _run(X, 5, 1, max_iter=2)
    assert cut.n_iter == 2
    assert not cut.converged
    assert cut.objective_history == full.objective_history[:2]


def test_fixed_point_is_stable_under_one_more_step():
    X = _overlapping_blobs(1500, 5, 2)
    result = _whole(_overlapping_blobs, 1500, 5, 2)
    again = balanced_assign(X, result.centers)
    np.testing.assert_array_equal(again.labels, result.labels)
    assert again.objective == pytest.approx(result.inertia, rel=1e-12)
    for j in range(5):
        np.testing.assert_allclose(
            result.centers[j], X[result.labels == j].mean(axis=0), rtol=1e-12, atol=1e-12
        )


# --------------------------------------------------------------------------------------------
# the loop does not depend on how X is split into row blocks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_rows", [97, 1000, 2499])
@pytest.mark.parametrize("seed", [0, 1])
def test_chunking_invariance_of_the_loop(seed, block_rows):
    # Measured: identical labels and iteration counts; centers differ by <= 1.3e-14 (the
    # summation order of the per-block centroid sums).
    X = _overlapping_blobs(2500, 5, seed)
    whole = _whole(_overlapping_blobs, 2500, 5, seed)
    split = _run(X, 5, seed, block_rows=block_rows)
    assert split.n_iter == whole.n_iter
    assert split.converged == whole.converged
    np.testing.assert_array_equal(split.labels, whole.labels)
    np.testing.assert_array_equal(split.sizes, whole.sizes)
    np.testing.assert_allclose(split.centers, whole.centers, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(split.potentials, whole.potentials, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        split.objective_history, whole.objective_history, rtol=1e-12, atol=0.0
    )
    assert split.inertia == pytest.approx(whole.inertia, rel=1e-12)


def test_pass_counts_do_not_depend_on_chunking():
    X = _overlapping_blobs(2500, 5, 0)
    a, b = _run(X, 5, 0), _run(X, 5, 0, block_rows=97)  # fresh runs: passes accumulate
    assert a.passes == b.passes
    assert a.passes["x"] >= a.n_iter  # one cost-block build per iteration at least


# --------------------------------------------------------------------------------------------
# the exact solver against POT's network simplex
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [None, [50, 100, 150]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_loop_matches_emd_reference(seed, sizes):
    # Measured: identical iteration counts, labels and histories (relative difference 0.0).
    X = _overlapping_blobs(300, 3, seed)
    exact = _run(X, 3, seed, sizes=sizes)
    emd = _run(X, 3, seed, method="emd", sizes=sizes)
    assert exact.n_iter == emd.n_iter
    np.testing.assert_allclose(exact.objective_history, emd.objective_history, rtol=1e-12)
    np.testing.assert_array_equal(exact.labels, emd.labels)
    np.testing.assert_allclose(exact.centers, emd.centers, rtol=1e-12, atol=1e-12)
    assert emd.certificate is not None
    assert emd.certificate.optimal
    expected = [100, 100, 100] if sizes is None else sizes
    np.testing.assert_array_equal(emd.sizes, expected)


# --------------------------------------------------------------------------------------------
# the functional twin
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["k-means++", "coupon"])
@pytest.mark.parametrize("seed", [0, 5])
def test_functional_twin_returns_the_estimator_fit(seed, init):
    X = _overlapping_blobs(1000, 4, seed)
    centers, labels, inertia = balanced_kmeans(X, 4, init=init, random_state=seed)
    km = BalancedKMeans(4, init=init, random_state=seed).fit(X)
    np.testing.assert_array_equal(centers, km.cluster_centers_)
    np.testing.assert_array_equal(labels, km.labels_)
    assert inertia == km.inertia_
    assert inertia == pytest.approx(_objective(X, centers, labels), rel=1e-10)


def test_estimator_runs_the_same_loop():
    # BalancedKMeans with tol=0 and an explicit init is lloyd() on one block.
    X = _overlapping_blobs(1200, 4, 3)
    init = initial_centers(X, 4, "random", np.random.RandomState(3))
    km = BalancedKMeans(4, init=init, tol=0.0).fit(X)
    result = lloyd(
        RowBlocks(X),
        resolve_capacities(1200, 4),
        init,
        method="exact",
        options=SolverOptions(),
        max_iter=300,
        tol=0.0,
    )
    np.testing.assert_array_equal(km.labels_, result.labels)
    np.testing.assert_array_equal(km.cluster_centers_, result.centers)
    assert km.objective_history_ == result.objective_history
    assert km.n_iter_ == result.n_iter
