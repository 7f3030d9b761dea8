"""The pass's reserve (:mod:`ballot_dask.reserve`, :mod:`ballot_dask.solvers.reserved`): the
rows within a wider threshold kept where they were read, and the bands cut from them for
moved potentials.  Each band cut from a reserve is checked against a pass over the whole
block at the same potentials; fits that use it against the in-memory fit (labels) on the
threaded scheduler and a 2-process cluster."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from references import count_calls

from ballot_dask import BalancedKMeans
from ballot_dask.combine import combine_passes
from ballot_dask.exact_pass import exact_pass
from ballot_dask.reserve import combine_reserved, reserve_band, reserve_pass
from ballot_dask.solvers import exact
from ballot_dask.solvers.reserved import HeldReserve

N, D, K, CHUNK = 400_000, 8, 16, 50_000


def _problem(dtype, seed: int = 3):
    rng = np.random.default_rng(seed)
    k, d = 9, 4
    means = 2.0 * rng.standard_normal((k, d))
    X = (means[rng.integers(k, size=30_000)] + rng.standard_normal((30_000, d))).astype(dtype)
    centers = means + 0.3 * rng.standard_normal((k, d))
    return X, centers, rng.normal(scale=0.3, size=k)


def _assert_same_pass(got, want) -> None:
    """Two passes settle the same rows the same way (the band, counts, sums, objective,
    slack matrix)."""
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-12, atol=1e-9)
    assert got.objective == pytest.approx(want.objective, rel=1e-12)
    np.testing.assert_array_equal(got.slack, want.slack)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reserve_pass_is_the_pass_and_its_bands_are_the_passes_at_moved_potentials(dtype):
    X, centers, v = _problem(dtype)
    n, theta, reach, scale = X.shape[0], 0.2, 1.5, 0.5
    blocks = [(0, X[:12_000]), (12_000, X[12_000:])]
    parts = [reserve_pass(xb, centers, v, theta, n, n, reach, n, scale, off) for off, xb in blocks]
    (shipped, full) = combine_reserved([p for p, _ in parts])
    assert not full
    whole = exact_pass(X, centers, v, theta, n, pair_scale=scale)
    _assert_same_pass(shipped, whole)
    np.testing.assert_array_equal(shipped.hist, whole.hist)
    np.testing.assert_array_equal(shipped.pairs, whole.pairs)
    assert 0 < shipped.rows.shape[0] < sum(r.rows.shape[0] for _, r in parts) < n

    # potentials moved by less than reach - theta' (spread): the band from the reserves is
    # the pass's at the moved potentials, row for row
    moved = v + np.linspace(-0.4, 0.4, v.shape[0])
    held = HeldReserve(v.copy(), reach)
    for theta2 in (0.1, 0.5):
        assert held.serves(moved, theta2)
        bands = [reserve_band(r, centers, moved, theta2, n, n) for _, r in parts]
        _assert_same_pass(combine_passes(bands), exact_pass(X, centers, moved, theta2, n))
    assert not held.serves(moved, 0.8)  # 0.8 + 0.8 > 1.5: rows beyond the reach may move
    assert not held.serves(moved, np.inf)


def test_a_reserve_without_room_passes_the_chunk_again_without_one():
    X, centers, v = _problem(np.float64)
    n = X.shape[0]
    (shipped, full), reserve = reserve_pass(X, centers, v, 0.2, n, n, 1.5, 100, 0.5, 0)
    assert full and reserve.rows.shape[0] == 0
    whole = exact_pass(X, centers, v, 0.2, n, pair_scale=0.5)
    _assert_same_pass(shipped, whole)
    np.testing.assert_array_equal(shipped.pairs, whole.pairs)


@pytest.fixture(scope="module")
def overlapping():
    """Unit gaussians about 4 apart (as ``benchmarks/bench_dask.py`` draws them): the early
    Lloyd steps' potentials are shifted by the passes' pair histograms."""
    rng = np.random.default_rng(11)
    means = rng.normal(scale=4.0 / np.sqrt(2.0 * D), size=(K, D))
    return (means[rng.integers(K, size=N)] + rng.standard_normal((N, D))).astype(np.float32)


@pytest.mark.parametrize("scheduler", ["threads", "distributed"], indirect=True)
def test_fits_that_cut_bands_from_reserves_equal_the_in_memory_fit(
    overlapping, scheduler, monkeypatch
):
    params = dict(n_clusters=K, random_state=0, max_iter=12, tol=0.0)
    X = da.from_array(overlapping, chunks=(CHUNK, D))
    with dask.config.set({"ballot.init-sample": 16384}):
        reference = BalancedKMeans(**params).fit(overlapping)
        reserved = count_calls(monkeypatch, exact, "band_from_reserve")
        persisted = BalancedKMeans(**params).fit(X)
        assert not reserved  # X persisted: a pass costs no read, no reserve is kept
        with dask.config.set({"ballot.persist": False}):  # every pass reads X
            km = BalancedKMeans(**params).fit(X)
    assert reserved, "no band was cut from a reserve"
    np.testing.assert_array_equal(persisted.labels_.compute(), reference.labels_)
    assert km.certificate_.optimal and reference.certificate_.optimal
    np.testing.assert_array_equal(km.labels_.compute(), reference.labels_)
    np.testing.assert_allclose(km.cluster_centers_, reference.cluster_centers_, atol=1e-5)
    # a band from a reserve is a round, not a read of X
    assert km.n_passes_["rounds"] == km.n_passes_["x"] + len(reserved)
