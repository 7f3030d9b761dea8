"""BalLOT's assignment step, solved exactly (DESIGN section 3).

1. *Potentials.*  From a cold start, Newton on the entropic semi-dual with ``e`` annealed
   geometrically towards 0 (:mod:`.newton`); from a warm start (the previous Lloyd iteration's
   potentials), nothing unless the labels they give are far from balanced.
2. *Repair.*  Label every point by ``argmin_j (C_ij - v_j)``.  Only points whose top-two
   reduced-cost gap is small can be wrong; gather the ``size`` smallest-gap points (a small
   array), fix the others, and solve the gathered points' transport exactly with the capacity
   left over (:func:`..band.solve_band`).
3. *Certificate.*  One pass checks complementary slackness for every point through the k x k
   slack matrix (:mod:`..certificate`).  If it fails, the band was too narrow: widen it four
   times and repeat.  A band holding every point is the whole LP, so the loop ends.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..band import solve_band
from ..blocks import RowBlocks
from ..capacities import Capacities
from ..kernels import combine_doubtful, doubtful_rows
from .base import HardLabels, SolverOptions, StepOutcome, certified_summary, cost_scale
from .newton import newton_ascent

_ANNEAL = 16.0  # eps shrinks by this factor per stage
_EPS_RANGE = 1e-3  # final eps relative to the first (the repair absorbs the rest)
_MIN_BAND = 2048


def _imbalance(counts: np.ndarray, capacities: Capacities) -> int:
    over = np.maximum(counts - capacities.upper, 0)
    under = np.maximum(capacities.lower - counts, 0)
    return int(over.sum() + under.sum())


def _gather(blocks: RowBlocks, v: np.ndarray, size: int) -> tuple:
    return blocks.reduce(
        doubtful_rows, lambda parts: combine_doubtful(parts, size), v, size, with_offset=True
    )


def _final_eps(blocks: RowBlocks) -> float:
    """The last regularisation of the annealing, from the typical spread of a cost row."""
    _, spread = cost_scale(blocks)
    return max(spread, 1e-300) / 4.0 * _EPS_RANGE


def _cold_potentials(
    blocks: RowBlocks, capacities: Capacities, counts: np.ndarray
) -> tuple[np.ndarray, float, int]:
    """Anneal Newton on the entropic semi-dual from ``v = 0``; returns ``(v, eps, steps)``."""
    n = blocks.n_samples
    eps0 = _final_eps(blocks) / _EPS_RANGE
    eps_min = eps0 * _EPS_RANGE
    target = capacities.target(counts)
    v = np.zeros(capacities.n_clusters)
    eps, steps = eps0, 0
    while True:
        final = eps <= eps_min * (1 + 1e-12)
        v, _, s = newton_ascent(blocks, target, v, eps, gtol=(1e-3 if final else 1e-2) * n)
        steps += s
        if final:
            return v, eps, steps
        eps = max(eps / _ANNEAL, eps_min)


def solve_exact(
    blocks: RowBlocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """An exact optimum of the balanced transport LP on the current cost blocks."""
    n, k = blocks.n_samples, capacities.n_clusters
    size = min(n, max(_MIN_BAND, 64 * k))
    v = np.zeros(k) if potentials is None else np.asarray(potentials, dtype=np.float64)
    counts, rows, _, labels, costs = _gather(blocks, v, size)
    steps = 0
    imbalance = _imbalance(counts, capacities)
    if k > 1 and (potentials is None or imbalance > 0.02 * n):
        if potentials is None:
            v, eps, steps = _cold_potentials(blocks, capacities, counts)
        else:
            if eps is None:
                eps = _final_eps(blocks)
            for e in (eps * _ANNEAL, eps):
                v, _, s = newton_ascent(blocks, capacities.target(counts), v, e, gtol=1e-3 * n)
                steps += s
        counts, rows, _, labels, costs = _gather(blocks, v, size)
        imbalance = _imbalance(counts, capacities)
    retries = 0
    while True:
        wanted = min(n, max(size, 4 * imbalance + 64 * k))
        if options.max_band is not None and wanted > options.max_band:
            raise RuntimeError(
                f"the exact repair needs {wanted} doubtful points, more than max_band="
                f"{options.max_band}; raise max_band or use method='sinkhorn'"
            )
        if wanted > size:
            size = wanted
            counts, rows, _, labels, costs = _gather(blocks, v, size)
        fixed = counts - np.bincount(labels, minlength=k)
        lower = np.maximum(capacities.lower - fixed, 0)
        upper = capacities.upper - fixed
        m = rows.shape[0]
        if np.all(upper >= 0) and lower.sum() <= m <= upper.sum():
            band_labels = solve_band(costs, lower, upper)
            labeler = HardLabels(v, rows, band_labels)
            sizes, sums, objective, v_cert, certificate = certified_summary(
                blocks, capacities, labeler
            )
            if certificate.optimal or size >= n:
                if not certificate.optimal:
                    warnings.warn(
                        f"the assignment could not be certified optimal "
                        f"(max violation {certificate.max_violation:.3g})",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return StepOutcome(
                    method="exact",
                    potentials=v_cert,
                    eps=float(eps) if eps is not None else 0.0,
                    mass=sizes.astype(np.float64),
                    sums=sums,
                    objective=objective,
                    sizes=sizes,
                    labeler=labeler,  # v, not v_cert: v_cert makes boundary ties exact
                    certificate=certificate,
                    n_iter=steps,
                    band_size=m,
                    retries=retries,
                )
        retries += 1
        size = min(n, 4 * size)
        imbalance = 0
        counts, rows, _, labels, costs = _gather(blocks, v, size)
