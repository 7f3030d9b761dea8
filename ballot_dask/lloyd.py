"""BalLOT / E-BalLOT: Lloyd's algorithm with an optimal-transport assignment step.

Alternate (1) the assignment step, a balanced transport problem solved by one of
:data:`~ballot_dask.solvers.SOLVERS` and warm-started from the previous potentials, and (2) the
update step ``mu_j = sum_i F_ij x_i / sum_i F_ij``.  For BalLOT the objective never increases
and the labels stop changing after finitely many steps (the paper's Theorem 17); the loop
stops when the center shift is at most ``tol``, when the objective stops decreasing (the
labels stopped changing, or moved between tied optima), or at ``max_iter``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .assign import split_arrays, warn_unconverged
from .blocks import Blocks
from .capacities import Capacities
from .certificate import Certificate
from .solvers import SOLVERS, SolverOptions, StepOutcome, labels_of
from .solvers.base import interior_potentials

logger = logging.getLogger("ballot_dask")

#: an objective that decreased by less than this share of itself did not decrease
_ROUND_OFF = 1e-12


@dataclass
class LloydResult:
    """Everything a fit produces (the estimator copies it into its ``*_`` attributes)."""

    centers: np.ndarray
    labels: np.ndarray
    potentials: np.ndarray
    inertia: float
    sizes: np.ndarray
    n_iter: int
    converged: bool
    objective_history: list[float]
    certificate: Certificate | None
    passes: dict[str, int]
    eps: float
    split_rows: np.ndarray | None = None  #: weighted fits: rows split between clusters
    split_shares: np.ndarray | None = None  #: ... and their mass in each cluster


@dataclass
class LloydState:
    """The state after a Lloyd iteration: enough to continue the fit exactly where it stopped.

    ``centers`` are the updated centers (the next iteration's), ``previous`` the ones the
    iteration assigned to, ``potentials`` and ``eps`` the warm start of the next assignment
    step.  A fit continued from this state (``lloyd(..., resume=state)``) takes the same steps
    as the uninterrupted one.
    """

    iteration: int
    centers: np.ndarray
    previous: np.ndarray
    potentials: np.ndarray
    eps: float | None
    objective_history: list[float]
    converged: bool
    shift: float = 0.0
    band_size: int | None = None
    short_steps: int = 0
    passes: dict[str, int] = field(default_factory=dict)

    @property
    def objective(self) -> float:
        return self.objective_history[-1]


def _update(centers: np.ndarray, step: StepOutcome) -> np.ndarray:
    """New centroids from the plan's sums; an empty cluster keeps its center."""
    new = centers.copy()
    filled = step.mass > 0
    new[filled] = step.sums[filled] / step.mass[filled, None]
    return new


def carried(
    potentials: np.ndarray | None, centers: np.ndarray, previous: np.ndarray
) -> np.ndarray | None:
    """The previous step's potentials moved to the new centers: ``v_j - ||mu_j' - mu_j||^2``.

    Moving center j by ``delta_j`` changes a point's cost by ``-2 (x - mu_j) . delta_j +
    ||delta_j||^2``, which averages ``-||delta_j||^2`` over the points the step gave to j (the
    new center is their mean).  Lowering ``v_j`` as much keeps their reduced costs where they
    were on average, so the warm start misplaces fewer points than the raw potentials.
    """
    if potentials is None:
        return None
    return np.asarray(potentials, dtype=np.float64) - ((centers - previous) ** 2).sum(axis=1)


def lloyd(
    blocks: Blocks,
    capacities: Capacities,
    centers: np.ndarray,
    *,
    method: str,
    options: SolverOptions,
    max_iter: int,
    tol: float,
    verbose: bool = False,
    callback: Callable[[LloydState], None] | None = None,
    resume: LloydState | None = None,
) -> LloydResult:
    """Run BalLOT (``method="exact"``/``"emd"``) or E-BalLOT (``"sinkhorn"``) from ``centers``.

    ``tol`` is absolute (on the squared center shift); 0 means "until the labels stop
    changing".  ``callback`` is called with a :class:`LloydState` after every iteration (a
    checkpoint, a progress display); ``resume`` continues from such a state instead of
    ``centers``.
    """
    solve = SOLVERS[method]
    centers = np.array(centers, dtype=np.float64)
    potentials: np.ndarray | None = None
    eps: float | None = None
    history: list[float] = []
    converged = False
    step: StepOutcome | None = None
    n_iter = 0
    short = 0  # Sinkhorn steps that stopped at sinkhorn_max_iter
    worst = 0.0  # ... and the largest column error among them
    previous = centers
    if resume is not None:
        centers = np.array(resume.centers, dtype=np.float64)
        previous = np.array(resume.previous, dtype=np.float64)
        potentials = np.array(resume.potentials, dtype=np.float64)
        eps, history = resume.eps, list(resume.objective_history)
        n_iter, converged, short = resume.iteration, resume.converged, resume.short_steps
    while not converged and n_iter < max_iter:
        n_iter += 1
        blocks.set_centers(centers)
        step = solve(blocks, capacities, options, carried(potentials, centers, previous), eps)
        if step.marginal_error is not None and step.marginal_error > options.sinkhorn_tol:
            short += 1
            worst = max(worst, step.marginal_error)
        potentials, eps = step.potentials, step.eps
        new_centers = _update(centers, step)
        moved = new_centers - centers
        shift = float((moved**2).sum())
        # parallel-axis theorem: the plan's cost at the new centroids, without another pass
        cost = step.plan_cost if step.plan_cost is not None else step.objective
        history.append(float(cost - (step.mass * (moved**2).sum(axis=1)).sum()))
        message = (
            f"iteration {n_iter}: objective {history[-1]:.10g}, center shift {shift:.3g}, "
            f"band {step.band_size}, passes {blocks.passes.as_dict()}"
        )
        logger.info(message)
        if verbose:
            print(message)
        previous, centers = centers, new_centers
        converged = bool(np.array_equal(new_centers, previous) or shift <= tol)
        stalled = len(history) > 1 and history[-1] >= history[-2] - _ROUND_OFF * abs(history[-2])
        if stalled and method != "sinkhorn":  # E-BalLOT's objective need not decrease
            # the objective stopped decreasing: the labels stopped changing (up to the order
            # in which the centroid sums were added), or they moved between equally good
            # assignments (tied, e.g. duplicated points); either way a fixed point of
            # Theorem 17's descent
            converged = True
        if callback is not None:
            callback(
                LloydState(
                    iteration=n_iter,
                    centers=centers,
                    previous=previous,
                    potentials=np.asarray(potentials),
                    eps=eps,
                    objective_history=list(history),
                    converged=converged,
                    shift=shift,
                    band_size=step.band_size,
                    short_steps=short,
                    passes=blocks.passes.as_dict(),
                )
            )
    if step is None or not np.array_equal(centers, previous):
        # the last update moved the centers (or the fit resumed after its last iteration): one
        # more assignment step (as scikit-learn's final E-step) so that labels, potentials and
        # centers agree
        blocks.set_centers(centers)
        step = solve(blocks, capacities, options, potentials, eps)
        potentials = step.potentials
        if step.marginal_error is not None and step.marginal_error > options.sinkhorn_tol:
            short += 1
            worst = max(worst, step.marginal_error)
    warn_unconverged(options, short, worst)
    step.settle()  # (E-BalLOT: the last step's labels are measured, the others' never needed)
    labels = labels_of(blocks, step.labeler)
    potentials = interior_potentials(step, capacities, blocks.n_samples)
    inertia = step.objective  # sum_i ||x_i - centers[labels_i]||^2 at the final centers
    split_rows, split_shares = split_arrays(step, capacities.n_clusters)
    return LloydResult(
        centers=centers,
        labels=labels,
        potentials=np.asarray(potentials),
        inertia=float(inertia),
        sizes=np.asarray(step.sizes),
        n_iter=n_iter,
        converged=converged,
        objective_history=history,
        certificate=step.certificate,
        passes=blocks.passes.as_dict(),
        eps=float(eps or 0.0),
        split_rows=split_rows,
        split_shares=split_shares,
    )


def check_resume(state: LloydState, shape: tuple[int, ...]) -> None:
    """A fit's ``resume`` state checked against its centers' ``shape`` (k, d)."""
    if not isinstance(state, LloydState):
        raise TypeError(f"resume must be a LloydState, got {type(state).__name__}")
    for name in ("centers", "previous"):
        if np.shape(getattr(state, name)) != shape:
            raise ValueError(
                f"resume: the state's {name} have shape {np.shape(getattr(state, name))}, "
                f"this fit's centers {shape}; resume a fit of the same data and n_clusters"
            )
    if np.shape(state.potentials) != shape[:1]:
        raise ValueError(
            f"resume: the state's potentials have shape {np.shape(state.potentials)}, "
            f"expected ({shape[0]},)"
        )


def best_of_starts(
    blocks: Blocks,
    capacities: Capacities,
    start: Callable[[], np.ndarray],
    runs: int,
    **kwargs: Any,
) -> LloydResult:
    """``runs`` fits of :func:`lloyd` (``kwargs`` are its keywords), each from the centers
    ``start()`` draws; the lowest inertia is kept, as scikit-learn's ``n_init`` does.  The
    result's ``passes`` count every run's."""
    best: LloydResult | None = None
    for _ in range(max(runs, 1)):
        result = lloyd(blocks, capacities, start(), **kwargs)
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    best.passes = blocks.passes.as_dict()
    return best
