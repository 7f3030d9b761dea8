"""The entropic plan's per-chunk kernels: E-BalLOT's passes and soft memberships.

With ``P_i = softmax_j((v_j - C_ij) / eps)`` (a row of the plan whose row potential is
recomputed from the k column potentials ``v``): the semi-dual's terms and its Hessian
(:func:`entropic_terms`, Newton's and Sinkhorn's passes), the plan's rows
(:func:`plan_rows`, ``predict_proba``), its moments (:func:`plan_moments`, from which its
rounding follows in closed form) and the Altschuler-Weed-Rigollet rounding itself
(:func:`rounded_plan_terms`).  Lanes, slabs and float64 accumulation as in
:mod:`ballot_dask.kernels`.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from scipy.sparse import issparse

from .jit import njit, read_only
from .kernels import _EXP_FLOOR, _exp, _n_lanes, _threads_for, lane_workers

#: a pass's plan moments and Newton Hessian are slab products through BLAS (a slab of dense
#: plan rows against itself, its rows of X and of C) for every row up to this many
#: clusters.  Beyond, a row whose support (the entries above ``_HESSIAN_FLOOR``, with the
#: moments ``_MOMENT_FLOOR``) holds at most ``k / _SUPPORT_SHARE`` columns costs its support
#: squared (and its support times ``d + k`` for the moments), not k^2; the other rows go to
#: the slab.  Measured here, one thread: a pass with
#: moments and Hessian over 10^6 rows, d = 16, k = 16, 240 ms with row loops over the
#: support, 125 ms with slab products (k = 256, 5x10^4 rows: 506 ms and 243 ms; k = 512:
#: 1694 ms and 756 ms); a pass with the Hessian alone at k = 128, 10^5 rows: 65 ms over the
#: support, 98 ms through BLAS.  At k = 64, 2x10^5 rows of separated clusters (supports of
#: a column or two), reg 1e-3: 477 ms with every row in the slab, 194 ms over the supports;
#: overlapping clusters at reg 0.1 (wide supports): 175 ms in the slab, 931 ms over them
_DENSE_HESSIAN_K = 32
#: ... a row's support is its Hessian's when it holds at most this share of the columns
_SUPPORT_SHARE = 4
#: rows of a slab of plan rows (taller slabs serve BLAS better, even at k = 512: 756 ms for
#: the pass above with 256 rows, 1171 ms with 64)
_PLAN_SLAB = 256
#: beyond ``_DENSE_HESSIAN_K``: plan entries below this are left out of the Newton Hessian
#: (not of the gradient): a row's support then holds a few columns, and the k x k outer
#: product costs far less than k^2
_HESSIAN_FLOOR = 1e-6
#: ... and below this (2^-56, an eighth of float64's unit roundoff in a row of unit sum) out
#: of the plan's moments and, beside them, of the Hessian: a narrow row adds its support's
#: entries times its x (d each) and its cost row (k each), not a k x (d + 2k) slab product.
#: Every entry left out is below the round-off of the sums it would join (a row drops less
#: than ``k 2^-56`` of its mass).  Measured here, two threads, a pass with moments and
#: Hessian over 2x10^5 rows, d = 16, separated clusters (means ``6 N(0, I)``) at reg 1e-3:
#: k = 64, 452 ms with every row in the slab, 136 ms row by row; k = 256, 4329 ms and 676
#: ms; overlapping clusters (means ``0.5 N(0, I)``) at reg 0.1, wide rows: 260 and 228 ms
#: (k = 64), 1775 and 1676 ms (k = 256)
_MOMENT_FLOOR = 2.0**-56

# exp(z) = q * 2^t with t = round(z / ln 2), q = exp(r) on |r| <= ln(2) / 2 by its Taylor
# polynomial of degree 13 (truncation below 1e-17 relative) after a two-part (Cody-Waite)
# reduction: within one ulp of libm's exp, and branch free, so that a row's k exponentials
# vectorise (libm's exp is a call per entry: 70 ms for 1.6e7 entries against 19 ms)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_E2, _E3, _E4, _E5, _E6, _E7 = (1.0 / math.factorial(i) for i in range(2, 8))
_E8, _E9, _E10, _E11, _E12, _E13 = (1.0 / math.factorial(i) for i in range(8, 14))


@njit(inline="always")
def _exp_parts(z):  # pragma: no cover - compiled
    """``exp(z) = q * 2**t`` for ``z <= 0`` (``z`` below -708 is taken as -708): returns
    ``q`` and the bits of the float64 ``2**t``, a normal number (read them through a float64
    view of an int64 array)."""
    zc = max(z, -708.0)
    t = math.floor(zc * _LOG2E + 0.5)
    r = (zc - t * _LN2_HI) - t * _LN2_LO
    q = _E13
    q = q * r + _E12
    q = q * r + _E11
    q = q * r + _E10
    q = q * r + _E9
    q = q * r + _E8
    q = q * r + _E7
    q = q * r + _E6
    q = q * r + _E5
    q = q * r + _E4
    q = q * r + _E3
    q = q * r + _E2
    q = q * r + 1.0
    q = q * r + 1.0
    return q, (np.int64(t) + 1023) << 52


@njit(inline="always")
def _plan_row(C, v, eps, i, z, p, bits, powers):  # pragma: no cover - compiled
    """Row ``i`` of the plan into ``p`` (unit sum) and its exponents ``(rmin - (C_ij - v_j))
    / eps`` into ``z``; returns ``(rmin, log s, under)``: the least reduced cost, the log of
    the row's mass before its normalisation, and whether an entry underflowed (its exponent
    at or below ``_EXP_FLOOR``: ``p`` holds 0 there).  ``bits`` (int64) and ``powers`` (its
    float64 view) are the caller's buffers of length k."""
    k = C.shape[1]
    rmin = np.inf
    for j in range(k):
        r = C[i, j] - v[j]
        z[j] = r
        rmin = min(rmin, r)
    for j in range(k):
        zz = (rmin - z[j]) / eps  # <= 0: no overflow
        z[j] = zz
        q, b = _exp_parts(zz)
        p[j] = q
        bits[j] = b
    s = 0.0
    for j in range(k):
        e = p[j] * powers[j] if z[j] > _EXP_FLOOR else 0.0
        p[j] = e
        s += e
    inv = 1.0 / s  # s >= 1: the minimising column contributes exp(0)
    under = False
    for j in range(k):
        p[j] *= inv
        under |= z[j] <= _EXP_FLOOR
    return rmin, math.log(s), under


