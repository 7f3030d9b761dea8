"""Cycle cancelling on the band's dense slack graph (:mod:`ballot_dask.solvers.cycles`): from
labels that meet the sizes but are not optimal to the optimum of POT's network simplex (or
HiGHS's, with size ranges), certified; and, in the exact step, from the candidates' optimum
to the band's when the candidates cannot prove it."""

from __future__ import annotations

import numpy as np
import pytest
from references import emd_optimum, lp_optimum
from test_candidates import _assert_emd_optimum, _lloyd_step, count_band_solves

from ballot_dask import resolve_capacities
from ballot_dask.blocks import RowBlocks
from ballot_dask.capacities import Capacities
from ballot_dask.certificate import certify_labels
from ballot_dask.costs import cost_block
from ballot_dask.solvers import SolverOptions
from ballot_dask.solvers.cycles import LIMIT, SETTLED, cancel_cycles
from ballot_dask.solvers.exact import solve_exact

#: a scan budget that no test problem here reaches
_ANY = 10**9


def _problem(n: int, d: int, k: int, sep: float, seed: int, copies: int = 1, dtype=np.float64):
    """Costs of a mixture's rows (``copies`` of each: ties) to ``k`` of its rows."""
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((k, d))
    base = means[np.arange(n // copies) % k] + rng.standard_normal((n // copies, d))
    X = np.repeat(base, copies, axis=0).astype(dtype)
    centers = X[rng.choice(n, k, replace=False)]
    return np.asarray(cost_block(X, centers), dtype=np.float64)


def _objective(C: np.ndarray, labels: np.ndarray) -> float:
    return float(C[np.arange(C.shape[0]), labels].sum())


@pytest.mark.parametrize(
    "sep, copies, dtype",
    [
        (4.0, 1, np.float64),  # separated clusters
        (0.5, 1, np.float64),  # overlapping
        (3.0, 4, np.float64),  # every point four times
        (3.0, 1, np.float32),  # float32 data (costs in float64)
    ],
)
def test_cancelling_reaches_the_emd_optimum_from_balanced_labels(sep, copies, dtype) -> None:
    n, k = 960, 24
    C = _problem(n, 6, k, sep, seed=7, copies=copies, dtype=dtype)
    cap = resolve_capacities(n, k)
    labels = np.random.default_rng(1).permutation(np.arange(n) % k).astype(np.int64)
    before = _objective(C, labels)
    # (labels at random: many cycles, more than the budget meant for a nearly optimal start)
    result = cancel_cycles(C, labels, cap.lower, cap.upper, np.zeros(k), max_scans=_ANY)
    assert result.status == SETTLED
    assert result.cycles > 0 and result.moved >= 2 * result.cycles
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)
    opt, _ = emd_optimum(C, cap.lower)
    assert _objective(C, labels) == pytest.approx(opt, rel=1e-9)
    assert _objective(C, labels) < before
    # the slack matrix returned is the labels' own, and its potentials certify them
    reduced = C - C[np.arange(n), labels][:, None]
    own = np.full((k, k), np.inf)
    for a in range(k):
        if np.any(labels == a):
            own[a] = reduced[labels == a].min(axis=0)
    np.fill_diagonal(own, np.inf)
    np.testing.assert_array_equal(result.slack, own)
    _, certificate = certify_labels(
        result.slack, np.bincount(labels, minlength=k), cap, _objective(C, labels), n
    )
    assert certificate.optimal


def test_cancelling_with_size_ranges_reaches_the_highs_optimum() -> None:
    # ranges 30..52 a cluster: the cycles pass through R (one cluster grows, another shrinks)
    n, k = 600, 16
    C = _problem(n, 4, k, 3.0, seed=3)
    cap = Capacities(np.full(k, 30, dtype=np.int64), np.full(k, 52, dtype=np.int64))
    labels = np.random.default_rng(2).permutation(np.arange(n) % k).astype(np.int64)
    result = cancel_cycles(C, labels, cap.lower, cap.upper, np.zeros(k), max_scans=_ANY)
    assert result.status == SETTLED
    sizes = np.bincount(labels, minlength=k)
    assert np.all(sizes >= cap.lower) and np.all(sizes <= cap.upper)
    assert np.any(sizes != n // k)  # the sizes moved within their ranges
    opt, _ = lp_optimum(C, cap.lower, cap.upper)
    assert _objective(C, labels) == pytest.approx(opt, rel=1e-9)
    _, certificate = certify_labels(result.slack, sizes, cap, _objective(C, labels), n)
    assert certificate.optimal


def test_cancelling_counts_fixed_points_in_the_sizes() -> None:
    # half the points fixed at their optimal labels: the band's cycles keep the sizes with them
    n, k = 800, 16
    C = _problem(n, 4, k, 3.0, seed=5)
    cap = resolve_capacities(n, k)
    _, plan = emd_optimum(C, cap.lower)
    best = plan.argmax(axis=1)
    band = np.arange(n) % 2 == 0
    fixed_counts = np.bincount(best[~band], minlength=k)
    labels = np.random.default_rng(4).permutation(best[band]).astype(np.int64)
    result = cancel_cycles(
        C[band],
        labels,
        cap.lower,
        cap.upper,
        np.zeros(k),
        fixed_counts=fixed_counts,
        max_scans=_ANY,
    )
    assert result.status == SETTLED
    np.testing.assert_array_equal(fixed_counts + np.bincount(labels, minlength=k), cap.lower)
    sub_opt, _ = emd_optimum(C[band], cap.lower - fixed_counts)
    assert _objective(C[band], labels) == pytest.approx(sub_opt, rel=1e-9)


def test_cancelling_stops_at_its_scan_budget_with_the_sizes_kept() -> None:
    n, k = 480, 12
    C = _problem(n, 4, k, 3.0, seed=6)
    cap = resolve_capacities(n, k)
    labels = np.random.default_rng(0).permutation(np.arange(n) % k).astype(np.int64)
    result = cancel_cycles(C, labels, cap.lower, cap.upper, np.zeros(k), max_scans=4 * (k + 1))
    assert result.status == LIMIT
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)


def test_cancelling_refuses_labels_outside_the_bounds() -> None:
    C = _problem(40, 2, 4, 3.0, seed=0)
    cap = resolve_capacities(40, 4)
    with pytest.raises(ValueError, match="size bounds"):
        cancel_cycles(C, np.zeros(40, dtype=np.int64), cap.lower, cap.upper, np.zeros(4))


@pytest.mark.parametrize(
    ("k", "n", "d", "seed", "move", "width", "remote"),
    [
        (128, 128 * 40, 8, 9, 0.2, 3, False),
        (128, 128 * 40, 8, 9, 0.2, 4, True),  # a band gathered as from a remote engine
        (128, 128 * 48, 16, 0, 0.5, 8, False),
    ],
)
def test_exact_step_cancels_cycles_from_the_candidates_optimum(
    monkeypatch, k, n, d, seed, move, width, remote
) -> None:
    # a warm Lloyd step whose candidates (``width`` a row) reach their own optimum, which a
    # few rows would leave for a cluster outside their columns: the same band on dense rows
    # from that optimum by cycle cancelling, and the step is ot.emd's optimum
    from test_candidates import _Remote

    X, cap, warm, centers = _lloyd_step(k, n, d, seed, move)
    seen = count_band_solves(monkeypatch, width)
    blocks = _Remote(X, block_rows=n // 3 + 1) if remote else RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions(), warm.potentials, warm.eps)
    assert seen == [True, False], seen  # candidates, then the same band on dense rows
    assert step.extra["cancelled"] > 0 and step.extra["dense"] == 1.0
    _assert_emd_optimum(step, blocks, X, centers, cap)
