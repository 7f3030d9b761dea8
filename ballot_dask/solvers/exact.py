"""BalLOT's assignment step, solved exactly (DESIGN section 3).

1. *Potentials.*  From a cold start, Newton on the entropic semi-dual with ``e`` annealed
   geometrically towards 0 (:mod:`.newton`), on a hashed sample of at most 2^17 rows; from a
   warm start, the previous Lloyd iteration's potentials (re-sampled Newton only if they
   misplace more than 5 % of the points).  Then a few semi-smooth Newton steps on all rows:
   the gradient of the exact dual is ``target - counts`` (one counting pass), its generalised
   Hessian the density of points on the cell boundaries, measured on the gathered rows.
2. *Repair.*  Label every point by ``argmin_j (C_ij - v_j)``.  Only points whose top-two
   reduced-cost gap is small can be wrong; gather the ``size`` smallest-gap points (a small
   array), fix the others, and solve the gathered points' transport exactly with the capacity
   left over: the network simplex (:func:`..band.solve_band`) for a small set, this same
   method for a large one.
3. *Certificate.*  One pass checks complementary slackness for every point through the k x k
   slack matrix (:mod:`..certificate`).  If it fails, the band was too narrow: centre the next
   one on the band's potentials, double it and repeat.  A band holding every point is the
   whole LP, so the loop ends.

Every step is a pass over the row blocks returning small summaries; nothing of size n is
kept between passes.
"""

from __future__ import annotations

import warnings

import numpy as np
from dask.utils import format_bytes

from .. import config
from ..band import solve_band
from ..blocks import Blocks, RowBlocks
from ..capacities import Capacities
from ..dask_blocks import cluster_memory as memory
from .base import (
    HardLabels,
    SolverOptions,
    StepOutcome,
    certified_summary,
    hard_step,
    labels_of,
)
from .potentials import BandOverflow, approach, gather, imbalance

_MIN_BAND = 2048  # doubtful rows gathered at first
_BY_RANK = 8192  # wider bands are gathered by a gap threshold
_WARM_BAND = 8192  # ... from warm potentials: enough to absorb a Lloyd step's imbalance
_LEAF = 2048  # doubtful sets up to this size go straight to the network simplex
_PER_CLUSTER = 64  # doubtful rows gathered per cluster at first


