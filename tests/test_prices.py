"""Price rounds (:mod:`ballot_dask.solvers.prices`): the clusters' potentials moved toward
balance before the exact repair.  They only change where the repair starts: the step's
objective is still ``ot.emd``'s, with the rounds taken on the way (counted, not assumed)."""

from __future__ import annotations

import numpy as np
import pytest
from references import emd_optimum, reference_cost
from sklearn.cluster import kmeans_plusplus

from ballot_dask import resolve_capacities
from ballot_dask.blocks import RowBlocks
from ballot_dask.capacities import Capacities
from ballot_dask.costs import cost_block
from ballot_dask.kernels import reduced_cost_labels, reduced_cost_runner_up
from ballot_dask.solvers import SolverOptions, prices, repair
from ballot_dask.solvers.exact import imbalance, solve_exact
from ballot_dask.solvers.paths import DONE, successive_shortest_paths


def _mixture(n: int, d: int, k: int, sep: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((k, d))
    return means[np.arange(n) % k] + rng.standard_normal((n, d))


@pytest.mark.parametrize(
    ("m", "k", "share"),
    [(5000, 8, 0.5), (5000, 8, 1.0), (3000, 300, 0.5), (200, 300, 0.2), (4000, 40000, 0.01)],
)
def test_a_rounds_gap_per_cluster_is_the_wanted_smallest(m: int, k: int, share: float) -> None:
    # each moving cluster's gap is the wanted-th smallest among its rows (all of them when
    # fewer), ties included; by sorting in NumPy.  The cases reach both ways of finding it:
    # a selection per cluster (many rows a cluster) and one sort (few)
    rng = np.random.default_rng(m + k)
    keys = rng.integers(0, k, m)
    gaps = np.round(rng.random(m), 2)  # many ties
    wanted = np.where(rng.random(k) < share, rng.integers(1, 3 * m // k + 3, k), 0)
    clusters, shift = prices._shift(keys, gaps, wanted, k)
    expected = [
        (j, np.sort(gaps[keys == j])[min(wanted[j], np.count_nonzero(keys == j)) - 1])
        for j in range(k)
        if wanted[j] > 0 and np.any(keys == j)
    ]
    assert len(expected) > 0
    np.testing.assert_array_equal(clusters, [j for j, _ in expected])
    np.testing.assert_array_equal(shift, [g for _, g in expected])


def test_runner_up_matches_a_sort_ties_to_the_lowest_index() -> None:
    rng = np.random.default_rng(0)
    C = rng.integers(0, 6, size=(500, 7)).astype(np.float64)  # many ties
    v = rng.integers(0, 3, size=7).astype(np.float64)
    labels, second, gaps = reduced_cost_runner_up(C, v)
    R = C - v
    order = np.argsort(R, axis=1, kind="stable")  # stable: lowest index first on ties
    np.testing.assert_array_equal(labels, order[:, 0])
    np.testing.assert_array_equal(second, order[:, 1])
    rows = np.arange(500)
    np.testing.assert_array_equal(gaps, R[rows, order[:, 1]] - R[rows, order[:, 0]])
    np.testing.assert_array_equal(labels, reduced_cost_labels(C, v)[0])
    np.testing.assert_array_equal(gaps, reduced_cost_labels(C, v)[1])


def test_runner_up_of_one_column() -> None:
    labels, second, gaps = reduced_cost_runner_up(np.ones((3, 1)), np.zeros(1))
    assert labels.tolist() == [0, 0, 0] and second.tolist() == [-1, -1, -1]
    assert np.all(gaps == np.inf)


@pytest.mark.parametrize("k", [16, 128])
def test_rounds_shrink_a_cold_imbalance_and_return_their_labels(k: int) -> None:
    X = _mixture(8000, 8, k, 3.0, 1)
    centers = kmeans_plusplus(X, k, random_state=1)[0]
    C = cost_block(X, centers)
    cap = resolve_capacities(X.shape[0], k)
    fixed = np.zeros(k, dtype=np.int64)
    before = imbalance(np.bincount(reduced_cost_labels(C, np.zeros(k))[0], minlength=k), cap)
    v, labels, off = prices.price_rounds(C, np.zeros(k), cap, fixed)
    np.testing.assert_array_equal(labels, reduced_cost_labels(C, v)[0])
    assert off == imbalance(np.bincount(labels, minlength=k), cap)
    if k < prices.MIN_CLUSTERS:
        assert off < before / 2, (off, before)
    else:  # the over-full side alone, until a round removes fewer than LEAST_MOVES points
        # (751 to 404 here: the paths then cost less than the alternating rounds' extra)
        assert off <= before - prices.LEAST_MOVES, (off, before)


def test_on_dense_rows_at_large_k_only_the_over_full_clusters_move() -> None:
    # from 64 clusters on dense rows the under-full side overshoots (see prices' docstring):
    # the rounds only lower potentials there, and still shrink the imbalance; on the same
    # rows held as candidates both sides move (some potential rises)
    from ballot_dask.candidates import BandCosts

    k = 128
    X = _mixture(40 * k, 16, k, 3.0, 4)
    centers = X[np.random.default_rng(4).choice(X.shape[0], k, replace=False)]
    C = cost_block(X, centers)
    cap = resolve_capacities(X.shape[0], k)
    fixed = np.zeros(k, dtype=np.int64)
    v0 = np.zeros(k)
    before = imbalance(np.bincount(reduced_cost_labels(C, v0)[0], minlength=k), cap)
    v, labels, off = prices.price_rounds(C, v0, cap, fixed)
    assert np.all(v <= v0) and np.any(v < v0)
    assert off == imbalance(np.bincount(labels, minlength=k), cap) < before / 2, (off, before)
    width = 32
    order = np.argsort(C, axis=1, kind="stable")  # (one sort: the columns and the floor)
    columns = order[:, :width].astype(np.int32)
    held = np.take_along_axis(C, columns, axis=1)
    floor = np.take_along_axis(C, order[:, width : width + 1], axis=1)[:, 0]
    band = BandCosts(held, columns, floor, v0)
    w, _, _ = prices.price_rounds(band, v0, cap, fixed)
    assert np.any(w > v0) and np.any(w < v0)


def test_rounds_never_return_worse_potentials_than_given() -> None:
    X = _mixture(4000, 4, 8, 2.0, 2)
    centers = kmeans_plusplus(X, 8, random_state=2)[0]
    C = cost_block(X, centers)
    cap = resolve_capacities(X.shape[0], 8)
    fixed = np.zeros(8, dtype=np.int64)
    # the optimum's potentials (their argmin labels may still differ on ties): no worse
    labels = reduced_cost_labels(C, np.zeros(8))[0]
    result = successive_shortest_paths(C, labels, cap.lower, cap.upper, np.zeros(8))
    assert result.status == DONE
    start = imbalance(np.bincount(reduced_cost_labels(C, result.potentials)[0], minlength=8), cap)
    _, _, off = prices.price_rounds(C, result.potentials, cap, fixed)
    assert off <= start
    # already balanced: returned as given, without a move
    v = np.linspace(-1.0, 1.0, 8)
    counts = np.bincount(reduced_cost_labels(C, v)[0], minlength=8)
    same, _, off = prices.price_rounds(C, v, Capacities(counts, counts), fixed)
    assert off == 0
    np.testing.assert_array_equal(same, v)


def test_rounds_respect_interval_bounds_and_fixed_points() -> None:
    X = _mixture(3000, 4, 6, 2.0, 3)
    centers = kmeans_plusplus(X, 6, random_state=3)[0]
    C = cost_block(X, centers)
    fixed = np.array([900, 0, 0, 0, 0, 0], dtype=np.int64)  # points outside the band
    cap = Capacities(np.full(6, 600, dtype=np.int64), np.full(6, 700, dtype=np.int64))
    v0 = np.zeros(6)
    counts0 = fixed + np.bincount(reduced_cost_labels(C, v0)[0], minlength=6)
    v, labels, off = prices.price_rounds(C, v0, cap, fixed)
    np.testing.assert_array_equal(labels, reduced_cost_labels(C, v)[0])
    counts = fixed + np.bincount(labels, minlength=6)
    assert off == imbalance(counts, cap) <= imbalance(counts0, cap)


def test_worth_rounds() -> None:
    assert prices.worth_rounds(8000, 1024, 25_000)  # a cold step
    assert prices.worth_rounds(7000, 256, 100_000)
    assert not prices.worth_rounds(1900, 1024, 90_000)  # a warm step: the paths alone
    assert not prices.worth_rounds(85, 256, 100_000)
    assert not prices.worth_rounds(5000, 16, 20_000)  # few clusters: the paths are cheap
    # ... unless many points must move (long per-arc lists): an early step at n = 10^7
    assert prices.worth_rounds(60_000, 16, 240_000)
    assert not prices.worth_rounds(9000, 16, 240_000)  # few of the band's rows move


@pytest.mark.parametrize(("k", "seed", "per_cluster"), [(128, 0, 40), (256, 1, 40), (8, 2, 5000)])
def test_exact_step_with_rounds_equals_emd(
    monkeypatch, k: int, seed: int, per_cluster: int
) -> None:
    # a cold step on separated data at a large k, from data rows (a start that puts two
    # centers in one blob): the rounds run (counted), the solver's own paths finish, and
    # the objective is ot.emd's.  At k = 8 the rounds run from MIN_MOVES points to move,
    # which only an early step at n = 10^6 or more reaches: the bar is lowered here
    calls: list[int] = []
    real = prices.price_rounds

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out[2])
        return out

    monkeypatch.setattr(repair, "price_rounds", counted)
    if k < prices.MIN_CLUSTERS:
        monkeypatch.setattr(prices, "MIN_MOVES", 1)
    n = per_cluster * k
    X = _mixture(n, 16, k, 3.0, seed)
    centers = X[np.random.default_rng(seed).choice(n, k, replace=False)]
    cap = resolve_capacities(n, k)
    blocks = RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions())
    assert calls, "the price rounds were not reached"
    C = reference_cost(X, centers)
    opt, _ = emd_optimum(C, np.asarray(step.sizes))
    assert cap.lower.min() <= step.sizes.min() and step.sizes.max() <= cap.upper.max()
    assert step.sizes.sum() == n
    assert step.objective == pytest.approx(opt, rel=1e-9)
    assert step.certificate is not None and step.certificate.optimal
