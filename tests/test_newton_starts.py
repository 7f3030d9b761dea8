"""E-BalLOT's Newton solver where its steps crawl: the starts it takes instead.

Separated clusters and small regularisations, where the plan's rows are nearly one-hot and
Newton's steps barely move: stages from a higher temperature, and the potentials of the
unregularised problem (with the plan's own column targets ``n / k``, fractional when k does
not divide n) for a cold step, a crawling one and the row sample's own solves.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
from references import count_calls, reference_cost, row_blocks
from scipy.special import softmax

from ballot_dask import BalancedKMeans, balanced_assign, resolve_capacities


def _separated_blobs(n: int, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Separated float32 blobs (means about 17 apart, unit variance) and random data rows."""
    rng = np.random.default_rng(0)
    means = rng.normal(scale=17.0 / np.sqrt(2.0 * d), size=(k, d))
    component = rng.integers(k, size=n)
    X = (rng.standard_normal((n, d)) + means[component]).astype(np.float32)
    return X, X[np.random.default_rng(1).choice(n, k, replace=False)]


_CRAWL = {"method": "sinkhorn", "max_iter": 4, "tol": 0, "sinkhorn_max_iter": 100}


def test_warm_newton_steps_across_empty_space_take_few_rounds() -> None:
    # separated blobs from random rows: warm E-BalLOT steps whose potentials must cross
    # empty space, where the plan's rows are one-hot and Newton's steps crawl at eps.  With
    # warm steps from the last stage alone, the third step used every pass it was allowed
    # (1000 by default: 1074 rounds in a 15-iteration fit).  The sample's starts (its
    # corrected problems, its targets at the last plan) now reach the plan first: 19 rounds
    # in these 4 iterations, and 22 with every patience of the Newton stages turned off
    X, start = _separated_blobs(200_000, 16, 16)
    km = BalancedKMeans(16, init=start, **_CRAWL).fit(X)
    assert km.n_passes_["rounds"] <= 40


