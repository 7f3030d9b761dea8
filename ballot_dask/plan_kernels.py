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

from typing import Any

import numba
import numpy as np
from scipy.sparse import issparse

from .entropic_pass import NO_ROWS, run_entropic
from .jit import njit, read_only
from .kernels import (
    _exp,
    _n_lanes,
    _threads_for,
    lane_blocks,
    lane_counts,
    lane_scalars,
    lane_zeros,
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
    value, direct, lmax, lsum, ptp = run_entropic(C, v, eps, hessian, NO_ROWS)[:5]
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


def entropic_moment_terms(
    X: Any, C: np.ndarray, v: np.ndarray, eps: float, hessian: bool = True
) -> tuple[float, np.ndarray, np.ndarray | None, tuple]:
    """:func:`entropic_terms` (with the Hessian if ``hessian``, else ``None`` in its place)
    and :func:`plan_moments` of a block, in one sweep of its rows (dense X; CSR rows: the
    moments in a second sweep)."""
    if issparse(X):
        value, logcol, ptp = entropic_terms(C, v, eps, hessian)
        return value, logcol, ptp, plan_moments(X, C, v, eps)
    value, direct, lmax, lsum, ptp, px, own, costs, coords = run_entropic(C, v, eps, hessian, X)
    with np.errstate(divide="ignore"):
        logcol = np.logaddexp(np.log(direct.sum(axis=0)), _merge_lse(lmax, lsum))
    moments = (px.sum(axis=0), own.sum(axis=0), costs.sum(axis=0), coords.sum(axis=0))
    return float(value.sum()), logcol, (ptp.sum(axis=0) if hessian else None), moments


def plan_moments(
    X: Any, C: np.ndarray, v: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block's moments of the entropic plan, from which its rounding follows in closed
    form (:func:`ballot_dask.solvers.sinkhorn.rounded_moments`).

    With ``P_i`` the rows of :func:`plan_rows`, returns ``sum_i P_ij x_i`` (k, d), the plan's
    cost in each column ``sum_i P_ij C_ij`` (k,; at the other columns' centers it follows
    from these, :func:`weighted_plan_costs`), the column cost sums ``sum_i C_ij`` (k,) and the
    coordinate sums ``sum_i x_i`` (d,), float64.  Slab by slab (``_MOMENT_ROWS`` rows),
    the products through BLAS; ``X`` may be CSR (a dense X takes the compiled sweep of
    :func:`entropic_moment_terms`).
    """
    m, k = C.shape
    d = X.shape[1]
    px = np.zeros((k, d))
    own = np.zeros(k)
    for lo in range(0, m, _MOMENT_ROWS):
        hi = min(lo + _MOMENT_ROWS, m)
        P = plan_rows(C[lo:hi], v, eps)
        rows = X[lo:hi]
        if issparse(rows):
            px += np.asarray((rows.T @ P).T)
        else:
            px += P.T @ np.asarray(rows, dtype=np.float64)
        own += np.einsum("ij,ij->j", P, C[lo:hi])
    if issparse(X):  # (scipy sums a float32 matrix in float32, whatever the dtype asked)
        csr = X.tocsr()
        coords = np.bincount(csr.indices, csr.data.astype(np.float64), minlength=d)
    else:
        coords = np.asarray(X, dtype=np.float64).sum(axis=0)
    return px, own, C.sum(axis=0), coords


def weighted_plan_costs(
    px: np.ndarray, own: np.ndarray, col: np.ndarray, centers: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``sum_l w_l sum_i P_il ||x_i - mu_j||^2`` for every column ``j`` (k,), from the plan's
    moments, with no pass: its centroid sums ``px`` (``sum_i P_il x_i``), its cost in each
    column ``own`` (``sum_i P_il ||x_i - mu_l||^2``) and its column sums ``col``; ``mu`` the
    ``centers`` of its costs (rounded to X's dtype, as the costs were), ``w`` the
    ``weights`` (the rounding's column scaling).

    Each row's cost at another column's center, expanded around the row's own center and
    summed, is ``own_l - 2 (px_l - col_l mu_l).(mu_j - mu_l) + col_l ||mu_j - mu_l||^2``; the
    weighted sum of the last terms is ``W ||mu_j - m||^2 + sum_l w_l col_l ||mu_l - m||^2``
    about their weighted mean ``m`` (weights ``w_l col_l``, total ``W``).  O(k d) work, and
    no term cancels far from the origin: ``px_l - col_l mu_l`` is small when ``mu_l`` is
    near the plan's centroid of column ``l``.  (A pass that summed ``P_il C_ij`` itself
    paid a k x k slab product per row of wide plan rows.)"""
    mu = np.asarray(centers, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    mass = w * col  # w_l col_l
    total = float(mass.sum())
    m = (mass @ mu) / total if total > 0 else mu.mean(axis=0)
    rel = mu - m
    lever = mass @ rel  # ~0 about the weighted mean (exactly 0 in exact arithmetic)
    spread = w[:, None] * (px - col[:, None] * mu)  # w_l sum_i P_il (x_i - mu_l)
    cross = rel @ spread.sum(axis=0) - float(np.einsum("ld,ld->", spread, rel))
    squares = np.square(rel).sum(axis=1)
    return float(w @ own) - 2.0 * cross + total * squares - 2.0 * (rel @ lever) + mass @ squares


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
    mass = lane_zeros(n_lanes, k)  # a cache line between lanes (kernels.lane_zeros)
    sums = lane_blocks(n_lanes, k, d)
    cost = lane_scalars(n_lanes)
    hard = lane_scalars(n_lanes)
    counts = lane_counts(n_lanes, k)
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
    return mass[:, :k], sums[:, :k], cost, hard, counts[:, :k]


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
