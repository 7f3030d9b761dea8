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

The kernels that read X (:func:`cost_block`, :func:`assignment_terms`, :func:`label_sums`,
:func:`rounded_plan_terms`) take a ``scipy.sparse`` CSR block too: they hand it to their twin in
:mod:`ballot_dask.sparse`, which reads the block's nonzeros and never densifies it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numba
import numpy as np
from scipy.sparse import issparse

from .jit import njit

_LANE_ROWS = 4096
_MAX_LANES = 64
_PARALLEL_ROWS = 32768  # smaller blocks run on one thread: a parallel region costs more


_LANE_CELLS = 1 << 22  # per-lane accumulators stay under 32 MB in all


def _n_lanes(m: int, cells: int = 1) -> int:
    """Lanes for a block of ``m`` rows: a function of the shapes only, so sums are always
    accumulated in the same order; fewer when each lane holds many (``cells``) numbers (then
    a power of two: three lanes on two threads would take two lanes' time)."""
    cap = max(1, min(_MAX_LANES, _LANE_CELLS // max(cells, 1)))
    cap = 1 << (cap.bit_length() - 1)  # a power of two: lanes split evenly over the threads
    return int(min(max(1, math.ceil(m / _LANE_ROWS)), cap))


@contextmanager
def _threads_for(rows: int, blas: bool = False) -> Iterator[None]:
    """One thread for a small block.  Starting a parallel region on a busy machine can cost
    milliseconds (threads spin at its barrier), more than the work on a few thousand rows.

    With ``blas`` (the region calls BLAS from its threads), BLAS runs single-threaded inside
    it: its own threads would contend with the region's (several times slower)."""
    with ExitStack() as stack:
        if blas and rows >= _PARALLEL_ROWS and numba.get_num_threads() > 1:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1, user_api="blas"))
        if rows >= _PARALLEL_ROWS:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


#: from this many multiply-adds per row (k * d), costs go through BLAS (measured here: the
#: direct loop, vectorised over the centers, is as fast below k = 64, d = 64)
_BLAS_WORK = (1 << 12) - 1
#: a slab's float64 costs take at most this many cells
_SLAB_CELLS = 1 << 16