def _separated_mixture(n: int, d: int, k: int, separation: float) -> tuple:
    # bench_entropic's data: means separation * N(0, I), unit clusters, centers on rows
    rng = np.random.default_rng(0)
    means = separation * rng.standard_normal((k, d))
    X = means[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return X, X[rng.choice(n, k, replace=False)]


def test_a_cold_step_at_a_small_reg_starts_from_the_exact_potentials(monkeypatch) -> None:
    # separated clusters, k = 64, reg 1e-4: staged from the top (or from the row sample's
    # potentials) Newton's steps crawl through the empty space between clusters, 50 to 70
    # passes; from the exact step's potentials a few, and the same entropic plan
    import dask.array as da

    from ballot_dask.solvers import sinkhorn
    from ballot_dask.solvers.newton import entropic_potentials

    n, k, reg, tol = 20_000, 64, 1e-4, 1e-3
    X, centers = _separated_mixture(n, 16, k, 6.0)
    calls = count_calls(monkeypatch, sinkhorn, "_unregularised")
    options = {"method": "sinkhorn", "reg": reg, "sinkhorn_tol": tol, "sinkhorn_max_iter": 400}
    found = balanced_assign(X, centers, **options)
    assert len(calls) == 1 and calls[0][1] >= 1  # the exact step ran, and made passes
    assert found.marginal_error <= tol
    assert found.n_iter <= 12  # its passes included
    # the Dask engine: the same potentials, in as many rounds
    on_dask = balanced_assign(da.from_array(X, chunks=(5_000, 16)), centers, **options)
    assert len(calls) == 2 and on_dask.n_iter == found.n_iter
    C = ot.dist(X, centers)
    eps = reg * float(C.mean())
    np.testing.assert_allclose(on_dask.potentials, found.potentials, rtol=0, atol=1e-9 * C.max())
    # staged from the top (no exact potentials): many passes, one plan to the criterion
    blocks = row_blocks(X, centers, prepare=False)
    staged = entropic_potentials(
        blocks, np.full(k, n / k), np.zeros(k), eps, start=float(np.median(C)),
        tol=tol * n, max_passes=400,
    )  # fmt: skip
    assert np.abs(staged.column_sums - n / k).sum() <= tol * n
    assert staged.passes > 30
    P0, P1 = (softmax((v - C) / eps, axis=1) for v in (staged.potentials, found.potentials))
    assert np.abs(P1 - P0).sum() <= 4 * tol * n


# few rows per cluster, k not dividing n: 62.5 rows per cluster (separated, k = 64) and 15.6
# (a k = 256 mixture); bench_entropic.py --small's two rows that took 88 and 64 passes
_FEW_ROWS = [(4000, 64, 6.0), (4000, 256, 1.0)]


@pytest.mark.parametrize(("n", "k", "separation"), _FEW_ROWS)
def test_the_unregularised_start_has_the_entropic_targets(n, k, separation) -> None:
    # the entropic plan's column targets are n / k, fractional: the start where Newton's
    # steps crawl is the dual optimum of the transport LP with those capacities (its value
    # is POT's network simplex on the same marginals), not the integral step's potentials
    from ballot_dask.solvers import sinkhorn
    from ballot_dask.solvers.base import SolverOptions

    X, centers = _separated_mixture(n, 16, k, separation)
    capacities = resolve_capacities(n, k)
    assert not capacities.is_equality  # floor / ceil sizes
    v, rounds = sinkhorn._unregularised(
        row_blocks(X, centers, prepare=False), capacities, SolverOptions(), None, 1e-4
    )
    assert rounds >= 1
    C = reference_cost(X, centers)
    target = np.full(k, n / k)
    optimum = ot.emd2(np.ones(n), target, C, numItermax=10**7)
    dual = float((C - v[None, :]).min(axis=1).sum() + target @ v)
    assert dual == pytest.approx(optimum, rel=1e-9)


@pytest.mark.parametrize("reg", [1e-2, 1e-4])
@pytest.mark.parametrize(("n", "k", "separation"), _FEW_ROWS)
def test_few_rows_per_cluster_at_a_small_reg(n, k, separation, reg) -> None:
    # from a cold start: a few passes to the paper's criterion, NumPy and Dask alike (reg
    # 1e-2, three stages below the first temperature, with no row sample: from the
    # unregularised problem's potentials too, where the stages from the top took 28 and 14)
    import dask
    import dask.array as da

    tol = 1e-3
    X, centers = _separated_mixture(n, 16, k, separation)
    options = {"method": "sinkhorn", "reg": reg, "sinkhorn_tol": tol, "sinkhorn_max_iter": 400}
    found = balanced_assign(X, centers, **options)
    assert found.n_iter <= 8  # its exact step's passes included
    C = reference_cost(X, centers)
    P = softmax((found.potentials[None, :] - C) / (reg * float(C.mean())), axis=1)
    error = float(np.abs(P.sum(axis=0) - n / k).sum())
    assert error <= tol * n
    assert found.marginal_error == pytest.approx(error / n, rel=1e-6)
    with dask.config.set(scheduler="threads"):
        on_dask = balanced_assign(da.from_array(X, chunks=(n // 4, 16)), centers, **options)
    assert on_dask.n_iter == found.n_iter and on_dask.passes["rounds"] <= 12
    np.testing.assert_allclose(on_dask.potentials, found.potentials, rtol=0, atol=1e-9 * C.max())


def test_a_cold_step_at_a_large_reg_needs_no_exact_step(monkeypatch) -> None:
    from ballot_dask.solvers import sinkhorn

    X, centers = _separated_mixture(20_000, 16, 64, 6.0)
    calls = count_calls(monkeypatch, sinkhorn, "_unregularised")
    found = balanced_assign(X, centers, method="sinkhorn", reg=0.1, sinkhorn_tol=1e-3)
    assert found.marginal_error <= 1e-3 and found.n_iter <= 4
    assert calls == []


def test_an_unregularised_start_beyond_the_band_budget_is_left_out(monkeypatch, caplog) -> None:
    # a Dask array whose band budget holds no band of the unregularised problem (64 kiB):
    # its exact step stops with the band error, and Newton's stages from the top go on
    # without it, to the same plan (before, the error ended the fit: k = 1024 on 10^5 rows
    # wanted 2 GiB)
    import dask
    import dask.array as da

    from ballot_dask.solvers import sinkhorn

    n, k, reg, tol = 20_000, 64, 1e-4, 1e-3
    X, centers = _separated_mixture(n, 16, k, 6.0)
    options = {"method": "sinkhorn", "reg": reg, "sinkhorn_tol": tol, "sinkhorn_max_iter": 400}
    found = balanced_assign(X, centers, **options)
    calls = count_calls(monkeypatch, sinkhorn, "_unregularised")
    with (
        dask.config.set({"ballot.band-memory": "64 kiB", "scheduler": "threads"}),
        caplog.at_level("INFO", logger="ballot_dask"),
    ):
        on_dask = balanced_assign(da.from_array(X, chunks=(5_000, 16)), centers, **options)
    assert len(calls) == 1
    # the log says so, and what would take the start: the budget's setting
    (note,) = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert "unregularised problem" in note and "raise ballot.band-memory" in note
    potentials, rounds = calls[0]
    assert potentials is None and rounds >= 1  # its passes were made, and counted
    assert on_dask.marginal_error <= tol
    C = ot.dist(X, centers)
    eps = reg * float(C.mean())
    P0, P1 = (softmax((v - C) / eps, axis=1) for v in (found.potentials, on_dask.potentials))
    assert np.abs(P1 - P0).sum() <= 4 * tol * n


def test_the_band_error_is_a_runtime_error_of_its_own() -> None:
    from ballot_dask.solvers.search import BandError

    X, centers = _separated_mixture(4000, 8, 16, 6.0)
    with pytest.raises(BandError, match=r"max_band=8"):
        balanced_assign(X, centers, max_band=8)
    assert issubclass(BandError, RuntimeError)
