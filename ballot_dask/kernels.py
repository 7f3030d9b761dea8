"""Per-chunk kernels: one row block in, small summaries out.

Every solver in the package is written as passes over row blocks.  A pass applies one of the
kernels below to each block (the in-memory path has one block, a Dask array has one per chunk)
and reduces the per-block summaries with the matching ``combine_*`` function.  The summaries are
O(k^2) numbers, so the only state a pass broadcasts is the centers and the k dual potentials.

The hot loops are compiled with numba.  Rows are split into a fixed number of *lanes* that
depend only on the block's row count (never on the thread count), so every sum is accumulated
in the same order on every run: results do not depend on the thread count (the cost kernel may
still vectorise a row's sum differently with a chunk's memory alignment: a last-bit effect).

Cost blocks are float64 whatever the dtype of X: the centers are first rounded to X's dtype
(the fitted centers are stored in it), then the distances are computed in float64 from those
values, which float64 holds exactly.  The optimality certificate is therefore a statement
about float64 costs, to round-off of order 1e-16 of the costs; every accumulation is float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numba
import numpy as np

from .jit import njit

_LANE_ROWS = 4096
_MAX_LANES = 64
_PARALLEL_ROWS = 32768  # smaller blocks run on one thread: a parallel region costs more


_LANE_CELLS = 1 << 22  # per-lane accumulators stay under 32 MB in all


def _n_lanes(m: int, cells: int = 1) -> int:
    """Lanes for a block of ``m`` rows: a function of the shapes only, so sums are always
    accumulated in the same order; fewer when each lane holds many (``cells``) numbers."""
    cap = max(1, min(_MAX_LANES, _LANE_CELLS // max(cells, 1)))
    return int(min(max(1, math.ceil(m / _LANE_ROWS)), cap))


@contextmanager
def _threads_for(rows: int) -> Iterator[None]:
    """One thread for a small block.  Starting a parallel region on a busy machine can cost
    milliseconds (threads spin at its barrier), more than the work on a few thousand rows."""
    if rows >= _PARALLEL_ROWS:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@njit(parallel=True, fastmath={"contract", "arcp", "reassoc"})
def _sqdist(X, centers, out):  # pragma: no cover - compiled
    m, d = X.shape
    k = centers.shape[0]
    for i in numba.prange(m):
        for j in range(k):
            s = 0.0
            for t in range(d):
                diff = np.float64(X[i, t]) - centers[j, t]
                s += diff * diff
            out[i, j] = s


#: above this many multiply-adds per row (k * d), costs go through BLAS
_BLAS_WORK = 1 << 12
#: rows per BLAS slab: bounds the float64 copy of a float32 block
_BLAS_ROWS = 8192


def cost_block(X: np.ndarray, centers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances ``C_ij = ||x_i - mu_j||^2`` of one row block, float64.

    The centers are rounded to the dtype of ``X`` first (the fitted centers are stored in it).
    For small ``k * d`` the distances are sums of squared differences (exact zeros, no
    cancellation); beyond, ``||x - m||^2 - 2 (x - m).(mu - m) + ||mu - m||^2`` by BLAS, with
    ``m`` the mean of the centers (so that the expansion does not cancel far from the origin:
    the absolute error stays about ``d`` roundings of the costs' own scale).  ``out`` (shape
    (n, k), float64) is reused when given: a fresh array of this size costs page faults on
    every Lloyd iteration.
    """
    shape = (X.shape[0], centers.shape[0])
    if out is None or out.shape != shape or out.dtype != np.float64:
        out = np.empty(shape, dtype=np.float64)
    mu = np.asarray(centers, dtype=X.dtype).astype(np.float64)
    if centers.shape[0] * X.shape[1] <= _BLAS_WORK or X.shape[0] == 0:
        with _threads_for(X.shape[0]):
            _sqdist(X, np.ascontiguousarray(mu), out)
        return out
    mean = mu.mean(axis=0)
    mu = mu - mean
    mu_sq = np.einsum("ij,ij->i", mu, mu)
    for start in range(0, X.shape[0], _BLAS_ROWS):
        xs = np.asarray(X[start : start + _BLAS_ROWS], dtype=np.float64) - mean
        block = out[start : start + xs.shape[0]]
        np.matmul(xs, mu.T, out=block)
        block *= -2.0
        block += np.einsum("ij,ij->i", xs, xs)[:, None]
        block += mu_sq[None, :]
        np.maximum(block, 0.0, out=block)
    return out