def slab_rows(k: int, blas: bool = False) -> int:
    """Rows per slab of the cost computation for ``k`` clusters (a function of the shapes
    only, so every pass computes a row's costs with the same arithmetic); BLAS wants tall
    slabs."""
    low = 1024 if blas else 64
    return max(low, min(4096, _SLAB_CELLS // max(k, 1)))


def lane_workers(lanes: int) -> int:
    """Threads a compiled kernel's lanes are spread over (call inside :func:`_threads_for`):
    each thread works through its lanes one after another with one cost buffer, instead of a
    buffer per lane (a block has dozens of lanes; where freed memory goes back to the system
    at once, as a Dask nanny's ``MALLOC_TRIM_THRESHOLD_`` makes it, a buffer per lane cost a
    pass its page faults: the exact pass on 250 000 rows took 39 ms instead of 19 ms).  The
    lanes, hence the results, do not depend on it."""
    return max(1, min(numba.get_num_threads(), lanes))


@njit()
def slab_costs(X, lo, hi, mu_t, mu_ct, mu_sq, mean, use_dot, out):  # pragma: no cover
    """``out[:hi-lo] = ||x_i - mu_j||^2`` for rows ``lo <= i < hi`` of X, float64.

    Small ``k * d``: sums of squared differences (exact zeros, no cancellation), vectorised
    over the centers so that every cost is accumulated in the same order (no reassociation:
    the same row gets the same costs in every pass).  Beyond: ``||x - m||^2 - 2 (x - m).(mu
    - m) + ||mu - m||^2`` by BLAS, ``m`` the centers' mean (the expansion then does not cancel
    far from the origin: the error stays about ``d`` roundings of the costs' own scale).
    ``mu_t`` and ``mu_ct`` are the centers and the centred centers, transposed (d, k).
    """
    s = hi - lo
    d, k = mu_t.shape
    if use_dot:
        xs = np.empty((s, d))
        xsq = np.zeros(s)
        for r in range(s):
            for t in range(d):
                z = np.float64(X[lo + r, t]) - mean[t]
                xs[r, t] = z
                xsq[r] += z * z
        prod = np.dot(xs, mu_ct)
        for r in range(s):
            for j in range(k):
                c = xsq[r] - 2.0 * prod[r, j] + mu_sq[j]
                out[r, j] = c if c > 0.0 else 0.0
    else:
        for r in range(s):
            for j in range(k):
                out[r, j] = 0.0
            for t in range(d):
                xt = np.float64(X[lo + r, t])
                for j in range(k):
                    diff = xt - mu_t[t, j]
                    out[r, j] += diff * diff


def prepared_centers(X: np.ndarray, centers: np.ndarray) -> tuple:
    """The centers as :func:`slab_costs` takes them: rounded to X's dtype then float64 and
    transposed, the centred copy (transposed) and its squared norms, the mean, and whether to
    use BLAS."""
    mu = np.asarray(centers, dtype=X.dtype).astype(np.float64)
    mean = mu.mean(axis=0) if mu.shape[0] else np.zeros(mu.shape[1])
    mu_c = mu - mean
    mu_sq = np.einsum("ij,ij->i", mu_c, mu_c)
    use_dot = bool(mu.shape[0] * mu.shape[1] > _BLAS_WORK)
    return np.ascontiguousarray(mu.T), np.ascontiguousarray(mu_c.T), mu_sq, mean, use_dot


@njit(parallel=True)
def _costs(X, mu_t, mu_ct, mu_sq, mean, use_dot, out, slab):  # pragma: no cover - compiled
    m = X.shape[0]
    n_slabs = (m + slab - 1) // slab
    for b in numba.prange(n_slabs):
        lo = b * slab
        hi = min(m, lo + slab)
        slab_costs(X, lo, hi, mu_t, mu_ct, mu_sq, mean, use_dot, out[lo:hi])


def cost_block(X: np.ndarray, centers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances ``C_ij = ||x_i - mu_j||^2`` of one row block, float64.

    The centers are rounded to the dtype of ``X`` first (the fitted centers are stored in
    it); see :func:`slab_costs` for the arithmetic, shared by every pass of the package.
    ``out`` (shape (n, k), float64) is reused when given: a fresh array of this size costs
    page faults on every Lloyd iteration.  A sparse block goes to
    :func:`~ballot_dask.sparse.cost_block_csr`.
    """
    if issparse(X):
        from .sparse import cost_block_csr

        return cost_block_csr(X, centers, out)
    shape = (X.shape[0], centers.shape[0])
    if out is None or out.shape != shape or out.dtype != np.float64:
        out = np.empty(shape, dtype=np.float64)
    if X.shape[0]:
        mu_t, mu_ct, mu_sq, mean, use_dot = prepared_centers(X, centers)
        with _threads_for(X.shape[0], blas=use_dot):
            _costs(X, mu_t, mu_ct, mu_sq, mean, use_dot, out, slab_rows(centers.shape[0], use_dot))
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


@njit(parallel=True)
def _runner_up(C, v, labels, second, gaps, n_lanes):  # pragma: no cover - compiled
    m, k = C.shape
    step = (m + n_lanes - 1) // n_lanes
    for lane in numba.prange(n_lanes):
        for i in range(lane * step, min(m, (lane + 1) * step)):
            b1 = np.inf
            b2 = np.inf
            a = 0
            s = -1
            for j in range(k):
                r = C[i, j] - v[j]
                if r < b1:
                    b2 = b1
                    s = a if b1 < np.inf else -1
                    b1 = r
                    a = j
                elif r < b2:
                    b2 = r
                    s = j
            labels[i] = a
            second[i] = s
            gaps[i] = b2 - b1


def reduced_cost_runner_up(
    C: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`reduced_cost_labels` with each row's runner-up: ``(labels, second, gaps)``.

    ``second[i]`` is the column of row ``i``'s second smallest reduced cost (``-1`` with one
    column) and ``gaps[i]`` the difference of the two.  Ties go to the lowest index, as in
    :func:`reduced_cost_labels`."""
    m = C.shape[0]
    labels = np.empty(m, dtype=np.int64)
    second = np.empty(m, dtype=np.int64)
    gaps = np.empty(m, dtype=np.float64)
    with _threads_for(m):
        _runner_up(C, np.asarray(v, dtype=np.float64), labels, second, gaps, _n_lanes(m))
    return labels, second, gaps


_EXP_FLOOR = -700.0  # exp() below this is 0 for our sums; skipping it avoids slow denormals
#: plan entries below this are left out of the Newton Hessian (not of the gradient): a row's
#: support then holds a few columns, and the k x k outer product costs far less than k^2
_HESSIAN_FLOOR = 1e-6


@njit(inline="always")
def _exp(x):  # pragma: no cover - compiled
    return math.exp(x) if x > _EXP_FLOOR else 0.0


@njit(parallel=True)
def _entropic(C, v, eps, hessian, n_lanes, X):  # pragma: no cover - compiled
    m, k = C.shape
    d = X.shape[1]
    moments = X.shape[0] == m and m > 0  # else X has no rows: no moments
    px = np.zeros((n_lanes, k, d if moments else 0))
    pc = np.zeros((n_lanes, k, k if moments else 0))
    column_costs = np.zeros((n_lanes, k))
    coords = np.zeros((n_lanes, d))
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
            if moments:
                for t in range(d):
                    coords[lane, t] += X[i, t]
                for j in range(k):
                    column_costs[lane, j] += C[i, j]
                    pj = p[j]
                    if pj > 0.0:
                        for t in range(d):
                            px[lane, j, t] += pj * X[i, t]
                        for b in range(k):
                            pc[lane, j, b] += pj * C[i, b]
            if hessian:
                # only the row's non-negligible entries (see _HESSIAN_FLOOR)
                nnz = 0
                for j in range(k):
                    if p[j] > _HESSIAN_FLOOR:
                        support[nnz] = j
                        nnz += 1
                for x in range(nnz):
                    a = support[x]
                    pa = p[a]
                    for y in range(nnz):
                        b = support[y]
                        ptp[lane, a, b] += pa * p[b]
    return value, direct, lse_max, lse_sum, ptp, px, pc, column_costs, coords


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
            C, np.asarray(v, dtype=np.float64), float(eps), hessian, lanes, _NO_ROWS
        )[:5]
    with np.errstate(divide="ignore"):
        logcol = np.logaddexp(np.log(direct.sum(axis=0)), _merge_lse(lmax, lsum))
    return float(value.sum()), logcol, (ptp.sum(axis=0) if hessian else None)


def plan_rows(C: np.ndarray, v: np.ndarray, eps: float) -> np.ndarray:
    """Rows of the entropic plan, each normalised to sum to one (soft labels), float64.

    ``P_ij = softmax_j((v_j - C_ij) / eps)``: the plan of :func:`entropic_terms` with its row
    potentials recomputed from ``v``, divided by the row mass.  The row maximum is subtracted
    before the division by ``eps``, so every exponent is ``<= 0`` with one ``0`` per row: no
    overflow, and the row sum is at least one whatever ``eps`` (a tiny ``eps`` gives the
    one-hot labels of :func:`reduced_cost_labels`, ties split evenly).
    """
    P = np.subtract(np.asarray(v, dtype=np.float64), C, dtype=np.float64)
    if P.size:
        P -= P.max(axis=1, keepdims=True)
        with np.errstate(over="ignore", under="ignore"):  # -inf then 0: the intended limit
            P /= eps
            np.exp(P, out=P)
        P /= P.sum(axis=1, keepdims=True)
    return P


#: rows of a slab of :func:`plan_moments` on CSR rows (its plan rows are ``slab x k``)
_MOMENT_ROWS = 8192
_NO_ROWS = np.empty((0, 0))  # the X of an entropic pass without moments


def entropic_moment_terms(
    X: Any, C: np.ndarray, v: np.ndarray, eps: float
) -> tuple[float, np.ndarray, np.ndarray, tuple]:
    """:func:`entropic_terms` (with the Hessian) and :func:`plan_moments` of a block, in one
    sweep of its rows (dense X; CSR rows: the moments in a second sweep)."""
    if issparse(X):
        value, logcol, ptp = entropic_terms(C, v, eps, True)
        assert ptp is not None
        return value, logcol, ptp, plan_moments(X, C, v, eps)
    lanes = _n_lanes(C.shape[0], C.shape[1] * (2 * C.shape[1] + X.shape[1]))
    with _threads_for(C.shape[0]):
        value, direct, lmax, lsum, ptp, px, pc, costs, coords = _entropic(
            C, np.asarray(v, dtype=np.float64), float(eps), True, lanes, X
        )
    with np.errstate(divide="ignore"):
        logcol = np.logaddexp(np.log(direct.sum(axis=0)), _merge_lse(lmax, lsum))
    moments = (px.sum(axis=0), pc.sum(axis=0), costs.sum(axis=0), coords.sum(axis=0))
    return float(value.sum()), logcol, ptp.sum(axis=0), moments


def plan_moments(
    X: Any, C: np.ndarray, v: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block's moments of the entropic plan, from which its rounding follows in closed
    form (:func:`ballot_dask.solvers.sinkhorn.rounded_moments`).

    With ``P_i`` the rows of :func:`plan_rows`, returns ``sum_i P_ij x_i`` (k, d), ``sum_i
    P_il C_ij`` (k, k; row ``l``, column ``j``), the column cost sums ``sum_i C_ij`` (k,) and
    the coordinate sums ``sum_i x_i`` (d,), float64.  Slab by slab (``_MOMENT_ROWS`` rows),
    the products through BLAS; ``X`` may be CSR (a dense X takes the compiled sweep of
    :func:`entropic_moment_terms`).
    """
    m, k = C.shape
    d = X.shape[1]
    px = np.zeros((k, d))
    pc = np.zeros((k, k))
    for lo in range(0, m, _MOMENT_ROWS):
        hi = min(lo + _MOMENT_ROWS, m)
        P = plan_rows(C[lo:hi], v, eps)
        rows = X[lo:hi]
        if issparse(rows):
            px += np.asarray((rows.T @ P).T)
        else:
            px += P.T @ np.asarray(rows, dtype=np.float64)
        pc += P.T @ C[lo:hi]
    if issparse(X):  # (scipy sums a float32 matrix in float32, whatever the dtype asked)
        csr = X.tocsr()
        coords = np.bincount(csr.indices, csr.data.astype(np.float64), minlength=d)
    else:
        coords = np.asarray(X, dtype=np.float64).sum(axis=0)
    return px, pc, C.sum(axis=0), coords


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
    if issparse(X):
        from .sparse import assignment_terms_csr

        return assignment_terms_csr(
            X,
            C,
            np.asarray(labels, dtype=np.int64),
            np.asarray(potentials, dtype=np.float64),
            np.asarray(rows, dtype=np.int64),
        )
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


@njit(inline="always")
def _rounded_row(C, v, eps, scale, deficit, i, g):  # pragma: no cover - compiled
    """Row ``i`` of the rounded plan into ``g`` (k,); returns its argmax (the label)."""
    k = C.shape[1]
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
    return best


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
            best = _rounded_row(C, v, eps, scale, deficit, i, g)
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


@njit()
def _label_sums(X, labels, sums):  # pragma: no cover - compiled
    for i in range(X.shape[0]):
        a = labels[i]
        for t in range(X.shape[1]):
            sums[a, t] += X[i, t]


def label_sums(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``sums[j] = sum of the rows of X labelled j`` (k, d), float64 (X dense or sparse)."""
    if issparse(X):
        from .sparse import label_sums_csr

        return label_sums_csr(X, labels, k)
    sums = np.zeros((k, X.shape[1]))
    if X.shape[0]:
        _label_sums(X, np.asarray(labels, dtype=np.int64), sums)
    return sums


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
    if issparse(X):
        from .sparse import rounded_plan_terms_csr

        return rounded_plan_terms_csr(X, C, v, eps, scale, deficit)
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
