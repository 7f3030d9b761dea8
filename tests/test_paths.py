"""The exact repair's shortest paths (:mod:`ballot_dask.solvers.paths`) from a start that
misplaces many points: the forest searches (every surplus at once, many paths a search) reach
the optimum of one path a search, and POT's (or HiGHS's, with size ranges), in fewer
searches."""

from __future__ import annotations

import numpy as np
import pytest
from references import count_calls, emd_optimum, lp_optimum

from ballot_dask import resolve_capacities
from ballot_dask.capacities import Capacities
from ballot_dask.costs import cost_block
from ballot_dask.solvers import paths
from ballot_dask.solvers.exact import imbalance
from ballot_dask.solvers.paths import DONE, successive_shortest_paths


def _cold_problem(
    n: int, d: int, k: int, sep: float, seed: int, copies: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Costs to ``k`` centers drawn among the rows of a mixture (``copies`` of every row:
    duplicated points), and the labels under zero potentials (each row's nearest center)."""
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((k, d))
    base = means[np.arange(n // copies) % k] + rng.standard_normal((n // copies, d))
    X = np.repeat(base, copies, axis=0)
    centers = X[rng.choice(n, k, replace=False)]
    C = cost_block(X, centers).astype(np.float64)
    return C, np.argmin(C, axis=1).astype(np.int64)


def _check_optimal(C: np.ndarray, labels: np.ndarray, potentials: np.ndarray) -> None:
    """Every label minimises the reduced cost under the returned potentials (the certificate
    of optimality for the sizes reached)."""
    reduced = C - potentials[None, :]
    held = reduced[np.arange(C.shape[0]), labels]
    scale = float(np.abs(C).max())
    assert np.all(held <= reduced.min(axis=1) + 1e-9 * scale)


@pytest.mark.parametrize(
    "n, d, k, sep, copies",
    [
        (4096, 8, 64, 3.0, 1),  # separated clusters, random rows as centers
        (10240, 16, 256, 1.0, 1),  # overlapping, large k
        (4096, 4, 64, 3.0, 4),  # every point four times (ties)
    ],
)
def test_forest_searches_reach_the_optimum_of_single_searches(
    n: int, d: int, k: int, sep: float, copies: int
) -> None:
    C, start = _cold_problem(n, d, k, sep, seed=k + copies, copies=copies)
    cap = resolve_capacities(n, k)
    off = imbalance(np.bincount(start, minlength=k), cap)
    assert off > 10 * k  # many points to move: the forest searches run
    one, many = start.copy(), start.copy()
    single = successive_shortest_paths(C, one, cap.lower, cap.upper, np.zeros(k), forest=False)
    forest = successive_shortest_paths(C, many, cap.lower, cap.upper, np.zeros(k))
    assert single.status == forest.status == DONE
    # each path removes one unit of imbalance, whichever search found it
    assert single.augmentations == forest.augmentations == off
    # one search a path, against many paths a search
    assert single.searches == single.augmentations
    assert 2 * forest.searches < forest.augmentations
    for labels, result in ((one, single), (many, forest)):
        np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)
        _check_optimal(C, labels, result.potentials)
    opt, _ = emd_optimum(C, cap.lower)
    rows = np.arange(n)
    assert float(C[rows, many].sum()) == pytest.approx(opt, rel=1e-9)
    assert float(C[rows, one].sum()) == pytest.approx(opt, rel=1e-9)


def test_the_forest_comes_back_when_single_searches_cost_more_a_path(monkeypatch) -> None:
    # with a bar of one node settled a path, the first forest search ends the forest (it
    # settles more nodes than it finds paths); the searches from one source that follow
    # settle more nodes a path than it did, so the forest comes back (counted), and the
    # repair still ends at POT's optimum with the augmentations of one path a search
    n, k = 4096, 64
    C, start = _cold_problem(n, 8, k, 3.0, seed=k)
    cap = resolve_capacities(n, k)
    off = imbalance(np.bincount(start, minlength=k), cap)
    labels = start.copy()
    monkeypatch.setattr(paths, "_FOREST_PATHS", 1)
    result = successive_shortest_paths(C, labels, cap.lower, cap.upper, np.zeros(k))
    assert result.status == DONE and result.augmentations == off
    singles = result.searches - result.forests
    assert result.forests >= 2 and singles >= paths._SINGLE_PATHS, result
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)
    _check_optimal(C, labels, result.potentials)
    opt, _ = emd_optimum(C, cap.lower)
    assert float(C[np.arange(n), labels].sum()) == pytest.approx(opt, rel=1e-9)


def test_forest_searches_with_size_ranges_match_the_lp() -> None:
    # ranges add the node R (arcs to and from it) to the searches' graph
    n, k = 1200, 24
    C, start = _cold_problem(n, 4, k, 3.0, seed=5)
    rng = np.random.default_rng(5)
    lower = rng.integers(20, 45, size=k)
    upper = lower + rng.integers(0, 40, size=k)
    cap = resolve_capacities(n, k, size_min=lower, size_max=upper)
    assert imbalance(np.bincount(start, minlength=k), cap) > 64
    labels = start.copy()
    result = successive_shortest_paths(C, labels, cap.lower, cap.upper, np.zeros(k))
    assert result.status == DONE
    sizes = np.bincount(labels, minlength=k)
    assert np.all(cap.lower <= sizes) and np.all(sizes <= cap.upper)
    _check_optimal(C, labels, result.potentials)
    opt, _ = lp_optimum(C, cap.lower, cap.upper)
    assert float(C[np.arange(n), labels].sum()) == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize("k", [8, 40])
@pytest.mark.parametrize("fixed", [False, True])
def test_dense_rows_grouped_by_label_give_the_ungrouped_repair(
    monkeypatch, fixed: bool, k: int
) -> None:
    # many points to move on dense rows, with arc lists (k = 8: more rows a cluster than the
    # rescan bound) or row rescans (k = 40: 150 a cluster): the rows are grouped by label
    # before the paths (counted), and the labels, potentials and augmentations are those of
    # the ungrouped rows, at POT's optimum; with fixed points beside the band as well
    n = 6000
    assert (n > paths._DENSE_RESCAN_ROWS * k) == (k == 8) and n > paths._DENSE_GROUP_ROWS * k
    C, start = _cold_problem(n, 8, k, 3.0, seed=3)
    step = 50 if k == 8 else 4  # (each cluster's fixed points below its size; equal sizes)
    fixed_counts = np.arange(k, dtype=np.int64) * step if fixed else np.zeros(k, dtype=np.int64)
    cap = resolve_capacities(n + int(fixed_counts.sum()), k)
    moves = imbalance(np.bincount(start, minlength=k) + fixed_counts, cap)
    assert moves >= paths.GROUPED_MOVES
    grouped = count_calls(monkeypatch, paths, "by_label")
    on = start.copy()
    kept = successive_shortest_paths(
        C, on, cap.lower, cap.upper, np.zeros(k), fixed_counts=fixed_counts
    )
    assert len(grouped) == 1
    monkeypatch.setattr(paths, "GROUPED_MOVES", 10**12)  # off
    off = start.copy()
    plain = successive_shortest_paths(
        C, off, cap.lower, cap.upper, np.zeros(k), fixed_counts=fixed_counts
    )
    assert len(grouped) == 1
    assert kept.status == plain.status == DONE
    np.testing.assert_array_equal(on, off)
    np.testing.assert_allclose(kept.potentials, plain.potentials, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(kept.slack, plain.slack)
    assert kept.augmentations == plain.augmentations >= moves
    _check_optimal(C, on, kept.potentials)
    opt, _ = emd_optimum(C, np.bincount(on, minlength=k))
    assert float(C[np.arange(n), on].sum()) == pytest.approx(opt, rel=1e-9)
    np.testing.assert_array_equal(np.bincount(on, minlength=k) + fixed_counts, cap.lower)


def test_rows_to_move_counts_the_larger_of_surplus_and_deficit() -> None:
    labels = np.array([0, 0, 0, 0, 1, 2, 2], dtype=np.int64)
    lower = np.array([1, 2, 2], dtype=np.int64)
    upper = np.array([2, 3, 3], dtype=np.int64)
    fixed = np.array([0, 0, 1], dtype=np.int64)
    # counts 4, 1, 3: two over cluster 0's upper bound, one under cluster 1's lower bound
    # (the repair's test for grouping its rows, :mod:`ballot_dask.solvers.grouping`)
    counts = fixed + np.bincount(labels, minlength=3)
    assert imbalance(counts, Capacities(lower, upper)) == 2
    assert imbalance(counts, Capacities(lower, upper + 2)) == 1
