"""E-BalLOT's assignment step: the entropic plan in semi-dual form, then rounding.

As in the paper (Experiment 2): the entropic plan until it is within ``delta`` of the
transport polytope in the entrywise 1-norm, then the rounding of Altschuler, Weed & Rigollet
(2017, Alg. 2) onto the polytope, centroids from the rounded plan and labels by row argmax.
The plan is reached by Newton's method on the semi-dual (:mod:`.newton`, a few passes: the
default) or by Sinkhorn's iterations, step for step as in the paper
(``sinkhorn_algorithm="sinkhorn"``, a pass each); it is the same plan.

The row potentials are never stored: each pass recomputes ``u_i`` from ``v`` inside its block,
so the rows of the plan are exact and only the column error is tracked.  A pass returns the
column log-sums (log domain: no underflow however small the regularisation) and the column
update is exact coordinate ascent on the dual, which for an interval ``[lower_j, upper_j]``
clips the column sum to the interval instead of forcing it to one value.

With Newton's method the passes at the final temperature also measure the plan's moments
(:func:`~ballot_dask.plan_kernels.plan_moments`), and the rounded plan's masses, centroid sums and
cost follow from them in closed form (:func:`rounded_moments`): the step makes no rounding
pass of its own.  Its labels' cost and counts (the row argmax of the rounded plan) need one;
it is left pending (:meth:`~ballot_dask.solvers.base.StepOutcome.settle`), so that a fit
measures them for its final step only.

``rounding="exact"`` adds exactly balanced labels: the exact repair of :mod:`.exact`, warm
started from the Sinkhorn potentials.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..blocks import Blocks, RowBlocks
from ..capacities import Capacities
from ..plan_kernels import (
    combine_entropic,
    entropic_terms,
    rounded_plan_terms,
    weighted_plan_costs,
)
from .base import (
    RoundedLabels,
    SolverOptions,
    StepOutcome,
    cost_scale,
    interior_potentials,
    mean_cost,
)
from .exact import solve_exact
from .newton import SampleCurvature, entropic_potentials, sample_targets
from .search import BandError
from .weighted import solve_weighted_exact

logger = logging.getLogger("ballot_dask")

#: above this many clusters the Newton system (k x k per block) gives way to Sinkhorn
_NEWTON_MAX_K = 512


def _column_logsums(blocks: Blocks, v: np.ndarray, eps: float) -> np.ndarray:
    """One pass: ``log sum_i P_ij`` for every column of the plan at ``v``."""
    return blocks.reduce(entropic_terms, combine_entropic, v, eps, False)[1]


def _sample_blocks(blocks: Blocks) -> RowBlocks | None:
    """The engine's row sample (:meth:`~ballot_dask.blocks.Blocks.sample`, held in memory) as
    an engine at the current centers, for the Newton solver's first potentials; ``None``
    without one (few rows) or with sample weights (the sample's rows have none)."""
    if blocks.weights is not None:
        return None
    rows = blocks.sample()
    if rows is None:
        return None
    sample = RowBlocks(rows)
    sample.set_centers(blocks.centers)
    return sample


def _rounded_summary(X: np.ndarray, C: np.ndarray, *args: Any) -> tuple:
    """:func:`rounded_plan_terms` without the block's labels (only the sums leave a block)."""
    return rounded_plan_terms(X, C, *args)[1:]


def _combine_rounded(parts: list[tuple]) -> tuple:
    mass = np.sum([p[0] for p in parts], axis=0)
    sums = np.sum([p[1] for p in parts], axis=0)
    counts = np.sum([p[4] for p in parts], axis=0)
    return mass, sums, float(sum(p[2] for p in parts)), float(sum(p[3] for p in parts)), counts


def solve_sinkhorn(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """E-BalLOT's step: the entropic plan to ``sinkhorn_tol * n`` column error, rounded.

    The regularisation is ``reg`` times the mean cost at the current centers (in closed form
    from X's moments in a fit's warm steps, else one pass).
    The plan's potentials come from Newton's method on the
    semi-dual (:mod:`.newton`, a few rounds) or, with ``sinkhorn_algorithm="sinkhorn"`` and
    for size ranges or k above 512, from Sinkhorn's iterations (a round each).
    """
    n, k = blocks.n_samples, capacities.n_clusters
    cold = potentials is None
    # reg is relative to the mean cost at the current centers: from X's moments when the
    # engine has them (no pass), else one pass; a cold start also needs the spread of a
    # row's costs (its first temperature); a warm one only a bound on a Newton step
    if cold or blocks.moments is None:
        average, spread = cost_scale(blocks)
    else:
        average = spread = mean_cost(*blocks.moments, blocks.centers)
    eps = options.reg * max(average, 1e-300)
    v = np.zeros(k) if cold else np.array(potentials, dtype=np.float64)
    delta = options.sinkhorn_tol * n
    newton = options.sinkhorn_algorithm == "newton" and k <= _NEWTON_MAX_K
    newton = newton and (capacities.is_equality or capacities.is_equal_shares)
    if newton:
        # equal shares: n / k for every column (fractional when k does not divide n)
        target = capacities.lower.astype(np.float64)
        if not capacities.is_equality:
            target = np.full(k, n / k)
        # cold: from where a row of the plan spreads over many columns (the typical gap
        # between a point's mean and nearest cost): Newton converges from anywhere there
        # (warm: potentials of the previous centers, checked first)
        # the passes at eps also measure the plan's moments: its rounding in closed form
        sample = _sample_blocks(blocks)
        reference, blocks.entropic_reference = blocks.entropic_reference, None
        # X's passes leave their Hessian out where the sample's will do (until it misleads
        # a step: then not for the rest of the fit)
        curvature = None
        if sample is not None and blocks.entropic_curvature:
            curvature = SampleCurvature(sample, float(n), eps, blocks.passes)
        plan = entropic_potentials(
            blocks,
            target,
            v,
            eps,
            start=max(spread, eps),
            tol=delta,
            max_passes=options.sinkhorn_max_iter,
            warm=not cold,
            moments=True,
            sample=sample,
            reference=None if cold else reference,
            unregularised=lambda start: _unregularised(blocks, capacities, options, start, eps),
            curvature=curvature,
        )
        if curvature is not None and curvature.misled:
            blocks.entropic_curvature = False
        v, col, iters, moments = plan
        if sample is not None:  # for the next step's first potentials (one sample pass)
            blocks.entropic_reference = sample_targets(sample, target, v, col, eps)
            blocks.passes.sample += 1
        error = float(np.abs(col - target).sum())
    else:
        v, col, error, iters = _sinkhorn_iterations(blocks, capacities, options, v, eps)
        moments = None
    target = capacities.target(col)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(col > 0, np.minimum(target / col, 1.0), 1.0)
    missing = target - col * scale
    total = float(missing.sum())
    deficit = missing / total if total > 0 else np.zeros(k)
    labeler = RoundedLabels(v, eps, scale, deficit)
    centers = np.array(blocks.centers)

    def measure() -> tuple[float, np.ndarray]:
        """The rounding pass: its labels' cost and counts (and, with them, the rest)."""
        if not np.array_equal(blocks.centers, centers):
            blocks.set_centers(centers)
        found = blocks.reduce(
            _rounded_summary, _combine_rounded, v, eps, scale, deficit, with_x=True
        )
        return found[3], found[4]

    if moments is not None:
        mu = np.asarray(centers, dtype=blocks.dtype)  # (the costs' centers)
        mass, sums, plan_cost = rounded_moments(moments, col, scale, deficit, float(n), mu)
        hard_cost, counts, pending = float("nan"), np.zeros(0, dtype=np.int64), measure
    else:
        mass, sums, plan_cost, hard_cost, counts = blocks.reduce(
            _rounded_summary, _combine_rounded, v, eps, scale, deficit, with_x=True
        )
        pending = None
    outcome = StepOutcome(
        method="sinkhorn",
        potentials=v,
        eps=eps,
        mass=mass,
        sums=sums,
        objective=hard_cost,
        sizes=counts,
        labeler=labeler,
        plan_cost=plan_cost,
        marginal_error=error / n,
        n_iter=iters,
        pending=pending,
    )
    if options.rounding == "exact":
        # the plan's fractional rows are about those within eps of a boundary: a band
        exact = solve_exact(blocks, capacities, options, potentials=v, eps=eps)
        exact.method, exact.n_iter, exact.eps = "sinkhorn", iters, eps
        exact.plan_cost, exact.marginal_error = plan_cost, error / n
        exact.mass, exact.sums = mass, sums  # E-BalLOT's centroids stay those of the plan
        return exact
    return outcome


def _unregularised(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    start: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray | None, int]:
    """The potentials of the unregularised problem with the entropic plan's column targets
    at the current centers (``None`` where its band does not fit the memory budget: a Dask
    array at large k), and the rounds it took: where Newton's steps crawl at a small
    regularisation, a start near the entropic potentials (:func:`~.newton.entropic_potentials`:
    they tend to these as ``eps`` goes to 0).  Warm started from the entropic potentials
    ``start`` (with a band of the rows within about ``eps`` of a boundary, as
    ``rounding="exact"``), or cold (``None``).

    Equal shares with ``k`` not dividing ``n``: the entropic targets are ``n / k`` for every
    column, and the integral step's sizes are ``2 r (k - r) / k`` rows from them in the
    1-norm (``r = n mod k``).  Where that exceeds the tolerance ``sinkhorn_tol * n`` (few rows
    per cluster) the plan cannot meet it near those potentials without splitting rows, and
    Newton's steps from them crawled (4000 rows, reg 1e-4: separated k = 64, 88 passes; a
    k = 256 mixture, 64): the problem is then the one with the fractional capacities
    ``n / k`` (:func:`~.weighted.solve_weighted_exact` with unit masses; its optimum splits
    up to ``k - 1`` rows, which sit on the boundaries that pin its potentials).  Otherwise
    the exact step's potentials, at the interior of the certified ones (no labelled row on a
    boundary, the nearest an entropic plan's are)."""
    before = blocks.passes.rounds
    n, k = blocks.n_samples, capacities.n_clusters
    r = n % k
    try:
        if capacities.is_equal_shares and 2 * r * (k - r) / k > options.sinkhorn_tol * n:
            share = np.full(k, n / k)
            shares = Capacities(share, share.copy())
            step = solve_weighted_exact(blocks, shares, options, potentials=start, eps=eps)
            return step.potentials, blocks.passes.rounds - before
        step = solve_exact(blocks, capacities, options, potentials=start, eps=eps)
    except BandError as error:  # Newton's stages go on without them
        logger.info(
            "E-BalLOT: the start from the unregularised problem is left out (%s); Newton's "
            "stages go on without it, in more passes",
            error,
        )
        return None, blocks.passes.rounds - before
    return interior_potentials(step, capacities, n), blocks.passes.rounds - before


def rounded_moments(
    moments: tuple,
    col: np.ndarray,
    scale: np.ndarray,
    deficit: np.ndarray,
    n: float,
    centers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The rounded plan's column masses, centroid sums and cost, in closed form.

    The rounding (:func:`~ballot_dask.plan_kernels.rounded_plan_terms`) gives row ``i`` the mass
    ``G_ij = P_ij scale_j + r_i deficit_j`` with ``r_i = 1 - sum_l P_il scale_l``, linear in
    the plan's row: its sums over the rows follow from the plan's moments
    (:func:`~ballot_dask.plan_kernels.plan_moments`: ``sum_i P_ij x_i``, ``sum_i P_ij C_ij``,
    the column cost sums and the coordinate sums), its column sums ``col`` and the
    ``centers`` of its costs (rounded to X's dtype), with no pass."""
    px, own, column_costs, coords = moments
    mass = scale * col + deficit * (n - float(scale @ col))
    sums = scale[:, None] * px + deficit[:, None] * (coords - scale @ px)[None, :]
    scaled = weighted_plan_costs(px, own, col, centers, scale)  # sum_l scale_l P_il C_ij
    cost = float(scale @ own) + float(deficit @ (column_costs - scaled))
    return mass, sums, cost


def _sinkhorn_iterations(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    v: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Sinkhorn's iterations in the semi-dual (one pass each), to ``sinkhorn_tol * n``
    column error or ``sinkhorn_max_iter``.  Returns ``(v, column_sums, error, iterations)``."""
    n = blocks.n_samples
    lower = capacities.lower.astype(np.float64)
    upper = capacities.upper.astype(np.float64)
    delta = options.sinkhorn_tol * n
    iters = 0
    while True:
        logcol = _column_logsums(blocks, v, eps)
        with np.errstate(under="ignore"):  # an empty column's mass is 0, not an error
            col = np.exp(logcol)
        error = float(np.abs(col - np.clip(col, lower, upper)).sum())
        if error <= delta or iters >= options.sinkhorn_max_iter:
            return v, col, error, iters
        # exact maximisation of the dual in v_j: the column sum moves to its interval
        log_free = logcol - v / eps  # log column sum at v_j = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            v = eps * (np.clip(log_free, np.log(lower), np.log(upper)) - log_free)
        v = np.where(np.isnan(v), 0.0, v)  # -inf - (-inf): a column with no mass and no room
        v = np.maximum(v, -1e300)  # an empty cluster (upper = 0) gets a huge, finite penalty
        iters += 1
