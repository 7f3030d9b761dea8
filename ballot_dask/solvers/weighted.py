"""BalLOT's assignment step with sample weights, solved exactly.

With weights ``w_i`` the step is the transport problem whose sources are the points with
masses ``w_i`` and whose sinks are the clusters with capacities in units of weight
(:func:`ballot_dask.weights.mass_capacities`).  It is solved as the unweighted step is
(:mod:`.exact`): potentials from a row sample, one pass over X that summarises the rows far
from a cell boundary (their weights, weighted centroid sums and objective, slack matrix) and
gathers the *band* with its weights, then an exact repair of the band by shortest paths that
move mass (:mod:`.mass_paths`), and the certificate, which decides with no further pass
whether the band's optimum is the whole problem's; if not, the band is widened.

An optimum may split a point's mass between clusters (at most ``k - 1`` points in a basic
optimum; with whole-number weights and capacities every share is a whole number: the copies
of a repeated row).  The
step's sizes, centroid sums and objective are the plan's, split points included; a split
point's label is the cluster holding the largest share of it, and :attr:`StepOutcome.splits`
lists the split points with their shares.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse

from ..blocks import Blocks, RowBlocks
from ..candidates import BandCosts
from ..capacities import Capacities
from ..certificate import certify_labels
from ..combine import combine_passes
from ..exact_pass import ExactPass, band_costs
from ..kernels import reduced_cost_labels
from ..sparse import is_sparse, stack_rows
from .base import ExactLabels, SolverOptions, StepOutcome
from .exact import _WARM_SAMPLE, _quantile_gap, solve_exact
from .mass_paths import DONE, mass_shortest_paths
from .passes import _pass_kernel
from .search import (
    _MIN_BAND,
    _PER_CLUSTER,
    _WIDEN,
    _band_error,
    _quantile_of_gaps,
    _sample_error,
    _Search,
)

#: masses within this share of the total weight meet a bound (round-off of fractional sums)
MASS_TOLERANCE = 1e-12
_SAMPLE_ROWS = 16384  # rows of the sample the first potentials come from (64 per cluster at least)
_SAMPLE_SEED = 0x3A55


def _weighted_kernel(
    X: np.ndarray,
    W: np.ndarray,
    centers: np.ndarray,
    v: np.ndarray,
    theta: float,
    cap: int,
    total: int,
    strict: bool,
    offset: int,
) -> ExactPass:
    """The exact pass of one block with its weights (:func:`.passes._pass_kernel`)."""
    return _pass_kernel(
        X, centers, v, theta, cap, total, strict, 0, 0.0, None, False, offset, weights=W
    )


def _sample_kernel(X: np.ndarray, W: np.ndarray, stride: int, offset: int) -> tuple:
    """Every ``stride``-th row of the block (by global index) and its weight."""
    keep = np.arange(-offset % stride, X.shape[0], stride)
    return X[keep], W[keep]


def _combine_samples(parts: list[tuple]) -> tuple:
    xs = [p[0] for p in parts]
    x = stack_rows(xs) if is_sparse(xs[0]) else np.concatenate(xs)
    return x, np.concatenate([p[1] for p in parts])


def count_capacities(capacities: Capacities, total: float, rows: int) -> Capacities:
    """Whole-number bounds for ``rows`` points with the same shares of the total as the mass
    bounds (the unweighted problem whose potentials start the weighted one)."""
    share = rows / total
    lower = np.floor(np.asarray(capacities.lower) * share + 1e-9).astype(np.int64)
    upper = np.ceil(np.asarray(capacities.upper) * share - 1e-9).astype(np.int64)
    return Capacities(lower, np.maximum(upper, lower))


def _start_potentials(
    x: np.ndarray,
    w: np.ndarray,
    centers: np.ndarray,
    capacities: Capacities,
    total: float,
    warm: np.ndarray | None = None,
) -> np.ndarray:
    """Potentials of the weighted problem on the rows ``x`` (the bounds scaled to their
    share of the weight), warm-started at the unweighted problem's (itself warm-started at
    ``warm``): both in memory."""
    rows = RowBlocks(x)
    rows.set_centers(centers)
    counts = count_capacities(capacities, total, x.shape[0])
    start = solve_exact(rows, counts, SolverOptions(), warm).potentials
    share = float(w.sum()) / total
    scaled = Capacities(
        np.asarray(capacities.lower, dtype=np.float64) * share,
        np.asarray(capacities.upper, dtype=np.float64) * share,
    )
    weighted = RowBlocks(x, weights=w)
    weighted.set_centers(centers)
    return _solve(weighted, scaled, SolverOptions(), start, None, restart=False).potentials


def solve_weighted_exact(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """An exact optimum of the weighted balanced transport LP for the blocks' centers,
    certified (see the module docstring).  ``capacities`` are masses (float bounds)."""
    return _solve(blocks, capacities, options, potentials, eps, restart=True)


def _solve(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None,
    eps: float | None,
    *,
    restart: bool,
) -> StepOutcome:
    """:func:`solve_weighted_exact`; ``restart=False`` keeps the given potentials however
    far off they are (the nested solve that itself starts them)."""
    n, k = blocks.n_samples, capacities.n_clusters
    total = float(blocks.total_weight)
    tol = MASS_TOLERANCE * total
    row_bytes = 8 * (k + 5) + blocks.row_bytes()
    budget = blocks.band_budget()
    limit = min(n, max(budget // (2 * row_bytes), 1))
    if options.max_band is not None:
        limit = min(limit, options.max_band)
    cold = potentials is None
    search = _Search(
        potentials=np.zeros(k) if cold else np.asarray(potentials, dtype=np.float64),
        theta=math.inf if cold or not eps else float(eps),
        wanted=min(limit, max(_MIN_BAND, _PER_CLUSTER * k)),
        limit=limit,
        sampled=not restart,
    )
    size = max(_SAMPLE_ROWS, 64 * k)
    sampling = n > 4 * size  # else the whole problem is about as cheap
    if sampling and cold:
        _from_sample(search, blocks, size, capacities, total)
    elif sampling and not eps:
        xs, _ = _sample(blocks, size)
        search.theta = _quantile_gap(xs, blocks.centers, search.potentials, search.wanted / n)
    elif (cold or not restart) and limit >= n:
        search.wanted, search.theta = n, math.inf  # few rows: all of them, exactly
    while True:
        band = blocks.reduce_xw(
            _weighted_kernel,
            combine_passes,
            blocks.centers,
            search.potentials,
            search.theta,
            search.wanted,
            n,
            options.max_band is not None,
        )
        search.passes += 1
        gathered = band.rows.shape[0]
        assert band.w is not None and band.mass is not None
        costs = band_costs(band.x, blocks.centers)
        labels, _ = reduced_cost_labels(costs, search.potentials)
        mass = band.mass + np.bincount(labels, band.w, minlength=k)
        off = _mass_imbalance(mass, capacities)
        far = cold or off > _WARM_SAMPLE * total  # potentials far from the optimum's
        if far and not search.sampled and gathered >= n:
            # every row is here: their own problem's potentials (unweighted first), warm-
            # started where possible
            search.sampled = True
            search.potentials = _start_potentials(
                band.x,
                band.w,
                blocks.centers,
                capacities,
                total,
                None if cold else search.potentials,
            )
            labels, _ = reduced_cost_labels(costs, search.potentials)
            mass = band.mass + np.bincount(labels, band.w, minlength=k)
            off = _mass_imbalance(mass, capacities)
        elif far and not search.sampled and sampling:
            # warm potentials far off (the centers moved much): the sample's first
            _from_sample(search, blocks, size, capacities, total)
            continue
        rows_off = math.ceil(off * n / max(total, 1e-300))  # in rows of mean weight
        needed = min(search.limit, 4 * rows_off + _PER_CLUSTER * k)
        search.needed = needed  # the last estimate (after a restart: the new potentials')
        if search.theta == math.inf and gathered < n:
            search.wanted = max(search.wanted, needed)
            search.theta = band.band_rows_below(search.wanted)
            continue
        if needed > gathered and gathered < search.limit and search.theta < math.inf:
            search.wanted = max(search.wanted, needed)
            search.theta = band.band_rows_below(search.wanted)
            search.widenings += 1
            continue
        result = mass_shortest_paths(
            costs,
            band.w,
            labels,
            capacities.lower,
            capacities.upper,
            search.potentials,
            fixed_mass=band.mass,
            tol=tol,
        )
        search.augmentations += result.augmentations
        if result.status == DONE:
            step = _outcome(blocks, capacities, band, costs, labels, result, search, tol)
            assert step.certificate is not None
            if step.certificate.optimal or gathered >= n:
                return step
        if gathered >= search.limit:
            raise _band_error(search, budget, k, options)
        search.widenings += 1
        search.wanted = min(search.limit, _WIDEN * max(search.wanted, gathered))
        search.theta = band.band_rows_below(search.wanted)


def _sample(blocks: Blocks, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows (and weights) the first potentials come from: every ``n // size``-th row,
    drawn by the first step that needs them (one pass over X, counted) and kept for the
    fit."""
    cached = getattr(blocks, "_weighted_sample", None)
    if cached is None:
        cached = blocks.reduce_xw(_sample_kernel, _combine_samples, blocks.n_samples // size)
        setattr(blocks, "_weighted_sample", cached)  # noqa: B010 - not in the Blocks contract
    return cached


def _from_sample(
    search: _Search, blocks: Blocks, size: int, capacities: Capacities, total: float
) -> None:
    """Potentials from the sample (warm-started at the current ones after a first pass) and
    a band wide enough for what they misplace (as :func:`.exact._from_sample`)."""
    n, k = blocks.n_samples, capacities.n_clusters
    xs, ws = _sample(blocks, size)
    warm = search.potentials if search.passes else None
    search.potentials = _start_potentials(xs, ws, blocks.centers, capacities, total, warm)
    blocks.passes.sample += 1  # the sample's own solve, on the client
    search.sampled = True
    expected = _sample_error(n, k, xs.shape[0])
    search.wanted = min(search.limit, max(search.wanted, int(4 * expected)))
    search.theta = _quantile_gap(xs, blocks.centers, search.potentials, search.wanted / n)


def _mass_imbalance(mass: np.ndarray, capacities: Capacities) -> float:
    """Mass to move before every cluster is within its bounds."""
    over = np.maximum(mass - capacities.upper, 0.0)
    under = np.maximum(capacities.lower - mass, 0.0)
    return float(max(over.sum(), under.sum()))


def snap_to_bounds(mass: np.ndarray, capacities: Capacities, tol: float) -> np.ndarray:
    """Masses within ``tol`` of a bound set to it (the round-off of fractional weights)."""
    out = np.asarray(mass, dtype=np.float64).copy()
    for bound in (np.asarray(capacities.lower), np.asarray(capacities.upper)):
        near = np.abs(out - bound) <= tol
        out[near] = bound[near]
    return out


def _outcome(
    blocks: Blocks,
    capacities: Capacities,
    band: ExactPass,
    costs: np.ndarray,
    labels: np.ndarray,
    result: object,
    search: _Search,
    tol: float,
) -> StepOutcome:
    """The step's summaries (fixed rows' and the band's plan), the certificate, the labels
    (largest share) and the split points."""
    n, k = blocks.n_samples, capacities.n_clusters
    rows, shares, pieces = result.piece_rows, result.piece_mass, result.piece_labels  # type: ignore[attr-defined]
    m = labels.shape[0]
    assert band.mass is not None
    sizes = snap_to_bounds(band.mass + np.bincount(pieces, shares, minlength=k), capacities, tol)
    plan = scipy.sparse.csr_matrix((shares, (pieces, rows)), shape=(k, m))
    moved = plan @ band.x
    sums = band.sums + (moved.toarray() if scipy.sparse.issparse(moved) else moved)
    objective = band.objective + float((shares * costs[rows, pieces]).sum())
    slack = np.minimum(band.slack, result.slack)  # type: ignore[attr-defined]
    potentials, certificate = certify_labels(
        slack,
        sizes,
        capacities,
        objective,
        n,
        near=result.potentials,  # type: ignore[attr-defined]
    )
    # each band row's label: the cluster with its largest share (rows of no weight keep
    # theirs); a row has at most one piece per cluster
    hard = labels.copy()
    order = np.lexsort((-shares, rows))
    first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]] if rows.size else order
    hard[rows[first]] = pieces[first]
    split = np.flatnonzero(np.bincount(rows, minlength=m) > 1)
    split_shares = np.zeros((split.size, k))
    if split.size:
        at = np.minimum(np.searchsorted(split, rows), split.size - 1)
        inside = split[at] == rows
        split_shares[at[inside], pieces[inside]] = shares[inside]
    splits = (band.rows[split], split_shares)
    # the next step's band as wide as this step's imbalance needed (as the unweighted step's,
    # :func:`.search._outcome`): a warm step's imbalance is about the last one's or less, and
    # its first band was otherwise too narrow for it, a second pass in every warm step
    wanted = min(search.limit, max(_MIN_BAND, _PER_CLUSTER * k, search.needed))
    if m >= n:
        next_theta = _quantile_of_gaps(BandCosts(costs), potentials, wanted / n)
    else:
        next_theta = band.band_rows_below(wanted)
    return StepOutcome(
        method="exact",
        potentials=potentials,
        eps=next_theta if math.isfinite(next_theta) else 0.0,
        mass=sizes,
        sums=sums,
        objective=objective,
        sizes=sizes,
        labeler=ExactLabels(blocks.centers, search.potentials, band.rows, hard),
        certificate=certificate,
        slack=slack,
        n_iter=search.augmentations,
        band_size=m,
        retries=search.widenings,
        extra={"passes": float(search.passes), "sampled": float(search.sampled)},
        splits=splits,
    )
