"""Per-chunk kernels: one row block in, small summaries out.

Every solver in the package is written as passes over row blocks.  A pass applies one of the
kernels below to each block (the in-memory path has one block, a Dask array has one per chunk)
and reduces the per-block summaries with the matching ``combine_*`` function.  The summaries are
O(k^2) numbers, so the only state a pass broadcasts is the centers and the k dual potentials.

The hot loops are compiled with numba.  Rows are split into a fixed number of *lanes* that
depend only on the block's row count (never on the thread count), so every sum is accumulated
in the same order on every run: results do not depend on the thread count (the cost kernel may
still vectorise a row's sum differently with a chunk's memory alignment: a last-bit effect).

Cost blocks keep the dtype of X (float32 stays float32); every accumulation is float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

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
                diff = X[i, t] - centers[j, t]
                s += diff * diff
            out[i, j] = s


def cost_block(X: np.ndarray, centers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances ``C_ij = ||x_i - mu_j||^2`` of one row block.

    Computed as sums of squared differences (no ``|x|^2 - 2 x.mu + |mu|^2`` cancellation), in
    the dtype of ``X``.  ``out`` (shape (n, k), X's dtype) is reused when given: a fresh
    array of this size costs page faults on every Lloyd iteration.
    """
    shape = (X.shape[0], centers.shape[0])
    if out is None or out.shape != shape or out.dtype != X.dtype:
        out = np.empty(shape, dtype=X.dtype)
    with _threads_for(X.shape[0]):
        _sqdist(X, np.ascontiguousarray(centers, dtype=X.dtype), out)
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