@njit(inline="always")
def _best_two(C, v, i):  # pragma: no cover - compiled
    """Row ``i``'s reduced-cost argmin (lowest index on ties), minimum and second minimum."""
    b1 = np.inf
    b2 = np.inf
    a = 0
    for j in range(C.shape[1]):
        r = C[i, j] - v[j]
        a = j if r < b1 else a
        b2 = min(b2, max(b1, r))  # branch-free top two
        b1 = min(b1, r)
    return a, b1, b2


@njit(parallel=True)
def _top_two(C, v, labels, gaps, n_lanes):  # pragma: no cover - compiled
    m, k = C.shape
    counts = np.zeros((n_lanes, k), dtype=np.int64)
    step = (m + n_lanes - 1) // n_lanes
    write_labels = labels.shape[0] == m
    for lane in numba.prange(n_lanes):
        for i in range(lane * step, min(m, (lane + 1) * step)):
            a, b1, b2 = _best_two(C, v, i)
            counts[lane, a] += 1
            gaps[i] = b2 - b1
            if write_labels:
                labels[i] = a
    return counts


@njit(parallel=True)
def _top_two_pairs(C, v, labels, second, gaps):  # pragma: no cover - compiled
    m, k = C.shape
    for i in numba.prange(m):
        b1 = np.inf
        b2 = np.inf
        a = 0
        a2 = 0
        for j in range(k):
            r = C[i, j] - v[j]
            if r < b1:
                b2 = b1
                a2 = a
                b1 = r
                a = j
            elif r < b2:
                b2 = r
                a2 = j
        labels[i] = a
        second[i] = a2 if k > 1 else a
        gaps[i] = b2 - b1


