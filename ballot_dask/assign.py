"""The assignment step on its own: balanced optimal-transport labels for given centers."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from dask.base import is_dask_collection
from numpy.typing import ArrayLike
from sklearn.exceptions import ConvergenceWarning

from ._validation import (
    METHODS,
    ROUNDINGS,
    SINKHORN_ALGORITHMS,
    check_centers,
    check_choice,
    check_data,
    check_positive,
)
from .ahead import FOR_METHOD as AHEAD
from .ahead import start as compile_ahead
from .blocks import Blocks, RowBlocks
from .capacities import Capacities, resolve_capacities
from .certificate import Certificate
from .dask_blocks import DaskBlocks
from .dask_input import as_dask_data
from .solvers import SOLVERS, SolverOptions, StepOutcome, labels_of
from .solvers.base import interior_potentials
from .weights import SampleWeight, check_sample_weight, mass_capacities


@dataclass(frozen=True)
class AssignmentResult:
    """Outcome of :func:`balanced_assign`.

    Attributes
    ----------
    labels : ndarray or dask array of shape (n_samples,)
        Cluster of each point (a dask array with X's row chunks when X is one).
    potentials : ndarray of shape (n_clusters,)
        Dual potentials ``v``: the labels minimise ``||x - mu_j||^2 - v_j`` (a power diagram).
    objective : float
        ``sum_i ||x_i - mu_{labels_i}||^2``.
    sizes : ndarray of shape (n_clusters,)
        Points per cluster under ``labels``.
    certificate : Certificate or None
        For ``exact``/``emd`` (and ``sinkhorn`` with ``rounding="exact"``): proof that the
        labels are an optimum of the assignment LP (zero duality gap, no violated
        complementary-slackness condition).
    method : str
    plan_cost : float or None
        ``sinkhorn``: transport cost of the rounded (fractional) plan.
    marginal_error : float or None
        ``sinkhorn``: column-marginal error of the Sinkhorn plan before rounding, per point.
    n_iter : int
        Newton steps (``exact``) or Sinkhorn iterations (``sinkhorn``).
    band_size : int
        Points whose transport was solved exactly by the repair.
    passes : dict
        Passes over X and over the cost blocks, and collective rounds.
    split_rows : ndarray of shape (s,) or None
        With ``sample_weight``: the points whose mass the optimal plan splits between
        clusters (at most ``n_clusters - 1`` in a basic optimum; with whole-number weights
        and sizes every share is a whole number), in increasing order.  ``None`` without weights.
    split_shares : ndarray of shape (s, n_clusters) or None
        Their mass in each cluster (each row sums to the point's weight); their label is the
        cluster with the largest share.
    """

    labels: Any
    potentials: np.ndarray
    objective: float
    sizes: np.ndarray
    certificate: Certificate | None
    method: str
    plan_cost: float | None
    marginal_error: float | None
    n_iter: int
    band_size: int
    passes: dict[str, int]
    split_rows: np.ndarray | None = None
    split_shares: np.ndarray | None = None


def solver_options(
    reg: float,
    sinkhorn_tol: float,
    sinkhorn_max_iter: int,
    rounding: str,
    max_band: int | None,
    sinkhorn_algorithm: str = "newton",
) -> SolverOptions:
    """Validated :class:`SolverOptions`."""
    check_positive(reg, "reg")
    check_positive(sinkhorn_tol, "sinkhorn_tol")
    check_positive(sinkhorn_max_iter, "sinkhorn_max_iter", integer=True)
    check_choice(rounding, "rounding", ROUNDINGS)
    check_choice(sinkhorn_algorithm, "sinkhorn_algorithm", SINKHORN_ALGORITHMS)
    if max_band is not None:
        check_positive(max_band, "max_band", integer=True)
    return SolverOptions(
        reg=float(reg),
        sinkhorn_tol=float(sinkhorn_tol),
        sinkhorn_max_iter=int(sinkhorn_max_iter),
        rounding=rounding,  # type: ignore[arg-type]
        max_band=None if max_band is None else int(max_band),
        sinkhorn_algorithm=sinkhorn_algorithm,  # type: ignore[arg-type]
    )


def result_from_step(blocks: Blocks, step: StepOutcome, capacities: Capacities) -> AssignmentResult:
    """Materialise the labels of a solver step into an :class:`AssignmentResult`."""
    step.settle()
    labels = labels_of(blocks, step.labeler)
    split_rows, split_shares = split_arrays(step, capacities.n_clusters)
    return AssignmentResult(
        labels=labels,
        potentials=interior_potentials(step, capacities, blocks.n_samples),
        objective=float(step.objective),
        sizes=np.asarray(step.sizes),
        certificate=step.certificate,
        method=step.method,
        plan_cost=step.plan_cost,
        marginal_error=step.marginal_error,
        n_iter=step.n_iter,
        band_size=step.band_size,
        passes=blocks.passes.as_dict(),
        split_rows=split_rows,
        split_shares=split_shares,
    )


def split_arrays(step: StepOutcome, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A weighted step's split points, sorted by row, and their shares (``None`` unweighted)."""
    if step.splits is None:
        return None, None
    rows, shares = step.splits
    order = np.argsort(rows, kind="stable")
    return np.asarray(rows)[order], np.asarray(shares, dtype=np.float64).reshape(-1, k)[order]


def make_blocks(
    X: Any, n_clusters: int, weight: SampleWeight | None, block_rows: int | None = None
) -> Blocks:
    """The engine for X: :class:`DaskBlocks` for a dask array, else :class:`RowBlocks`,
    with the sample weights when there are some."""
    values = None if weight is None else weight.values
    if is_dask_collection(X):
        return DaskBlocks(
            X,
            n_clusters,
            weights=values,
            total_weight=None if weight is None else weight.total,
        )
    return RowBlocks(X, block_rows=block_rows, weights=values)


def step_capacities(
    n_samples: int,
    n_clusters: int,
    weight: SampleWeight | None,
    method: str,
    *,
    sizes: ArrayLike | None,
    size_min: ArrayLike | None,
    size_max: ArrayLike | None,
) -> Capacities:
    """The size request as capacities: counts, or masses with sample weights (which only
    the exact method takes)."""
    if weight is None:
        return resolve_capacities(
            n_samples, n_clusters, sizes=sizes, size_min=size_min, size_max=size_max
        )
    if method != "exact":
        raise ValueError(
            f"sample_weight is supported by method='exact' only, got method={method!r}; use "
            "method='exact' (the same LP, exactly) or repeat rows instead of weighting them"
        )
    return mass_capacities(weight, n_clusters, sizes=sizes, size_min=size_min, size_max=size_max)


def balanced_assign(
    X: ArrayLike,
    centers: ArrayLike,
    *,
    sizes: ArrayLike | None = None,
    size_min: ArrayLike | None = None,
    size_max: ArrayLike | None = None,
    method: Literal["exact", "sinkhorn", "emd"] = "exact",
    potentials: ArrayLike | None = None,
    reg: float = 1e-2,
    sinkhorn_tol: float = 1e-3,
    sinkhorn_max_iter: int = 1000,
    rounding: Literal["argmax", "exact"] = "argmax",
    sinkhorn_algorithm: Literal["newton", "sinkhorn"] = "newton",
    max_band: int | None = None,
    block_rows: int | None = None,
    sample_weight: ArrayLike | None = None,
) -> AssignmentResult:
    """Assign points to centers with prescribed cluster sizes (one BalLOT step).

    Solves ``min_F sum_ij F_ij ||x_i - mu_j||^2`` over ``F >= 0`` with unit row sums and
    column sums within the capacities (equal sizes by default).

    Parameters
    ----------
    X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
        Points (float32 stays float32 in the cost blocks).  A scipy.sparse matrix is used as
        CSR and never densified.  A dask array (of NumPy or scipy.sparse CSR chunks holding
        whole rows) is processed chunk by chunk on the active Dask scheduler and gives dask
        labels.
    centers : array-like of shape (n_clusters, n_features)
        Cluster centers ``mu``.
    sizes : array-like of shape (n_clusters,), default=None
        Exact sizes summing to ``n_samples``.  Default: equal sizes; when ``n_clusters`` does
        not divide ``n_samples`` each size is the floor or the ceiling of the ratio, and the LP
        picks which clusters get the extra point.  Equal sizes need ``n_clusters <=
        n_samples``; explicit sizes and bounds may leave clusters empty.
    size_min, size_max : int or array-like of shape (n_clusters,), default=None
        Size bounds instead of exact sizes.
    method : {"exact", "sinkhorn", "emd"}, default="exact"
        ``exact``: an exact LP optimum with a certificate (BalLOT).  ``sinkhorn``: entropic
        transport and rounding (E-BalLOT).  ``emd``: POT's network simplex on the whole
        problem (a slow reference).
    potentials : array-like of shape (n_clusters,), default=None
        Warm start for the dual potentials (e.g. from a previous step).
    reg : float, default=1e-2
        ``sinkhorn``: entropic regularisation, relative to the mean cost.
    sinkhorn_tol : float, default=1e-3
        ``sinkhorn``: stop when the column-marginal error (1-norm) is below this times n.
    sinkhorn_max_iter : int, default=1000
        ``sinkhorn``: cap on the passes over the data (Newton steps or Sinkhorn iterations).
    rounding : {"argmax", "exact"}, default="argmax"
        ``sinkhorn``: labels by row argmax of the rounded plan (the paper), or exactly
        balanced labels from the exact repair warm-started at the Sinkhorn potentials.
    sinkhorn_algorithm : {"newton", "sinkhorn"}, default="newton"
        ``sinkhorn``: how the entropic plan is reached (it is the same plan): Newton's method
        on the semi-dual with the regularisation scaled down (a few passes), or Sinkhorn's
        iterations, step for step as in the paper (one pass each).  Size ranges and k above
        512 always use Sinkhorn's iterations.
    max_band : int, default=None
        Largest number of doubtful points the exact repair may gather; beyond it a
        ``RuntimeError`` is raised.  ``None``: no limit.
    block_rows : int, default=None
        Process X in row blocks of this size (memory bound of the kernels); ``None``: one block.
        Ignored for a dask array, whose row chunks are the blocks.
    sample_weight : array-like or dask array of shape (n_samples,) or float, default=None
        Weight of each point (``method="exact"`` only): point ``i`` is a mass ``w_i`` and the
        sizes are masses, in units of weight (``sizes`` must then sum to the total weight;
        the default is an equal share of it, the floor or ceiling of ``sum(w) / k`` for
        whole-number weights).  A point's mass may be split between clusters: see
        ``split_rows``; its label is the cluster with its largest share.  ``None``: every
        point weighs 1.

    Returns
    -------
    AssignmentResult

    Examples
    --------
    >>> import numpy as np
    >>> from ballot_dask import balanced_assign
    >>> X = np.array([[0.0], [0.1], [0.2], [5.0]])
    >>> res = balanced_assign(X, centers=[[0.0], [5.0]])
    >>> res.labels.tolist(), res.sizes.tolist(), res.certificate.optimal
    ([0, 0, 1, 1], [2, 2], True)
    """
    Xv: Any = as_dask_data(X) if is_dask_collection(X) else check_data(X)  # type: ignore[arg-type]
    mu = check_centers(centers, Xv.shape[1])
    check_choice(method, "method", METHODS)
    options = solver_options(
        reg, sinkhorn_tol, sinkhorn_max_iter, rounding, max_band, sinkhorn_algorithm
    )
    weight = check_sample_weight(sample_weight, Xv)
    capacities = step_capacities(
        Xv.shape[0],
        mu.shape[0],
        weight,
        method,
        sizes=sizes,
        size_min=size_min,
        size_max=size_max,
    )
    v0 = None
    if potentials is not None:
        v0 = np.asarray(potentials, dtype=np.float64)
        if v0.shape != (mu.shape[0],) or not np.all(np.isfinite(v0)):
            raise ValueError(f"potentials must be a finite vector of length {mu.shape[0]}")
    for kernel in AHEAD.get(method, ()):  # on a cold kernel cache: in other processes
        compile_ahead(Xv, kernel)
    blocks = make_blocks(Xv, mu.shape[0], weight, block_rows)
    blocks.set_centers(mu)
    eps = None
    step = SOLVERS[method](blocks, capacities, options, v0, eps)
    short = step.marginal_error is not None and step.marginal_error > options.sinkhorn_tol
    warn_unconverged(options, int(short), step.marginal_error or 0.0)
    return result_from_step(blocks, step, capacities)


def warn_unconverged(options: SolverOptions, count: int, worst: float) -> None:
    """A ``ConvergenceWarning`` when Sinkhorn stopped short of ``sinkhorn_tol`` in ``count``
    steps (``worst``: the largest column error among them)."""
    if count:
        warnings.warn(
            f"Sinkhorn reached sinkhorn_max_iter={options.sinkhorn_max_iter} before the "
            f"column-marginal error fell below sinkhorn_tol={options.sinkhorn_tol:g} in "
            f"{count} assignment step(s) (largest error {worst:.3g}); raise "
            "sinkhorn_max_iter or reg, or loosen sinkhorn_tol",
            ConvergenceWarning,
            stacklevel=3,
        )
