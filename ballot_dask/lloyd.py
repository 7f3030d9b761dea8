"""BalLOT / E-BalLOT: Lloyd's algorithm with an optimal-transport assignment step.

Alternate (1) the assignment step, a balanced transport problem solved by one of
:data:`~ballot_dask.solvers.SOLVERS` and warm-started from the previous potentials, and (2) the
update step ``mu_j = sum_i F_ij x_i / sum_i F_ij``.  For BalLOT the objective never increases
and the labels stop changing after finitely many steps (the paper's Theorem 17); the loop
stops when the center shift is at most ``tol``, when the objective stops decreasing (the
labels stopped changing, or moved between tied optima), or at ``max_iter``.

E-BalLOT's step ends once its plan is within ``sinkhorn_tol`` of the transport polytope (per
point, in the 1-norm), and the rounding moves that much mass to columns short of it, near or
far.  On separated clusters a mass error of that size moves the centroids, and the fit can
cycle between plans that each meet the tolerance (at 2x10^5 rows, k = 64, reg 1e-3: an
objective going up and down by 1-3 % for as many iterations as allowed).  Where the objective
rises by more than ``sinkhorn_tol`` of itself, the following steps solve to a tenth of the
tolerance (:data:`_TIGHTER`), down to a thousandth: each plan still meets the tolerance asked
for, more closely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
#: E-BalLOT: after an objective that rose by more than ``sinkhorn_tol`` of itself, the steps
#: solve to this much less than their tolerance ...
_TIGHTER = 10.0
#: ... down to this share of ``sinkhorn_tol`` (measured here, 10^6 x 16 overlapping blobs,
#: k = 16, 20 iterations, whose objective never rises so much: 7.1 s at 1e-3, 7.5 s at 1e-4,
#: 10.1 s at 1e-5 from the start)
_TIGHTEST = 1e-3


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

    A fit continued from this state (``lloyd(..., resume=state)``) takes the same steps as the
    uninterrupted one.

    Attributes
    ----------
    iteration : int
        Lloyd iterations done.
    centers : ndarray of shape (n_clusters, n_features)
        The updated centers: the next iteration's.
    previous : ndarray of shape (n_clusters, n_features)
        The centers the iteration assigned to.
    potentials : ndarray of shape (n_clusters,)
        The step's potentials: the next step's warm start.
    eps : float or None
        The step's band threshold (BalLOT) or temperature (E-BalLOT), for the next step.
    objective_history : list of float
        The objective after each iteration.
    converged : bool
        Whether the fit stopped converged.
    shift : float
        The iteration's squared center shift.
    band_size : int or None
        Points the step's repair settled.
    short_steps : int
        E-BalLOT steps that stopped at ``sinkhorn_max_iter`` so far.
    passes : dict
        Passes and rounds so far (:attr:`BalancedKMeans.n_passes_`).
    sinkhorn_tol : float or None
        E-BalLOT: the tolerance the next steps solve to after a rise of the objective,
        tighter than the options' (see ``_TIGHTER``); ``None``: the options'.
    reference : ndarray of shape (n_clusters,) or None
        E-BalLOT: the row sample's column targets at the last plan, from which the next
        step starts (the engine's ``entropic_reference``).
    sample_curvature : bool
        E-BalLOT: whether the next steps' Newton steps may take the row sample's curvature
        (the engine's ``entropic_curvature``: false once it misled a step).
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
    sinkhorn_tol: float | None = None
    reference: np.ndarray | None = None
    sample_curvature: bool = True

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
    inner = options.sinkhorn_tol  # E-BalLOT: the steps' own tolerance (see _TIGHTER)
    if resume is not None:
        centers = np.array(resume.centers, dtype=np.float64)
        previous = np.array(resume.previous, dtype=np.float64)
        potentials = np.array(resume.potentials, dtype=np.float64)
        eps, history = resume.eps, list(resume.objective_history)
        n_iter, converged, short = resume.iteration, resume.converged, resume.short_steps
        if resume.sinkhorn_tol is not None:  # (a resume asked for a tighter one keeps it)
            inner = min(resume.sinkhorn_tol, inner)
        if resume.reference is not None:
            blocks.entropic_reference = np.array(resume.reference, dtype=np.float64)
        blocks.entropic_curvature = bool(resume.sample_curvature)
    while not converged and n_iter < max_iter:
        n_iter += 1
        blocks.set_centers(centers)
        step = solve(
            blocks,
            capacities,
            _solving(options, inner),
            carried(potentials, centers, previous),
            eps,
        )
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
        inner = _tightened(method, history, options.sinkhorn_tol, inner)
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
                    sinkhorn_tol=inner if inner < options.sinkhorn_tol else None,
                    reference=_copy(getattr(blocks, "entropic_reference", None)),
                    sample_curvature=bool(getattr(blocks, "entropic_curvature", True)),
                )
            )
    if step is None or not np.array_equal(centers, previous):
        # the last update moved the centers (or the fit resumed after its last iteration): one
        # more assignment step (as scikit-learn's final E-step) so that labels, potentials and
        # centers agree
        blocks.set_centers(centers)
        step = solve(blocks, capacities, _solving(options, inner), potentials, eps)
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


def _copy(reference: Any) -> np.ndarray | None:
    return None if reference is None else np.array(reference, dtype=np.float64)


def _solving(options: SolverOptions, inner: float) -> SolverOptions:
    """The options a step solves with: ``sinkhorn_tol`` made ``inner``."""
    return options if inner == options.sinkhorn_tol else replace(options, sinkhorn_tol=inner)


def _tightened(method: str, history: list[float], tol: float, inner: float) -> float:
    """E-BalLOT's tolerance for the next steps: ``inner``, a :data:`_TIGHTER` part of it after
    an objective that rose by more than ``tol`` of itself (down to ``_TIGHTEST * tol``)."""
    if method != "sinkhorn" or len(history) < 2 or inner <= _TIGHTEST * tol * (1.0 + 1e-9):
        return inner
    if history[-1] - history[-2] <= tol * abs(history[-2]):
        return inner
    tighter = max(inner / _TIGHTER, _TIGHTEST * tol)
    logger.info(
        "the objective rose by %.3g of itself: E-BalLOT's steps now solve to sinkhorn_tol %.3g",
        (history[-1] - history[-2]) / abs(history[-2]),
        tighter,
    )
    return tighter


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