@njit()
def _boundary_band(labels, second, gaps, k, size):  # pragma: no cover - compiled
    """Rows of a band of about ``size`` rows that reaches every cell boundary: the ``r``
    smallest-gap rows of every (label, second label) pair, ``r`` the smallest rank that
    gathers ``size`` rows in all."""
    m = labels.shape[0]
    pairs = k * k
    counts = np.zeros(pairs, np.int64)
    for i in range(m):
        counts[labels[i] * k + second[i]] += 1
    present = np.sort(counts[counts > 0])
    # total(r) = sum(min(count, r)): find the smallest r with total(r) >= size
    r = 0
    below = 0  # sum of the counts smaller than the candidate r
    t = 0
    n_present = present.shape[0]
    while t < n_present:
        # with r at most present[t], every pair from t on gives r rows
        need = size - below
        full = n_present - t
        if present[t] * full >= need:
            r = max(1, -(-need // full))
            break
        below += present[t]
        t += 1
    if t == n_present:
        r = m  # every row
    # bucket the rows by pair, then keep the r smallest gaps of each bucket
    starts = np.zeros(pairs + 1, np.int64)
    for p in range(pairs):
        starts[p + 1] = starts[p] + counts[p]
    fill = starts[:-1].copy()
    order = np.empty(m, np.int64)
    for i in range(m):
        p = labels[i] * k + second[i]
        order[fill[p]] = i
        fill[p] += 1
    keep = np.zeros(m, np.bool_)
    for p in range(pairs):
        lo = starts[p]
        hi = starts[p + 1]
        if hi - lo <= r:
            for q in range(lo, hi):
                keep[order[q]] = True
            continue
        bucket = np.empty(hi - lo)
        for q in range(lo, hi):
            bucket[q - lo] = gaps[order[q]]
        cut = np.partition(bucket, r - 1)[r - 1]
        taken = 0
        for q in range(lo, hi):  # below the cut, then ties with it up to r
            if gaps[order[q]] < cut:
                keep[order[q]] = True
                taken += 1
        for q in range(lo, hi):
            if taken >= r:
                break
            if gaps[order[q]] == cut:
                keep[order[q]] = True
                taken += 1
    return np.flatnonzero(keep)


def reduced_cost_labels(C: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``argmin_j (C_ij - v_j)`` (a power diagram) and the top-two reduced-cost gaps.

    A point whose gap is large keeps its label under any small change of the potentials; only
    points with a small gap are in doubt.  With one column the gap is ``inf``.
    """
    m = C.shape[0]
    labels = np.empty(m, dtype=np.int64)
    gaps = np.empty(m, dtype=np.float64)
    with _threads_for(m):
        _top_two(C, np.asarray(v, dtype=np.float64), labels, gaps, _n_lanes(m))
    return labels, gaps


_EXP_FLOOR = -700.0  # exp() below this is 0 for our sums; skipping it avoids slow denormals


@njit(inline="always")
def _exp(x):  # pragma: no cover - compiled
    return math.exp(x) if x > _EXP_FLOOR else 0.0


@njit(parallel=True)
def _entropic(C, v, eps, hessian, n_lanes):  # pragma: no cover - compiled
    m, k = C.shape
    value = np.zeros(n_lanes)
    direct = np.zeros((n_lanes, k))
    lse_max = np.full((n_lanes, k), -np.inf)
    lse_sum = np.zeros((n_lanes, k))
    ptp = np.zeros((n_lanes, k, k)) if hessian else np.zeros((n_lanes, 1, 1))
    step = (m + n_lanes - 1) // n_lanes
    for lane in numba.prange(n_lanes):
        z = np.empty(k)
        p = np.empty(k)
        support = np.empty(k, dtype=np.int64)
        for i in range(lane * step, min(m, (lane + 1) * step)):
            rmin = np.inf
            for j in range(k):
                r = C[i, j] - v[j]
                z[j] = r
                if r < rmin:
                    rmin = r
            s = 0.0
            for j in range(k):
                z[j] = (rmin - z[j]) / eps  # <= 0: no overflow
                p[j] = _exp(z[j])
                s += p[j]
            logs = math.log(s)  # s >= 1: the minimising column contributes exp(0)
            value[lane] += rmin - eps * logs
            for j in range(k):
                if p[j] > 0.0:
                    p[j] /= s
                    direct[lane, j] += p[j]
                else:
                    # exp underflows: keep the entry in the log domain (online log-sum-exp),
                    # so that a column whose every entry is tiny keeps its true mass
                    lp = z[j] - logs
                    top = lse_max[lane, j]
                    if lp > top:
                        lse_sum[lane, j] = lse_sum[lane, j] * _exp(top - lp) + 1.0
                        lse_max[lane, j] = lp
                    elif lp > top + _EXP_FLOOR:
                        lse_sum[lane, j] += math.exp(lp - top)
            if hessian:
                # only the row's non-negligible entries: at small eps a row of the plan has
                # a handful, so the k x k outer product costs far less than k^2
                nnz = 0
                for j in range(k):
                    if p[j] > 1e-17:
                        support[nnz] = j
                        nnz += 1
                for x in range(nnz):
                    a = support[x]
                    pa = p[a]
                    for y in range(nnz):
                        b = support[y]
                        ptp[lane, a, b] += pa * p[b]
    return value, direct, lse_max, lse_sum, ptp


def entropic_terms(
    C: np.ndarray, v: np.ndarray, eps: float, hessian: bool = False
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """One block's part of the entropic semi-dual (DESIGN section 2).

    With ``P_i = softmax_j((v_j - C_ij) / eps)`` (a row of the plan whose row potential is
    recomputed from ``v``), returns

    - ``sum_i u_i`` with ``u_i = -eps log sum_j exp((v_j - C_ij) / eps)``,
    - ``log sum_i P_ij`` for each column (log domain, so tiny ``eps`` cannot underflow),
    - ``sum_i P_i P_i^T`` (k x k) when ``hessian`` is true, else ``None``.
    """
    lanes = _n_lanes(C.shape[0], C.shape[1] ** 2 if hessian else C.shape[1])
    with _threads_for(C.shape[0]):
        value, direct, lmax, lsum, ptp = _entropic(
            C, np.asarray(v, dtype=np.float64), float(eps), hessian, lanes
        )
    with np.errstate(divide="ignore"):
        logcol = np.logaddexp(np.log(direct.sum(axis=0)), _merge_lse(lmax, lsum))
    return float(value.sum()), logcol, (ptp.sum(axis=0) if hessian else None)


def _merge_lse(lmax: np.ndarray, lsum: np.ndarray) -> np.ndarray:
    top = lmax.max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = top + np.log((lsum * np.exp(lmax - top)).sum(axis=0))
    return np.where(np.isfinite(top), out, -np.inf)


def combine_entropic(parts: list[tuple]) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Reduce :func:`entropic_terms` summaries: values and Hessians add, column log-sums
    combine by ``logaddexp``."""
    value = float(sum(p[0] for p in parts))
    logcol = parts[0][1]
    for p in parts[1:]:
        logcol = np.logaddexp(logcol, p[1])
    hessians = [p[2] for p in parts if p[2] is not None]
    return value, logcol, (np.sum(hessians, axis=0) if hessians else None)


@njit(parallel=True)
def _assignment(X, C, v, rows, fixed, n_lanes):  # pragma: no cover - compiled
    m, k = C.shape
    d = X.shape[1]
    counts = np.zeros((n_lanes, k), dtype=np.int64)
    sums = np.zeros((n_lanes, k, d))
    slack = np.full((n_lanes, k, k), np.inf)
    obj = np.zeros(n_lanes)
    step = (m + n_lanes - 1) // n_lanes
    for lane in numba.prange(n_lanes):
        start = lane * step
        p = np.searchsorted(rows, start)  # rows: sorted block-local indices with a fixed label
        for i in range(start, min(m, start + step)):
            if p < rows.shape[0] and rows[p] == i:
                a = fixed[p]
                p += 1
                if a < 0:  # a band row: summarised elsewhere
                    continue
            else:  # the power-diagram label, as reduced_cost_labels gives it
                a = _best_two(C, v, i)[0]
            ca = C[i, a]
            counts[lane, a] += 1
            obj[lane] += ca
            for t in range(d):
                sums[lane, a, t] += X[i, t]
            for j in range(k):
                r = C[i, j] - ca
                if r < slack[lane, a, j]:
                    slack[lane, a, j] = r
    return counts, sums, slack, obj


def assignment_terms(
    X: np.ndarray,
    C: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    potentials: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One block's summary of a hard assignment.

    The labels are either given (``labels``), or are the power-diagram labels
    ``argmin_j (C_ij - potentials_j)`` except on the block-local ``rows`` (sorted), which take
    ``labels`` instead: then the labels are never written out, and the block is read once.

    Returns per-cluster ``counts`` (k,), coordinate ``sums`` (k, d) for the centroid update, the
    *slack matrix* ``W[a, j] = min over points i labelled a of (C_ij - C_ia)`` (k x k, ``inf``
    for empty clusters) and the objective ``sum_i C_{i, l_i}``.

    ``W`` is all the certificate needs: potentials ``v`` with ``v_j - v_a <= W[a, j]`` make
    every point's label a minimiser of its reduced cost (cyclical monotonicity).
    """
    m, k = C.shape
    if potentials is None:
        if labels is None:
            raise TypeError("assignment_terms needs labels, or potentials (and rows)")
        potentials, rows = np.zeros(k), np.arange(m)
    elif rows is None:
        rows, labels = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    assert labels is not None
    with _threads_for(m):
        counts, sums, slack, obj = _assignment(
            X,
            C,
            np.asarray(potentials, dtype=np.float64),
            np.asarray(rows, dtype=np.int64),
            np.asarray(labels, dtype=np.int64),
            _n_lanes(m, k * k + k * X.shape[1]),
        )
    return counts.sum(axis=0), sums.sum(axis=0), slack.min(axis=0), float(obj.sum())


@njit(parallel=True)
def _rounded(X, C, v, eps, scale, deficit, labels, n_lanes):  # pragma: no cover - compiled
    m, k = C.shape
    d = X.shape[1]
    mass = np.zeros((n_lanes, k))
    sums = np.zeros((n_lanes, k, d))
    cost = np.zeros(n_lanes)
    hard = np.zeros(n_lanes)
    counts = np.zeros((n_lanes, k), dtype=np.int64)
    step = (m + n_lanes - 1) // n_lanes
    for lane in numba.prange(n_lanes):
        g = np.empty(k)
        for i in range(lane * step, min(m, (lane + 1) * step)):
            rmin = np.inf
            for j in range(k):
                r = C[i, j] - v[j]
                if r < rmin:
                    rmin = r
            s = 0.0
            for j in range(k):
                g[j] = _exp((rmin - (C[i, j] - v[j])) / eps)
                s += g[j]
            kept = 0.0
            for j in range(k):
                g[j] = g[j] / s * scale[j]  # Alg. 2, column scaling (rows are exact already)
                kept += g[j]
            missing = 1.0 - kept  # this row's deficit, spread along the column deficit
            best = 0
            for j in range(k):
                g[j] += missing * deficit[j]
                if g[j] > g[best]:
                    best = j
            labels[i] = best
            counts[lane, best] += 1
            hard[lane] += C[i, best]
            for j in range(k):
                gj = g[j]
                mass[lane, j] += gj
                cost[lane] += gj * C[i, j]
                if gj != 0.0:
                    for t in range(d):
                        sums[lane, j, t] += gj * X[i, t]
    return mass, sums, cost, hard, counts


class BandPass(NamedTuple):
    """One pass of the exact step over a block (or over every block, combined).

    The *band* rows are the ones with the smallest top-two reduced-cost gaps under the
    potentials ``v``, the only ones whose label may change; they are returned whole (costs
    and coordinates).  Every other row is *fixed* at its label ``argmin_j (C_ij - v_j)`` and
    enters only summaries: counts, coordinate sums, objective and slack matrix.
    """

    counts: np.ndarray  #: (k,) int64: fixed rows per cluster
    sums: np.ndarray  #: (k, d) float64: their coordinate sums
    objective: float  #: their costs, summed
    slack: np.ndarray  #: (k, k) ``min over fixed i in a of (C_ib - C_ia)``, ``inf`` if none
    rows: np.ndarray  #: (m,) int64: global indices of the band rows, increasing
    labels: np.ndarray  #: (m,) int64: their labels ``argmin_j (C_ij - v_j)``
    gaps: np.ndarray  #: (m,) float64: their top-two reduced-cost gaps
    costs: np.ndarray  #: (m, k) float64: their cost rows
    x: np.ndarray  #: (m, d): their coordinates (X's dtype)

    @property
    def sizes(self) -> np.ndarray:
        """Cluster sizes under the pass's labels (fixed and band rows)."""
        return self.counts + np.bincount(self.labels, minlength=self.counts.shape[0])


def band_pass(X: np.ndarray, C: np.ndarray, v: np.ndarray, size: int, offset: int = 0) -> BandPass:
    """The exact step's pass over one block: a band of about ``size`` rows (the rows nearest
    to every cell boundary: the smallest gaps of each pair of first and second choices, so
    that a sparse boundary is reached as well as a dense one), the summaries of the others.
    Reads the block twice (labels and gaps, then summaries), X once."""
    m, k = C.shape
    v = np.asarray(v, dtype=np.float64)
    labels = np.empty(m, dtype=np.int64)
    second = np.empty(m, dtype=np.int64)
    gaps = np.empty(m, dtype=np.float64)
    with _threads_for(m):
        _top_two_pairs(C, v, labels, second, gaps)
    if size >= m:
        band = np.arange(m)
    elif size <= 0:
        band = np.zeros(0, dtype=np.int64)
    else:
        band = _boundary_band(labels, second, gaps, k, int(size))
        if band.shape[0] > size:  # the last rank overshoots: drop its largest gaps
            band = np.sort(band[np.argpartition(gaps[band], int(size) - 1)[: int(size)]])
    whole = band.shape[0] == m  # nothing fixed, and no copies of the block
    if whole:
        counts = np.zeros((1, k), dtype=np.int64)
        sums = np.zeros((1, k, X.shape[1]))
        slack = np.full((1, k, k), np.inf)
        obj = np.zeros(1)
    else:
        with _threads_for(m):
            counts, sums, slack, obj = _assignment(
                X,
                C,
                v,
                band.astype(np.int64),
                np.full(band.shape[0], -1, dtype=np.int64),
                _n_lanes(m, k * k + k * X.shape[1]),
            )
    return BandPass(
        counts=counts.sum(axis=0),
        sums=sums.sum(axis=0),
        objective=float(obj.sum()),
        slack=slack.min(axis=0),
        rows=band.astype(np.int64) + offset,
        labels=labels if whole else labels[band],
        gaps=gaps if whole else gaps[band],
        costs=np.ascontiguousarray(C if whole else C[band], dtype=np.float64),
        x=np.ascontiguousarray(X if whole else X[band]),
    )


def label_sums(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``sums[j] = sum of the rows of X labelled j`` (k, d), float64."""
    X64 = np.asarray(X, dtype=np.float64)
    if X64.shape[0] == 0:
        return np.zeros((k, X64.shape[1]))
    return np.stack(
        [np.bincount(labels, weights=X64[:, t], minlength=k) for t in range(X64.shape[1])],
        axis=1,
    ).reshape(k, X64.shape[1])


def combine_band(parts: list[BandPass]) -> BandPass:
    """Reduce :func:`band_pass` summaries (closed: a part in, a part out; parts in row order)."""
    if len(parts) == 1:
        return parts[0]
    return BandPass(
        counts=np.sum([p.counts for p in parts], axis=0),
        sums=np.sum([p.sums for p in parts], axis=0),
        objective=float(sum(p.objective for p in parts)),
        slack=np.min([p.slack for p in parts], axis=0),
        rows=np.concatenate([p.rows for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        gaps=np.concatenate([p.gaps for p in parts]),
        costs=np.concatenate([p.costs for p in parts]),
        x=np.concatenate([p.x for p in parts]),
    )


def rounded_plan_terms(
    X: np.ndarray,
    C: np.ndarray,
    v: np.ndarray,
    eps: float,
    scale: np.ndarray,
    deficit: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, np.ndarray]:
    """One block of the Altschuler-Weed-Rigollet rounding (their Alg. 2) of the Sinkhorn plan.

    The plan ``P_i = softmax_j((v_j - C_ij) / eps)`` has exact row sums, so the row scaling of
    Alg. 2 is the identity; ``scale`` is the column scaling ``min(c_j / colsum_j, 1)`` and
    ``deficit`` the normalised column deficit ``err_c / ||err_c||_1`` of the scaled plan, both
    k-vectors from a reduction.  Each rounded row ``G_i`` then needs nothing but its own row.

    Returns row-argmax labels of ``G``, the column masses ``sum_i G_i`` (k,), the centroid
    numerators ``sum_i G_ij x_i`` (k, d), the transport cost ``<G, C>``, the cost of the
    argmax labels ``sum_i C_{i, l_i}`` and their counts (k,).
    """
    lanes = _n_lanes(C.shape[0], C.shape[1] * (X.shape[1] + 2))
    labels = np.empty(C.shape[0], dtype=np.int64)
    with _threads_for(C.shape[0]):
        mass, sums, cost, hard, counts = _rounded(
            X,
            C,
            np.asarray(v, dtype=np.float64),
            float(eps),
            np.asarray(scale, dtype=np.float64),
            np.asarray(deficit, dtype=np.float64),
            labels,
            lanes,
        )
    return (
        labels,
        mass.sum(axis=0),
        sums.sum(axis=0),
        float(cost.sum()),
        float(hard.sum()),
        counts.sum(axis=0),
    )


def doubtful_rows(
    C: np.ndarray,
    v: np.ndarray,
    size: int,
    offset: int = 0,
    quota: np.ndarray | None = None,
    cut: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Label one block by reduced cost and keep its ``size`` rows with the smallest gaps
    (with ``cut``: its rows whose gap is at most ``cut``, ``size`` of them at most).

    Returns the block's label ``counts`` (k,) and, for the kept rows, their global ``rows``
    (block ``offset`` added), ``gaps``, ``labels`` and cost rows ``C[rows]`` (size x k).  Rows
    tied with the last kept gap are all kept, so that the global choice made by
    :func:`combine_doubtful` does not depend on how X is chunked.  ``quota`` (k,) also keeps,
    for every cluster ``j``, the ``quota[j]`` smallest-gap rows labelled ``j``: an over-full
    cluster whose boundary is far from every other one still has points to give up.
    """
    m = C.shape[0]
    v = np.asarray(v, dtype=np.float64)
    gaps = np.empty(m, dtype=np.float64)
    per_label = quota is not None and bool(np.any(quota > 0))
    with _threads_for(m):
        all_labels = np.empty(m if per_label else 0, dtype=np.int64)
        counts = _top_two(C, v, all_labels, gaps, _n_lanes(m)).sum(axis=0)
    if cut is None:
        keep = _smallest(gaps, size)
    else:
        keep = np.flatnonzero(gaps <= cut)
        if keep.shape[0] > size:
            keep = keep[_smallest(gaps[keep], size)]
    if per_label:
        assert quota is not None
        extra = [
            members[_smallest(gaps[members], int(q))]
            for j, q in enumerate(quota)
            if q > 0 and (members := np.flatnonzero(all_labels == j)).size
        ]
        keep = np.unique(np.concatenate([keep, *extra]))
    costs = np.asarray(C[keep], dtype=np.float64)
    labels = np.argmin(costs - v, axis=1) if keep.size else np.zeros(0, dtype=np.int64)
    return counts, keep + offset, gaps[keep], labels, costs


def _smallest(gaps: np.ndarray, size: int) -> np.ndarray:
    """Indices of the ``size`` smallest gaps, with every gap tied with the last one.

    A cut is first guessed from every 16th gap, a little above the wanted quantile, so that
    the exact selection runs on a few times ``size`` values rather than on the whole block.
    """
    m = gaps.shape[0]
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    if size >= m:
        return np.arange(m)
    candidates = np.arange(m)
    sample = gaps[::16]
    q = int(sample.shape[0] * size / m * 1.5) + 16
    if q < sample.shape[0]:
        guess = np.flatnonzero(gaps <= np.partition(sample, q)[q])
        if guess.shape[0] >= size:
            candidates = guess
    chosen = gaps[candidates]
    cut = np.partition(chosen, size - 1)[size - 1]
    return candidates[chosen <= cut]


def combine_doubtful(parts: list[tuple], size: int, quota: np.ndarray | None = None) -> tuple:
    """Reduce :func:`doubtful_rows` summaries: sum the counts, keep the ``size`` smallest gaps
    (and the ``quota[j]`` smallest of every cluster ``j``).

    Ties are broken by the global row index, so the result is the same for any chunking.
    """
    counts = sum(p[0] for p in parts)
    rows = np.concatenate([p[1] for p in parts])
    gaps = np.concatenate([p[2] for p in parts])
    labels = np.concatenate([p[3] for p in parts])
    costs = np.concatenate([p[4] for p in parts])
    order = np.lexsort((rows, gaps))
    chosen = order[:size]
    if quota is not None and np.any(quota > 0):
        ranked = labels[order]
        # rank of every row among the rows of its own cluster, in (gap, row) order
        first = np.zeros(ranked.shape[0], dtype=np.int64)
        for j in np.unique(ranked):
            where = np.flatnonzero(ranked == j)
            first[where] = np.arange(where.shape[0])
        within = first < np.asarray(quota)[ranked]
        chosen = np.union1d(chosen, order[within])
        chosen = chosen[np.lexsort((rows[chosen], gaps[chosen]))]
    return counts, rows[chosen], gaps[chosen], labels[chosen], costs[chosen]
