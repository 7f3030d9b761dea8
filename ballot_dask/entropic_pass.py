"""E-BalLOT's pass over a cost block: the entropic semi-dual's terms, its Newton Hessian and
the plan's moments, in one compiled sweep (:func:`run_entropic`).

With ``P_i = softmax_j((v_j - C_ij) / eps)`` (a row of the plan whose row potential is
recomputed from the k column potentials ``v``), the sweep returns per lane: ``sum_i u_i``,
the plan's column sums (those of its underflowed entries in the log domain), ``sum_i P_i
P_i^T``, and with rows of X the moments ``sum_i P_ij x_i``, ``sum_i P_ij C_ij`` (the plan's
cost in each column), ``sum_i C_ij`` and ``sum_i x_i`` (see :mod:`ballot_dask.plan_kernels`,
which reduces them; the plan's cost at every other column's center follows from these in
closed form, :func:`~ballot_dask.plan_kernels.weighted_plan_costs`).  Lanes and
float64 accumulation as in :mod:`ballot_dask.kernels`: the lanes, not the threads, decide the
order of every sum.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from .ahead import wait_for
from .jit import njit, read_only
from .kernels import _EXP_FLOOR, _exp, _n_lanes, _threads_for, lane_scalars, lane_workers

__all__ = ["NO_ROWS", "entropic_signatures", "run_entropic"]

#: a pass's plan moments and Newton Hessian are slab products through BLAS (a slab of dense
#: plan rows against itself and its rows of X; the plan's cost in each column, k numbers a
#: row, row by row) for every row up to this many clusters.  Beyond, a row whose support
#: (the entries above ``_HESSIAN_FLOOR``, with the moments ``_MOMENT_FLOOR``) holds at most
#: ``k / _SUPPORT_SHARE`` columns costs its support squared (and its support times ``d + 1``
#: for the moments), not k^2; the other rows go to the slab.  (The figures below are from
#: when the moments also held the k x k ``sum_i P_il C_ij``, a slab product of its own:
#: dropping it for the k-vector, 2 threads, a pass with moments over overlapping clusters
#: at reg 1e-2, d = 16: k = 16, 10^6 rows, 66 -> 64 ms; k = 64, 2.5x10^5 rows, 251 -> 113
#: ms; k = 256, 62 500 rows, 313 -> 147 ms, and 394 -> 195 ms at d = 64.)  Measured here,
#: one thread: a pass with
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
#: up to this many clusters a slab of ``_COLUMN_SLAB`` rows of the plan is computed column
#: by column (:func:`_plan_slab`), beyond it row by row (:func:`_plan_row`).  Measured here,
#: one thread, a pass with moments and Hessian over 4x10^6 entries (d = 16), by row and by
#: column: k = 2, 168 and 82 ms; k = 8, 84 and 45 ms; k = 16, 47-50 and 33-36 ms; k = 32, 44
#: and 37 ms.  At k = 64 by column is no faster (64-row slabs) or up to 19 % slower (256)
_BY_COLUMN_K = _DENSE_HESSIAN_K
_COLUMN_SLAB = 128
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

#: a column whose direct sum (its entries above ``exp(_EXP_FLOOR)``) has reached this keeps
#: no log-domain sum of its underflowed entries: each is below ``exp(-700)``, about 1e-304,
#: so that even 10^16 of them add less than 1e-88 of its mass, far below its last bit.  At a
#: small regularisation nearly every row has entries that underflow, and the online
#: log-sum-exp costs a libm exponential each (a pass with moments and Hessian over 2.5x10^5
#: rows, k = 16, reg 1e-3, one thread: 100 ms with it, 73 ms without)
_SETTLED = 1e-200
#: plan entries below this (about 1.5e-154) are left out of the products (the Hessian's,
#: the moments'), never out of the column sums: products of two of them would be
#: subnormal, which the processor computes many times slower (the pass above: 73 ms with
#: them in, 35-45 ms without).  One left out adds less than 1.5e-154 of its row's unit
#: mass to a sum (``_MOMENT_FLOOR`` leaves out far more of a narrow row)
_PRODUCT_FLOOR = 2.0**-511

# exp(z) = q * 2^t with t = round(z / ln 2), q = exp(r) on |r| <= ln(2) / 2 by its Taylor
# polynomial of degree 13 (truncation below 1e-17 relative) after a two-part (Cody-Waite)
# reduction: within one ulp of libm's exp, and branch free, so that the exponentials of a
# row (or of a slab's column) vectorise (libm's exp is a call per entry: 70 ms for 1.6e7
# entries against 19 ms)
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
    m0 = m1 = m2 = m3 = np.inf  # the minimum and the sum in four chains, not one of k steps
    j = 0
    while j + 4 <= k:
        r0 = C[i, j] - v[j]
        r1 = C[i, j + 1] - v[j + 1]
        r2 = C[i, j + 2] - v[j + 2]
        r3 = C[i, j + 3] - v[j + 3]
        z[j] = r0
        z[j + 1] = r1
        z[j + 2] = r2
        z[j + 3] = r3
        m0 = min(m0, r0)
        m1 = min(m1, r1)
        m2 = min(m2, r2)
        m3 = min(m3, r3)
        j += 4
    while j < k:
        r0 = C[i, j] - v[j]
        z[j] = r0
        m0 = min(m0, r0)
        j += 1
    rmin = min(min(m0, m1), min(m2, m3))
    for j in range(k):
        zz = (rmin - z[j]) / eps  # <= 0: no overflow
        z[j] = zz
        q, b = _exp_parts(zz)
        p[j] = q
        bits[j] = b
    for j in range(k):
        p[j] = p[j] * powers[j] if z[j] > _EXP_FLOOR else 0.0
    s0 = s1 = s2 = s3 = 0.0
    j = 0
    while j + 4 <= k:
        s0 += p[j]
        s1 += p[j + 1]
        s2 += p[j + 2]
        s3 += p[j + 3]
        j += 4
    while j < k:
        s0 += p[j]
        j += 1
    s = (s0 + s1) + (s2 + s3)
    inv = 1.0 / s  # s >= 1: the minimising column contributes exp(0)
    under = False
    for j in range(k):
        p[j] *= inv
        under |= z[j] <= _EXP_FLOOR
    return rmin, math.log(s), under


@njit(inline="always")
def _plan_slab(
    C, v, eps, lo, nr, zt, pt, bits, powers, rmin, inv, logs, low, direct
):  # pragma: no cover - compiled
    """Rows ``lo .. lo + nr`` of the plan, column by column: ``pt[j * nr + r]`` holds
    ``P_{lo + r, j}`` (unit rows; 0 below ``_PRODUCT_FLOOR``, for the products) and ``zt``
    its exponent ``(rmin_r - (C_ij - v_j)) / eps`` (the plan holds 0 where it is at or
    below ``_EXP_FLOOR``); ``rmin`` the rows' least reduced costs, ``logs`` the logs of
    their masses before the normalisation, ``low`` their least exponents (a row underflowed
    where it is at or below ``_EXP_FLOOR``).  Adds the plan's column sums (every entry) to
    ``direct``; returns ``sum_r rmin_r - eps logs_r``.  The
    buffers are the caller's (``bits`` int64, ``powers`` its float64 view; ``rmin``, ``inv``,
    ``logs``, ``low`` of ``nr`` rows at least).  Laid out by column, every loop but the
    first runs along the rows, where it vectorises: a row's own k entries (16, say) are too
    few for the vector units, and its minimum and sum would be a chain of dependent steps."""
    k = C.shape[1]
    for r in range(nr):
        i = lo + r
        for j in range(k):
            zt[j * nr + r] = C[i, j] - v[j]
    for r in range(nr):
        rmin[r] = zt[r]
        inv[r] = 0.0  # the rows' masses, first
        low[r] = 0.0
    for j in range(1, k):
        base = j * nr
        for r in range(nr):
            rmin[r] = min(rmin[r], zt[base + r])
    for j in range(k):
        base = j * nr
        for r in range(nr):
            zz = (rmin[r] - zt[base + r]) / eps  # <= 0: no overflow
            zt[base + r] = zz
            q, b = _exp_parts(zz)
            pt[base + r] = q
            bits[base + r] = b
        for r in range(nr):
            zz = zt[base + r]
            e = pt[base + r] * powers[base + r] if zz > _EXP_FLOOR else 0.0
            pt[base + r] = e
            inv[r] += e
            low[r] = min(low[r], zz)
    value = 0.0
    for r in range(nr):
        s = inv[r]  # >= 1: the minimising column contributes exp(0)
        inv[r] = 1.0 / s
        lg = math.log(s)
        logs[r] = lg
        value += rmin[r] - eps * lg
    for j in range(k):  # normalised, and the column sums (four chains: not one of nr steps)
        base = j * nr
        s0 = s1 = s2 = s3 = 0.0
        r = 0
        while r + 4 <= nr:
            e0 = pt[base + r] * inv[r]
            e1 = pt[base + r + 1] * inv[r + 1]
            e2 = pt[base + r + 2] * inv[r + 2]
            e3 = pt[base + r + 3] * inv[r + 3]
            pt[base + r] = e0 if e0 >= _PRODUCT_FLOOR else 0.0
            pt[base + r + 1] = e1 if e1 >= _PRODUCT_FLOOR else 0.0
            pt[base + r + 2] = e2 if e2 >= _PRODUCT_FLOOR else 0.0
            pt[base + r + 3] = e3 if e3 >= _PRODUCT_FLOOR else 0.0
            s0 += e0
            s1 += e1
            s2 += e2
            s3 += e3
            r += 4
        while r < nr:
            e0 = pt[base + r] * inv[r]
            pt[base + r] = e0 if e0 >= _PRODUCT_FLOOR else 0.0
            s0 += e0
            r += 1
        direct[j] += (s0 + s1) + (s2 + s3)
    return value


@njit(inline="always")
def _log_domain(z, logs, top, total, direct):  # pragma: no cover - compiled
    """Entries that underflowed, kept in the log domain (an online log-sum-exp per column),
    so that a column whose every entry is tiny keeps its true mass; but not in a column
    whose direct sum so far is ``_SETTLED`` or more."""
    for j in range(z.shape[0]):
        if z[j] <= _EXP_FLOOR and direct[j] < _SETTLED:
            lp = z[j] - logs
            if lp > top[j]:
                total[j] = total[j] * _exp(top[j] - lp) + 1.0
                top[j] = lp
            elif lp > top[j] + _EXP_FLOOR:
                total[j] += math.exp(lp - top[j])


@njit(inline="always")
def _row_sums(X, C, i, coords, column_costs, x_copy):  # pragma: no cover - compiled
    """Row ``i``'s coordinates and costs into the sums ``coords`` and ``column_costs``, and
    its coordinates into ``x_copy`` (its place in a slab for the products)."""
    for t in range(X.shape[1]):
        x = X[i, t]
        coords[t] += x
        x_copy[t] = x
    for j in range(C.shape[1]):
        column_costs[j] += C[i, j]


@njit(inline="always")
def _lane_by_column(C, v, eps, X, lo, hi, hessian, moments, out, lane, buffers):  # pragma: no cover
    """Rows ``lo .. hi`` of a lane, a slab at a time by :func:`_plan_slab`, into the lane's
    sums ``out`` (:func:`_entropic`'s results); every row's products (the Hessian's, the
    moments') straight from the slab's plan as it is laid out, through BLAS."""
    value, direct, lse_max, lse_sum, ptp, px, own, column_costs, coords = out
    zt, pt, bits, powers, rmin, inv, logs, low, zrow, xs = buffers
    k = C.shape[1]
    slab = xs.shape[0]
    for start in range(lo, hi, slab):
        nr = min(hi, start + slab) - start
        value[lane] += _plan_slab(
            C, v, eps, start, nr, zt, pt, bits, powers, rmin, inv, logs, low, direct[lane]
        )
        settled = True
        for j in range(k):
            settled &= direct[lane, j] >= _SETTLED
        for r in range(0 if settled else nr):
            if low[r] <= _EXP_FLOOR:  # entries underflowed: their log-sum-exp
                for j in range(k):
                    zrow[j] = zt[j * nr + r]
                _log_domain(zrow, logs[r], lse_max[lane], lse_sum[lane], direct[lane])
        plan = pt[: k * nr].reshape((k, nr))
        if moments:
            for r in range(nr):
                i = start + r
                _row_sums(X, C, i, coords[lane], column_costs[lane], xs[r])
                for j in range(k):
                    own[lane, j] += plan[j, r] * C[i, j]
            px[lane] += np.dot(plan, xs[:nr])
        if hessian:
            ptp[lane] += np.dot(plan, plan.T)


@njit(inline="always")
def _lane_by_row(C, v, eps, X, lo, hi, hessian, moments, out, lane, buffers):  # pragma: no cover
    """Rows ``lo .. hi`` of a lane, row by row (:func:`_plan_row`), into the lane's sums
    ``out``: beyond ``_BY_COLUMN_K`` (= ``_DENSE_HESSIAN_K``) clusters, so the Hessian and
    the moments go over the support of a narrow row, into the slab for a wide one (with
    the moments, the support is the entries above ``_MOMENT_FLOOR``)."""
    value, direct, lse_max, lse_sum, ptp, px, own, column_costs, coords = out
    z, bits, powers, support, ps, xs = buffers
    k = C.shape[1]
    d = X.shape[1]
    narrow = k // _SUPPORT_SHARE if hessian or moments else -1
    floor = _MOMENT_FLOOR if moments else _HESSIAN_FLOOR
    slab = ps.shape[0]
    for start in range(lo, hi, slab):
        top = min(hi, start + slab)
        rows = 0  # the slab's rows for the products (ps[:rows], with their X and C)
        for i in range(start, top):
            p = ps[rows]
            rmin, logs, under = _plan_row(C, v, eps, i, z, p, bits, powers)
            value[lane] += rmin - eps * logs
            for j in range(k):
                pj = p[j]
                direct[lane, j] += pj
                p[j] = pj if pj >= _PRODUCT_FLOOR else 0.0
            if under:
                _log_domain(z, logs, lse_max[lane], lse_sum[lane], direct[lane])
            if moments:  # the row's sums, and the row into the slab
                _row_sums(X, C, i, coords[lane], column_costs[lane], xs[rows])
            kept = False
            if narrow >= 0:
                # the row's non-negligible entries (see _HESSIAN_FLOOR, _MOMENT_FLOOR)
                nnz = 0
                for j in range(k):
                    if p[j] > floor:
                        support[nnz] = j
                        nnz += 1
                if nnz > narrow:
                    kept = True
                    if moments:
                        for j in range(k):
                            own[lane, j] += p[j] * C[i, j]
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
                            own[lane, sa] += pa * C[i, sa]
            if kept:
                rows += 1
        if rows > 0:
            plan_t = ps[:rows].T
            if moments:
                px[lane] += np.dot(plan_t, xs[:rows])
            if hessian:
                ptp[lane] += np.dot(plan_t, ps[:rows])


# "contract" lets a multiply and the add after it fuse into one FMA (one rounding, not
# two; nothing is reassociated): the exponentials' polynomials take half the instructions
# (a pass at k = 64, by row: 56 -> 49 ms)
@njit(parallel=True, fastmath={"contract"})
def _entropic(C, v, eps, hessian, n_lanes, X, workers):  # pragma: no cover - compiled
    m, k = C.shape
    d = X.shape[1]
    moments = X.shape[0] == m and m > 0  # else X has no rows: no moments
    out = (
        lane_scalars(n_lanes),  # value: a cache line apart (row by row, a sum per row)
        np.zeros((n_lanes, k)),  # direct column sums
        np.full((n_lanes, k), -np.inf),  # log-sum-exp of the underflowed entries: top ...
        np.zeros((n_lanes, k)),  # ... and the sum below it
        np.zeros((n_lanes, k, k)) if hessian else np.zeros((n_lanes, 1, 1)),
        np.zeros((n_lanes, k, d if moments else 0)),
        np.zeros((n_lanes, k if moments else 0)),  # the plan's cost in each column
        np.zeros((n_lanes, k)),  # column cost sums
        np.zeros((n_lanes, d)),  # coordinate sums
    )
    step = (m + n_lanes - 1) // n_lanes
    by_column = k <= _BY_COLUMN_K
    # a slab of the plan's rows (with the Hessian or the moments; else row by row one row)
    slab = _COLUMN_SLAB if by_column else (_PLAN_SLAB if hessian or moments else 1)
    for w in numba.prange(workers):  # the lanes w, w + workers, ...: one set of buffers each
        xs = np.empty((slab, d if moments else 0))
        if by_column:
            bits = np.empty(slab * k, dtype=np.int64)
            buffers = (
                np.empty(slab * k),  # the slab's exponents and plan, by column
                np.empty(slab * k),
                bits,
                bits.view(np.float64),
                np.empty(slab),  # its rows' least reduced costs, 1 / masses, logs, least
                np.empty(slab),  # exponents
                np.empty(slab),
                np.empty(slab),
                np.empty(k),  # a row's exponents
                xs,
            )
            for lane in range(w, n_lanes, workers):
                lo, hi = lane * step, min(m, (lane + 1) * step)
                _lane_by_column(C, v, eps, X, lo, hi, hessian, moments, out, lane, buffers)
        else:
            bits = np.empty(k, dtype=np.int64)
            by_row = (
                np.empty(k),  # a row's exponents
                bits,
                bits.view(np.float64),
                np.empty(k, dtype=np.int64),  # its support
                np.empty((slab, k)),  # the slab's rows of the plan
                xs,
            )
            for lane in range(w, n_lanes, workers):
                lo, hi = lane * step, min(m, (lane + 1) * step)
                _lane_by_row(C, v, eps, X, lo, hi, hessian, moments, out, lane, by_row)
    return out


#: the X of a pass without moments
NO_ROWS = np.empty((0, 0))


def entropic_signatures(dtype: Any) -> list[tuple]:
    """The types :func:`_entropic` is compiled for in a fit on X of ``dtype`` (float32 or
    float64): with the plan's moments (X's rows) and without (``NO_ROWS``); what
    :mod:`ballot_dask.ahead` compiles."""
    head = tuple(numba.typeof(a) for a in (read_only(np.zeros((2, 2))), np.zeros(2), 1.0, True, 1))
    rows = (np.zeros((2, 2), dtype=dtype), NO_ROWS)
    found = [(*head, numba.typeof(read_only(X)), numba.typeof(1)) for X in rows]
    return list(dict.fromkeys(found))  # one when X is float64


def run_entropic(C: np.ndarray, v: np.ndarray, eps: float, hessian: bool, X: np.ndarray) -> tuple:
    """E-BalLOT's pass over a cost block ``C`` (m x k) at the column potentials ``v``: with
    the Newton Hessian if ``hessian``, with the plan's moments if ``X`` holds the block's
    rows (``NO_ROWS``: without them).  Returns the per-lane sums ``(value, direct, lse_max,
    lse_sum, ptp, px, own, column_costs, coords)``, each with the lanes on its first axis
    (``own``: ``sum_i P_ij C_ij``; ``ptp`` is n_lanes x 1 x 1 without the Hessian, ``px``
    and ``own`` have no columns without the moments).  Its lanes come from the shapes; BLAS
    runs single threaded inside the parallel region (the slab products)."""
    m, k = C.shape
    d = X.shape[1]
    per_lane = k * (k if hessian else 1) + (k * (d + 2) if X.shape[0] else 0)
    lanes = _n_lanes(m, per_lane)
    blas = X.shape[0] > 0 or hessian
    wait_for("entropic")  # compiled ahead in another process (on a cold kernel cache)
    with _threads_for(m, blas=blas, cells=per_lane):
        return _entropic(
            read_only(np.ascontiguousarray(C, dtype=np.float64)),
            np.asarray(v, dtype=np.float64),
            float(eps),
            hessian,
            lanes,
            read_only(X),
            lane_workers(lanes),
        )
