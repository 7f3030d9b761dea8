"""Bringing the k potentials close to the exact LP's, with few passes over the data.

The exact repair (:mod:`.exact`) is cheap when few points are in doubt, that is when the
potentials ``v`` nearly solve the dual.  This module gets them there:

- :func:`gather`, the one pass everything here is built on: label counts under ``v``, the
  smallest-gap rows, and (optionally) a hashed row sample;
- Newton on the entropic semi-dual of the sample, ``e`` annealed from a cold start (the
  potentials of a semi-discrete problem depend on the rows' distribution, not their number);
- semi-smooth Newton on all rows: the exact dual's gradient is ``target - counts`` and its
  generalised Hessian the density of points on the cell boundaries, which the smallest-gap
  rows measure (:func:`_polish`).
"""

from __future__ import annotations

import numpy as np

from ..blocks import Blocks, RowBlocks
from ..capacities import Capacities
from ..kernels import combine_doubtful, doubtful_rows, entropic_terms
from .newton import newton_ascent

_ANNEAL = 16.0  # eps shrinks by this factor per stage
_EPS_RANGE = 1e-3  # final eps relative to the first (the repair absorbs the rest)
_START = 4.0  # first eps, in units of the mean top-two cost gap
_SAMPLE = 1 << 17  # rows the entropic Newton runs on
_RESAMPLE = 0.05  # warm potentials misplacing more than this fraction go back to the sample
_POLISH_STEPS = 6  # semi-smooth Newton steps on all rows, at most


def imbalance(counts: np.ndarray, capacities: Capacities) -> int:
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


def _gather_kernel(
    C: np.ndarray,
    v: np.ndarray,
    size: int,
    stride: int,
    quota: np.ndarray | None,
    cut: float | None,
    total: int,
    offset: int,
) -> tuple:
    """Doubtful rows of a block and, when ``stride``, its rows in the sample."""
    if quota is not None:
        # a block sends its share of each cluster's quota (twice it, and a few): the quotas
        # only steer which rows are examined; the certificate decides optimality
        n_total, quota = quota[0], quota[1:]
        share = 2.0 * C.shape[0] / max(int(n_total), 1)
        quota = np.minimum(quota, np.ceil(quota * share).astype(np.int64) + 64)
    m = C.shape[0]
    below = 0
    if cut is not None:
        # by threshold, a block sends at most about its share of the band (twice it, and a
        # few): a wider band than asked for is reported, not shipped
        size = min(size, int(np.ceil(2.0 * size * m / max(int(total), 1))) + 1024)
    doubtful = doubtful_rows(C, v, size, offset, quota, cut)
    if cut is not None:
        below = int(np.count_nonzero(doubtful[2] <= cut))
        if below >= size:  # truncated: count the rows really below the cut
            below = m  # an upper bound is enough to refuse the band
    if stride > 1:
        sample = C[_sampled(offset, m, stride)]
    else:
        sample = C if stride == 1 else C[:0]
    return (*doubtful, np.asarray(sample, dtype=np.float64), below)


def gather(
    blocks: Blocks,
    v: np.ndarray,
    size: int,
    stride: int = 0,
    quota: np.ndarray | None = None,
    cut: float | None = None,
) -> tuple:
    """One pass: label counts, the ``size`` smallest-gap rows (and the ``quota[j]`` smallest
    of every cluster ``j``), and the strided sample.

    With ``cut``, the rows whose gap is at most ``cut`` instead (``size`` of them at most):
    a wide band is gathered by threshold, so that a chunk sends only its own share of it
    rather than up to ``size`` rows.
    """
    shares = None if quota is None else np.concatenate([[blocks.n_samples], quota])
    *gathered, below = blocks.reduce(
        _gather_kernel,
        _GatherCombine(size, quota),
        v,
        size,
        stride,
        shares,
        cut,
        blocks.n_samples,
        with_offset=True,
    )
    if cut is not None and below > size:
        raise BandOverflow(below)
    return tuple(gathered)


class BandOverflow(Exception):
    """A band gathered by threshold would hold more rows than allowed."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows


class _GatherCombine:
    """The (closed) combine of :func:`gather`'s summaries; a class so that it pickles."""

    def __init__(self, size: int, quota: np.ndarray | None) -> None:
        self.size, self.quota = size, quota

    def __call__(self, parts: list[tuple]) -> tuple:
        sample = np.concatenate([p[5] for p in parts])
        below = sum(p[6] for p in parts)
        return (*combine_doubtful([p[:5] for p in parts], self.size, self.quota), sample, below)


def _refine_on_sample(
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
    # the scale of the problem is how far a point's nearest center beats the next one; the
    # annealing starts a few times above it (a row's plan then spreads over a few columns,
    # not all k: the Hessian stays cheap for large k)
    if m and sample.shape[1] > 1:
        top = np.partition(sample, 1, axis=1)[:, :2]
        spread = float((top[:, 1] - top[:, 0]).mean())
    else:
        spread = 1.0
    eps_min = _START * max(spread, 1e-300) * _EPS_RANGE
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


def _polish(
    blocks: Blocks, capacities: Capacities, v: np.ndarray, gathered: tuple, size: int
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
    if not np.all(np.isfinite(system)):
        return None  # a band of (near) ties: eps underflows, no curvature to measure
    grad = capacities.target(counts) - counts
    try:
        direction = np.linalg.lstsq(system, grad, rcond=None)[0]
    except np.linalg.LinAlgError:
        return None
    before = imbalance(counts, capacities)
    t = 1.0
    for _ in range(3):
        trial = v + t * direction
        result = gather(blocks, trial, size)
        if imbalance(result[0], capacities) < before:
            return trial, result
        t *= 0.25
    return None


def approach(
    blocks: Blocks,
    capacities: Capacities,
    potentials: np.ndarray | None,
    eps: float | None,
    size: int,
) -> tuple[np.ndarray, float | None, int, tuple]:
    """Potentials close enough to the optimum that ``size`` doubtful rows should repair them.

    Returns ``(v, eps, newton_steps, gathered)`` where ``gathered`` is :func:`gather`'s
    summary at ``v`` (counts, rows, gaps, labels, costs of the ``size`` smallest-gap rows).
    """
    n, k = blocks.n_samples, capacities.n_clusters
    stride = -(-n // _SAMPLE)
    cold = potentials is None
    v = np.zeros(k) if cold else np.asarray(potentials, dtype=np.float64)
    gathered = gather(blocks, v, size, stride if cold else 0)
    steps = 0
    if k > 1 and (cold or imbalance(gathered[0], capacities) > _RESAMPLE * n):
        sample = gathered[5] if cold else gather(blocks, v, 0, stride)[5]
        start = (v, (*gathered[:5], gathered[5][:0]))
        v, eps, steps = _refine_on_sample(sample, capacities, gathered[0], n, potentials, eps)
        gathered = gather(blocks, v, size)
        if imbalance(gathered[0], capacities) > imbalance(start[1][0], capacities):
            # the sample misled Newton (e.g. well separated clusters: no curvature between
            # them); the starting potentials were better
            v, gathered = start
    for _ in range(_POLISH_STEPS):
        # the repair absorbs an imbalance of up to about a quarter of the band: a full pass
        # per Newton step only pays when the band is far off
        if k == 1 or 4 * imbalance(gathered[0], capacities) + 64 * k <= size:
            break
        better = _polish(blocks, capacities, v, gathered, size)
        if better is None:
            break
        v, gathered = better
        steps += 1
    return v, eps, steps, gathered
