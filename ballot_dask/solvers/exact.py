"""BalLOT's assignment step, solved exactly (DESIGN section 3).

1. *Potentials.*  From a cold start, Newton on the entropic semi-dual with ``e`` annealed
   geometrically towards 0 (:mod:`.newton`), on a systematic sample of at most 2^17 rows;
   from a warm start (the previous Lloyd iteration's potentials), nothing unless the labels
   they give are far from balanced, and then two Newton stages on the sample.
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
from ..kernels import (
    combine_doubtful,
    doubtful_rows,
    entropic_terms,
)
from .base import (
    HardLabels,
    SolverOptions,
    StepOutcome,
    certified_summary,
    labels_of,
)
from .newton import newton_ascent

_ANNEAL = 16.0  # eps shrinks by this factor per stage
_EPS_RANGE = 1e-3  # final eps relative to the first (the repair absorbs the rest)
_MIN_BAND = 2048
_LEAF = 8192  # doubtful sets up to this size go straight to the network simplex
_SAMPLE = 1 << 17  # rows the potentials are refined on
_REFINE = 0.05  # refine warm potentials when more than this fraction of points is misplaced
_POLISH_STEPS = 6  # semi-smooth Newton steps on all rows before the repair


def _imbalance(counts: np.ndarray, capacities: Capacities) -> int:
    over = np.maximum(counts - capacities.upper, 0)
    under = np.maximum(capacities.lower - counts, 0)
    return int(over.sum() + under.sum())


def _sampled(offset: int, rows: int, stride: int) -> np.ndarray:
    """Whether each global row is in the sample: about one row in ``stride``, chosen by a
    multiplicative hash of the row index, so the choice depends neither on the chunking nor
    on any periodic order of the rows (a plain stride would alias with it)."""
    index = np.arange(offset, offset + rows, dtype=np.uint64)
    hashed = (index * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return hashed < np.uint64((1 << 32) // stride)


def _gather_kernel(C: np.ndarray, v: np.ndarray, size: int, stride: int, offset: int) -> tuple:
    """Doubtful rows of a block and, when ``stride``, its rows in the sample."""
    doubtful = doubtful_rows(C, v, size, offset)
    if stride > 1:
        sample = C[_sampled(offset, C.shape[0], stride)]
    else:
        sample = C if stride == 1 else C[:0]
    return (*doubtful, np.asarray(sample, dtype=np.float64))


def _gather(blocks: RowBlocks, v: np.ndarray, size: int, stride: int = 0) -> tuple:
    """One pass: label counts, the ``size`` smallest-gap rows, and the strided sample."""

    def combine(parts: list[tuple]) -> tuple:
        sample = np.concatenate([p[5] for p in parts])
        return (*combine_doubtful([p[:5] for p in parts], size), sample)

    return blocks.reduce(_gather_kernel, combine, v, size, stride, with_offset=True)


def _refine(
    sample: np.ndarray,
    capacities: Capacities,
    counts: np.ndarray,
    n: int,
    v: np.ndarray | None,
    eps: float | None,
) -> tuple[np.ndarray, float, int]:
    """Potentials from Newton on the entropic semi-dual of a row sample.

    The potentials of a semi-discrete transport problem depend on the distribution of the rows,
    not on their number, so a systematic sample (capacities scaled to it) gives them to within
    the sampling error, and the exact repair on all rows absorbs the rest.  Cold (``v`` None):
    anneal ``eps`` geometrically from the spread of a cost row; warm: two stages near ``eps``.
    Returns ``(v, eps, newton_steps)``.
    """
    m = sample.shape[0]
    blocks = RowBlocks.from_cost(sample)
    target = capacities.target(counts) * (m / n)
    spread = float((sample.mean(axis=1) - sample.min(axis=1)).mean()) if m else 1.0
    eps_min = max(spread, 1e-300) / 4.0 * _EPS_RANGE
    steps = 0
    if v is None:
        v, stages = np.zeros(capacities.n_clusters), []
        e = eps_min / _EPS_RANGE
        while e > eps_min * (1 + 1e-12):
            stages.append(e)
            e /= _ANNEAL
        stages.append(eps_min)
    else:
        eps = eps_min if not eps else eps
        stages = [eps * _ANNEAL, eps]
    for i, e in enumerate(stages):
        final = i == len(stages) - 1
        v, _, s = newton_ascent(blocks, target, v, e, gtol=(1e-3 if final else 1e-2) * m)
        steps += s
    return v, stages[-1], steps


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


def _polish(
    blocks: RowBlocks, capacities: Capacities, v: np.ndarray, gathered: tuple, size: int
) -> tuple[np.ndarray, tuple] | None:
    """One semi-smooth Newton step on the exact semi-dual, from a gather pass's summaries.

    The exact dual is piecewise linear in ``v``; its gradient is ``target - counts`` and its
    generalised Hessian is the density of points on the cell boundaries, which the gathered
    smallest-gap points measure: their entropic Hessian at an ``eps`` well below the band's
    width.  Costs one gather pass per trial step (which also measures the next Hessian);
    returns ``(v, gathered)``, or ``None`` when no step reduces the imbalance (the repair then
    takes the points as they are).
    """
    counts, _, gaps, _, costs, _ = gathered
    width = float(gaps.max(initial=0.0))
    if not width > 0 or not np.isfinite(width):
        return None
    eps = width / 16.0
    _, logcol, ptp = entropic_terms(costs, v, eps, hessian=True)
    col = np.exp(logcol)
    lap = (np.diag(col) - ptp) / eps
    if not np.trace(lap) > 0:
        return None
    k = v.shape[0]
    scale = float(np.trace(lap)) / k
    system = lap + (scale / k) * np.ones((k, k)) + 1e-9 * scale * np.eye(k)
    grad = capacities.target(counts) - counts
    direction = np.linalg.lstsq(system, grad, rcond=None)[0]
    before = _imbalance(counts, capacities)
    t = 1.0
    for _ in range(3):
        trial = v + t * direction
        result = _gather(blocks, trial, size)
        if _imbalance(result[0], capacities) < before:
            return trial, result
        t *= 0.25
    return None


def _next_potentials(v: np.ndarray, v_band: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Potentials for the next, wider band: the band's own where it had room to assign.

    A column with no capacity left in the band got no constraint there; it keeps its place
    relative to the others (the two vectors are aligned by their median offset).
    """
    if not room.any():
        return v
    offset = float(np.median(v[room] - v_band[room]))
    return np.where(room, v_band, v - offset)


