"""E-BalLOT's Newton steps with the row sample's curvature: X's passes without their Hessian.

A warm step's passes over X mostly end within the tolerance, where the k x k Hessian they
would sum is never used; they leave it out, and a step that needs a direction takes the
sample's estimate (:class:`~ballot_dask.solvers.newton.SampleCurvature`).  These tests check
that such steps reach the same plan to the paper's criterion, that a misleading estimate is
caught and X's Hessian taken instead, and that a fit stops asking for it once misled.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
from references import count_calls, row_blocks
from scipy.special import softmax

from ballot_dask import resolve_capacities
from ballot_dask.solvers import newton
from ballot_dask.solvers.newton import SampleCurvature, entropic_potentials
from ballot_dask.solvers.sinkhorn import _sample_blocks


def _moved_problem(n: int = 300_000, k: int = 8, d: int = 4, spread: float = 3.0) -> tuple:
    """Overlapping clusters, centers moved from ``before`` (a Lloyd step's move): the
    potentials at ``before`` miss the tolerance at ``centers``."""
    rng = np.random.default_rng(11)
    means = spread * rng.standard_normal((k, d))
    X = means[rng.integers(k, size=n)] + rng.standard_normal((n, d))
    before = means + 0.4 * rng.standard_normal((k, d))
    centers = before + 0.15 * rng.standard_normal((k, d))
    return X, before, centers


def _warm_start(X: np.ndarray, before: np.ndarray, eps: float, tol: float) -> np.ndarray:
    k = before.shape[0]
    first = row_blocks(X, before, prepare=True)
    target = np.full(k, X.shape[0] / k)
    return entropic_potentials(
        first, target, np.zeros(k), eps, start=eps * 64, tol=tol, max_passes=300
    ).potentials


def _solve(X, centers, warm, eps, tol, curvature_of=None) -> tuple:
    """The warm step at ``centers`` from ``warm`` (with the row sample); ``curvature_of``
    builds the step's :class:`SampleCurvature` from the sample and the blocks, or none."""
    k = centers.shape[0]
    blocks = row_blocks(X, centers, prepare=True)
    sample = _sample_blocks(blocks)
    assert sample is not None
    curvature = None if curvature_of is None else curvature_of(sample, blocks)
    plan = entropic_potentials(
        blocks,
        np.full(k, X.shape[0] / k),
        warm,
        eps,
        start=eps * 64,
        tol=tol,
        max_passes=300,
        warm=True,
        moments=True,
        sample=sample,
        curvature=curvature,
    )
    return plan, blocks, curvature


def _plan(C: np.ndarray, v: np.ndarray, eps: float) -> np.ndarray:
    return softmax((v[None, :] - C) / eps, axis=1)


def _warm_step_setting() -> tuple:
    """:func:`_moved_problem`, its costs at the moved centers, eps (reg 1e-2), the
    tolerance (1e-3 of the rows) and the potentials at the centers before the move."""
    X, before, centers = _moved_problem()
    C = ot.dist(X, centers)
    eps, tol = 0.01 * float(C.mean()), 1e-3 * X.shape[0]
    return X, centers, C, eps, tol, _warm_start(X, before, eps, tol)


def _counting_rows(rows: float, eps: float):
    """A step's :class:`SampleCurvature` that takes X to have ``rows`` rows."""
    return lambda sample, blocks: SampleCurvature(sample, rows, eps, blocks.passes)


def test_warm_passes_leave_the_hessian_out_and_reach_the_same_plan(monkeypatch) -> None:
    X, centers, C, eps, tol, warm = _warm_step_setting()
    n, k = X.shape[0], centers.shape[0]
    P_warm = _plan(C, warm, eps)
    assert np.abs(P_warm.sum(axis=0) - n / k).sum() > 2 * tol  # a step has work to do
    reference, _, _ = _solve(X, centers, warm, eps, tol)
    passes = count_calls(monkeypatch, newton, "entropic_moment_terms")  # one block a pass
    plan, _, curvature = _solve(X, centers, warm, eps, tol, _counting_rows(float(n), eps))
    assert not curvature.misled
    assert len(passes) >= 2  # the first pass missed the tolerance: a step was taken
    assert all(found[2] is None for found in passes)  # no pass over X summed its Hessian
    assert plan.passes == len(passes) <= reference.passes
    assert plan.moments is not None
    # the paper's criterion, on the plan recomputed from its potentials in NumPy
    P = _plan(C, plan.potentials, eps)
    assert np.abs(P.sum(axis=0) - n / k).sum() <= tol
    np.testing.assert_allclose(P.sum(axis=0), plan.column_sums, rtol=1e-9)
    # the same entropic plan as X's own Hessians reached, to the criterion
    assert np.abs(P - _plan(C, reference.potentials, eps)).sum() <= 4 * tol


def test_a_misleading_curvature_is_caught_and_the_hessian_taken(monkeypatch) -> None:
    # the sample's curvature overstated a hundredfold (X's rows counted as a hundredth of
    # what they are): its step moves a hundredth of the way and does not end the stage.
    # The stage marks it misled, sums X's Hessian from there and meets the tolerance
    X, centers, C, eps, tol, warm = _warm_step_setting()
    n, k = X.shape[0], centers.shape[0]
    passes = count_calls(monkeypatch, newton, "entropic_moment_terms")
    plan, _, curvature = _solve(X, centers, warm, eps, tol, _counting_rows(n / 100.0, eps))
    assert curvature.misled
    assert passes[0][2] is None and passes[1][2] is None  # the first pass and the misled step
    assert passes[2][2] is not None  # X's Hessian, at the point the stage stood on
    P = _plan(C, plan.potentials, eps)
    assert np.abs(P.sum(axis=0) - n / k).sum() <= tol


@pytest.mark.parametrize("misled", [False, True])
def test_a_fit_stops_asking_for_the_curvature_once_misled(monkeypatch, misled) -> None:
    # solve_sinkhorn builds the step's curvature while the engine allows it, and a step it
    # misled (the second step's, overstated a hundredfold) turns it off for the rest of the
    # fit (its later steps sum X's Hessian)
    from ballot_dask.solvers import sinkhorn
    from ballot_dask.solvers.base import SolverOptions

    X, before, centers = _moved_problem(n=280_000)
    n, k = X.shape[0], centers.shape[0]
    built: list[SampleCurvature] = []

    class Recorded(SampleCurvature):
        def __init__(self, sample, rows, eps, counter) -> None:
            overstated = misled and len(built) == 1
            super().__init__(sample, rows / 100.0 if overstated else rows, eps, counter)
            built.append(self)

    monkeypatch.setattr(sinkhorn, "SampleCurvature", Recorded)
    capacities = resolve_capacities(n, k)
    blocks = row_blocks(X, before, prepare=True)
    first = sinkhorn.solve_sinkhorn(blocks, capacities, SolverOptions())
    assert blocks.entropic_curvature and not built[0].misled  # the cold step's served
    blocks.set_centers(centers)
    sinkhorn.solve_sinkhorn(blocks, capacities, SolverOptions(), first.potentials, first.eps)
    assert len(built) == 2 and built[1].misled == misled
    assert blocks.entropic_curvature == (not misled)
    blocks.set_centers(before)
    passes = count_calls(monkeypatch, newton, "entropic_moment_terms")
    sinkhorn.solve_sinkhorn(blocks, capacities, SolverOptions(), first.potentials, first.eps)
    assert len(built) == (3 if not misled else 2)
    assert all((found[2] is None) != misled for found in passes)