def _solve_doubtful(
    costs: np.ndarray,
    capacities: Capacities,
    options: SolverOptions,
    v: np.ndarray,
    eps: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact labels of the gathered points under the capacity left to them, and the
    potentials that certify them (for this sub-problem).

    A small set goes to the network simplex; a large one (early Lloyd iterations, where the
    centers move much) is itself a balanced transport problem, solved by this same method
    warm-started at ``v``: network simplex time grows faster than linearly, this does not.
    """
    m, k = costs.shape
    blocks = RowBlocks.from_cost(costs)
    if m <= _LEAF or np.count_nonzero(capacities.upper) < 2:
        labels = solve_band(costs, capacities.lower, capacities.upper)
        every = HardLabels(np.zeros(k), np.arange(m), labels)
        *_, potentials, _ = certified_summary(blocks, capacities, every)
        return labels, potentials
    step = solve_exact(blocks, capacities, options, potentials=v, eps=eps)
    return labels_of(blocks, step.labeler), step.potentials


def _next_potentials(v: np.ndarray, v_band: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Potentials for the next, wider band: the band's own where it had room to assign.

    A column with no capacity left in the band got no constraint there; it keeps its place
    relative to the others (the two vectors are aligned by their median offset).
    """
    if not room.any():
        return v
    offset = float(np.median(v[room] - v_band[room]))
    return np.where(room, v_band, v - offset)


def _too_wide(
    rows: int, limit: int, by_memory: int, budget: int, k: int, options: SolverOptions
) -> RuntimeError:
    """The error for a band of ``rows`` doubtful points when at most ``limit`` are allowed."""
    if limit == by_memory:
        return RuntimeError(
            f"the exact repair needs {rows} or more doubtful points, more than the {limit} "
            f"that fit its memory budget ({format_bytes(budget)} at k={k}: the smaller of "
            "ballot.band-memory and a quarter of ballot.memory-fraction of the memory); "
            "raise them (dask.config.set({'ballot.band-memory': '1 GiB'}) or "
            "DASK_BALLOT__BAND_MEMORY), start from better centers, or use method='sinkhorn'"
        )
    if options.max_band is not None and limit == options.max_band:
        return RuntimeError(
            f"the exact repair needs more than max_band={options.max_band} doubtful "
            "points; raise max_band or use method='sinkhorn'"
        )
    return RuntimeError(
        f"the exact repair could not settle the assignment on a band of {limit} points "
        "(the centers moved too far for one step, e.g. a start that splits well separated "
        "clusters); start from better centers (another --seed or init) or use "
        "method='sinkhorn'"
    )


def solve_exact(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """An exact optimum of the balanced transport LP on the current cost blocks."""
    n, k = blocks.n_samples, capacities.n_clusters
    limit = n if options.max_band is None else min(n, options.max_band)
    # the gathered rows (k costs, row, gap, label: float64 / int64 each) must fit the budget
    # ... and a small share of the memory the computation runs in (the rows are first held by
    # the workers, in pieces, then by the client)
    budget = min(config.band_memory(), int(float(config.get("memory-fraction")) * memory() / 4))
    by_memory = budget // (8 * (k + 3))
    limit = min(limit, max(by_memory, 1))
    first = _WARM_BAND if potentials is not None and n >= 32 * _WARM_BAND else _MIN_BAND
    size = min(limit, max(first, _PER_CLUSTER * k))
    v, eps, steps, gathered = approach(blocks, capacities, potentials, eps, size)
    counts, rows, gaps, labels, costs, _ = gathered
    imbalance_now = imbalance(counts, capacities)

    def wider(v: np.ndarray, target: int, quota: np.ndarray | None) -> tuple:
        """About ``target`` doubtful rows around ``v``: by rank while few, beyond that by a
        gap threshold scaled from the current band (the number of rows below a gap grows
        about linearly with it near zero), so no chunk sends more than its share."""
        width = float(gaps.max(initial=0.0))
        if target <= _BY_RANK or not width > 0 or rows.shape[0] == 0:
            return gather(blocks, v, target, 0, quota)
        try:
            return gather(blocks, v, limit, 0, quota, width * target / rows.shape[0])
        except BandOverflow as exc:
            raise _too_wide(exc.rows, limit, by_memory, budget, k, options) from None

    retries = 0
    recentred_at = quota_at = -1
    quota = None
    while True:
        wanted = min(limit, max(size, 4 * imbalance_now + _PER_CLUSTER * k))
        if wanted > size:
            size = wanted
            counts, rows, gaps, labels, costs, _ = wider(v, size, quota)
        fixed = counts - np.bincount(labels, minlength=k)
        lower = np.maximum(capacities.lower - fixed, 0)
        upper = capacities.upper - fixed
        m = rows.shape[0]
        if np.any(upper < 0) and quota_at != size:
            # over-full clusters have too few points among the smallest gaps (their boundary
            # is far from the others'): gather their own smallest-gap points as well
            excess = np.maximum(counts - capacities.upper, 0)
            wanted_quota = np.where(excess > 0, 2 * excess + _PER_CLUSTER, 0)
            if size + int(wanted_quota.sum()) <= limit:
                quota, quota_at = wanted_quota, size
                counts, rows, gaps, labels, costs, _ = wider(v, size, quota)
                continue
        v_next = v
        if np.all(upper >= 0) and lower.sum() <= m <= upper.sum():
            left = Capacities(lower, upper)
            if m < n:
                band_labels, v_band = _solve_doubtful(costs, left, options, v, eps)
                v_next = _next_potentials(v, v_band, upper > 0)
            else:  # the band is the whole problem: no recursion
                band_labels = solve_band(costs, left.lower, left.upper)
            labeler = HardLabels(v, rows, band_labels)  # v: the certified ones sit on ties
            step = hard_step(
                "exact",
                blocks,
                capacities,
                labeler,
                eps=float(eps) if eps is not None else 0.0,
                n_iter=steps,
                band_size=m,
                retries=retries,
            )
            certificate = step.certificate
            assert certificate is not None
            if certificate.optimal or size >= n or m >= n:
                if not certificate.optimal:
                    warnings.warn(
                        f"the assignment could not be certified optimal "
                        f"(max violation {certificate.max_violation:.3g})",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return step
        if size >= limit or (m >= limit and limit < n):
            raise _too_wide(limit + 1, limit, by_memory, budget, k, options)
        # the band was too narrow: centre the next one on the band's potentials; widen it
        # unless the re-centred band has not been tried at this size yet (the band's own
        # potentials are often nearly right, and the points in doubt around them few)
        retries += 1
        moved = v_next is not v and not np.allclose(v_next, v, rtol=0, atol=0)
        if not moved or recentred_at == size:
            size = min(limit, 2 * size)
        else:
            recentred_at = size
        v = v_next
        imbalance_now = 0
        quota = None
        counts, rows, gaps, labels, costs, _ = wider(v, size, None)