def solve_exact(
    blocks: RowBlocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """An exact optimum of the balanced transport LP on the current cost blocks."""
    n, k = blocks.n_samples, capacities.n_clusters
    limit = n if options.max_band is None else min(n, options.max_band)
    size = min(limit, max(_MIN_BAND, 64 * k))
    stride = -(-n // _SAMPLE)
    cold = potentials is None
    v = np.zeros(k) if cold else np.asarray(potentials, dtype=np.float64)
    gathered = _gather(blocks, v, size, stride if cold else 0)
    counts, rows, _, labels, costs, sample = gathered
    steps = 0
    imbalance = _imbalance(counts, capacities)
    if k > 1 and (cold or imbalance > _REFINE * n):
        if not cold:  # far from balanced: the warm potentials are refined on a sample too
            sample = _gather(blocks, v, 0, stride)[5]
        v, eps, steps = _refine(sample, capacities, counts, n, potentials, eps)
        gathered = _gather(blocks, v, size)
        counts, rows, _, labels, costs, _ = gathered
        imbalance = _imbalance(counts, capacities)
    # semi-smooth Newton on all rows, the Hessian measured on the gathered rows
    for _ in range(_POLISH_STEPS):
        if k == 1 or imbalance <= size // 16:
            break
        better = _polish(blocks, capacities, v, gathered, size)
        if better is None:
            break
        v, gathered = better
        counts, rows, _, labels, costs, _ = gathered
        imbalance = _imbalance(counts, capacities)
        steps += 1
    retries = 0
    while True:
        wanted = min(limit, max(size, 4 * imbalance + 64 * k))
        if wanted > size:
            size = wanted
            counts, rows, _, labels, costs, _ = _gather(blocks, v, size)
        fixed = counts - np.bincount(labels, minlength=k)
        lower = np.maximum(capacities.lower - fixed, 0)
        upper = capacities.upper - fixed
        m = rows.shape[0]
        v_next = v
        if np.all(upper >= 0) and lower.sum() <= m <= upper.sum():
            left = Capacities(lower, upper)
            if m < n:
                band_labels, v_band = _solve_doubtful(costs, left, options, v, eps)
                v_next = _next_potentials(v, v_band, upper > 0)
            else:  # the band is the whole problem: no recursion
                band_labels = solve_band(costs, left.lower, left.upper)
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
        if size >= limit:
            raise RuntimeError(
                f"the exact repair needs more than max_band={options.max_band} doubtful "
                "points; raise max_band or use method='sinkhorn'"
            )
        # the band was too narrow: centre the next one on the band's potentials, and widen it
        retries += 1
        size = min(limit, 2 * size)
        v = v_next
        imbalance = 0
        counts, rows, _, labels, costs, _ = _gather(blocks, v, size)