@njit(inline="always")
def _log_domain(z, logs, top, total):  # pragma: no cover - compiled
    """Entries that underflowed, kept in the log domain (an online log-sum-exp per column),
    so that a column whose every entry is tiny keeps its true mass."""
    for j in range(z.shape[0]):
        if z[j] <= _EXP_FLOOR:
            lp = z[j] - logs
            if lp > top[j]:
                total[j] = total[j] * _exp(top[j] - lp) + 1.0
                top[j] = lp
            elif lp > top[j] + _EXP_FLOOR:
                total[j] += math.exp(lp - top[j])


@njit(parallel=True)
def _entropic(C, v, eps, hessian, n_lanes, X, workers):  # pragma: no cover - compiled
    m, k = C.shape
    d = X.shape[1]
    moments = X.shape[0] == m and m > 0  # else X has no rows: no moments
    # the Hessian and the moments as slab products up to _DENSE_HESSIAN_K clusters, else
    # row by row: over the support where it is narrow, in the slab where it is not (with the
    # moments, the support is the entries above _MOMENT_FLOOR)
    dense = (hessian or moments) and k <= _DENSE_HESSIAN_K
    narrow = k // _SUPPORT_SHARE if (hessian or moments) and not dense else -1
    floor = _MOMENT_FLOOR if moments else _HESSIAN_FLOOR
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
    slab = _PLAN_SLAB if hessian or moments else 1
    for w in numba.prange(workers):  # the lanes w, w + workers, ...: one set of buffers each
        z = np.empty(k)
        bits = np.empty(k, dtype=np.int64)
        powers = bits.view(np.float64)
        support = np.empty(k, dtype=np.int64)
        ps = np.empty((slab, k))  # a slab of plan rows, its rows of X and of C
        xs = np.empty((slab, d if moments else 0))
        cs = np.empty((slab, k if moments else 0))
        for lane in range(w, n_lanes, workers):
            hi = min(m, (lane + 1) * step)
            for lo in range(lane * step, hi, slab):
                top = min(hi, lo + slab)
                rows = 0  # the slab's rows for the products (ps[:rows], with their X and C)
                for i in range(lo, top):
                    p = ps[rows]
                    rmin, logs, under = _plan_row(C, v, eps, i, z, p, bits, powers)
                    value[lane] += rmin - eps * logs
                    for j in range(k):
                        direct[lane, j] += p[j]
                    if under:
                        _log_domain(z, logs, lse_max[lane], lse_sum[lane])
                    if moments:  # the row's sums, and the row into the slab
                        for t in range(d):
                            x = X[i, t]
                            coords[lane, t] += x
                            xs[rows, t] = x
                        for j in range(k):
                            c = C[i, j]
                            column_costs[lane, j] += c
                            cs[rows, j] = c
                    kept = dense
                    if narrow >= 0:
                        # the row's non-negligible entries (see _HESSIAN_FLOOR, _MOMENT_FLOOR)
                        nnz = 0
                        for j in range(k):
                            if p[j] > floor:
                                support[nnz] = j
                                nnz += 1
                        if nnz > narrow:
                            kept = True
                        else:
                            for a in range(nnz):
                                sa = support[a]
                                pa = p[sa]
                                if hessian:
                                    for b in range(nnz):
                                        ptp[lane, sa, support[b]] += pa * p[support[b]]
                                if moments:
                                    for t in range(d):
                                        px[lane, sa, t] += pa * X[i, t]
                                    for j in range(k):
                                        pc[lane, sa, j] += pa * C[i, j]
                    if kept:
                        rows += 1
                if rows > 0:
                    plan_t = ps[:rows].T
                    if moments:
                        px[lane] += np.dot(plan_t, xs[:rows])
                        pc[lane] += np.dot(plan_t, cs[:rows])
                    if hessian:
                        ptp[lane] += np.dot(plan_t, ps[:rows])
    return value, direct, lse_max, lse_sum, ptp, px, pc, column_costs, coords


def _run_entropic(C: np.ndarray, v: np.ndarray, eps: float, hessian: bool, X: np.ndarray):
    """:func:`_entropic` over a block, its lanes from the shapes, BLAS single threaded inside
    its parallel region (the dense slab products)."""
    m, k = C.shape
    d = X.shape[1]
    per_lane = k * (2 * k + d) if X.shape[0] else (k * k if hessian else k)
    lanes = _n_lanes(m, per_lane)
    blas = X.shape[0] > 0 or hessian
    with _threads_for(m, blas=blas):
        return _entropic(
            read_only(np.ascontiguousarray(C, dtype=np.float64)),
            np.asarray(v, dtype=np.float64),
            float(eps),
            hessian,
            lanes,
            read_only(X),
            lane_workers(lanes),
        )


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
    value, direct, lmax, lsum, ptp = _run_entropic(C, v, eps, hessian, _NO_ROWS)[:5]
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
    value, direct, lmax, lsum, ptp, px, pc, costs, coords = _run_entropic(C, v, eps, True, X)
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
            read_only(X),
            read_only(C),
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
