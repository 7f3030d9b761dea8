"""Sparse X: the kernels that read X, for blocks held as ``scipy.sparse`` CSR matrices.

The solvers never touch X: they read cost blocks, and the few kernels that read X (the cost
blocks themselves, the exact step's fused pass, the centroid sums, the first pass's statistics)
dispatch here when a block is sparse.  Each twin reads the CSR arrays (``indptr``, ``indices``,
``data``) directly and never builds a dense row of X: its memory is that of the block, the cost
slabs and the (k, d) centroid sums, whatever d.

Costs are ``||x||^2 - 2 x.mu + ||mu||^2`` in float64 from the row's nonzeros, clipped at 0
(:func:`csr_slab_costs`, one function for every pass, so a row gets the same costs in every
pass and whatever the slabs).  The centers are rounded to X's dtype first, as on the dense path.
The expansion cancels where ``||x - mu||`` is much smaller than ``||x||`` and ``||mu||``: its
error is a few roundings of ``||x||^2 + ||mu||^2``, where the dense path's direct differences
(small ``k * d``) or centred expansion have none of that scale.  A sparse X cannot be centred
without densifying it; on data with rows of comparable norms (TF-IDF, counts) this is far below
the certificate's tolerance.

The centroid sums of the dense kernels add a fixed row's coordinates one after the other in row
order; the twins add the same nonzeros in the same order (adding a zero changes nothing), so a
sparse block's sums equal its dense copy's for the same labels.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from .costs import slab_rows
from .exact_pass import _BINS, ExactPass, _label_slab, _lane_cap, _settle, _weight_array
from .jit import njit, read_only
from .kernels import (
    _assignment,
    _n_lanes,
    _threads_for,
    lane_blocks,
    lane_counts,
    lane_scalars,
    lane_workers,
    lane_zeros,
    pass_lanes,
    reduced_cost_labels,
    slack_workers,
)
from .plan_kernels import _rounded_row

__all__ = [
    "as_csr",
    "column_stats",
    "cost_block_csr",
    "dense_rows",
    "exact_pass_csr",
    "is_sparse",
    "label_sums_csr",
    "nonfinite_row",
    "power_labels_csr",
    "stack_rows",
]


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is a ``scipy.sparse`` matrix or array."""
    return bool(sp.issparse(X))


#: index arrays hold values below this as int32
_INT32_MAX = int(np.iinfo(np.int32).max)


def as_csr(X: Any) -> Any:
    """``X`` as CSR with no duplicate entries (the squared norms sum a row's squares, so a
    column stored twice would count wrongly) and int32 indices where they fit; copied only
    when it must change.  Every kernel is compiled once per index dtype: int64 indices (as
    scikit-learn's estimator checks pass them) would compile the seven CSR kernels again, for
    the same numbers (the data array is shared, the index arrays are copied)."""
    if X.format != "csr":
        X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    if X.indices.dtype != np.int32 and max(X.nnz, *X.shape) < _INT32_MAX:
        X = type(X)(
            (X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)),
            shape=X.shape,
            copy=False,
        )
    return X


def nonfinite_row(X: Any) -> int | None:
    """Index of the first row of a CSR block holding NaN or infinity, or ``None``."""
    bad = ~np.isfinite(X.data)
    if not bad.any():
        return None
    first = int(np.flatnonzero(bad)[0])
    return int(np.searchsorted(X.indptr, first, side="right")) - 1


def dense_rows(X: Any, rows: Any) -> np.ndarray:
    """Rows of a sparse ``X`` as a C-contiguous float64 array (a few rows: initial centers)."""
    return np.ascontiguousarray(as_csr(X)[np.atleast_1d(rows)].toarray(), dtype=np.float64)


def stack_rows(parts: list[Any]) -> Any:
    """Blocks of rows stacked: a CSR matrix for sparse parts, an ndarray otherwise."""
    if parts and is_sparse(parts[0]):
        return sp.vstack(parts, format="csr")
    return np.concatenate(parts)


def column_stats(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Column means and sums of squared deviations (float64) of a sparse block: each
    column's nonzeros deviate by ``x - mean``, its zeros by ``-mean``."""
    X = as_csr(X)
    m, d = X.shape
    data = X.data.astype(np.float64)
    stored = np.bincount(X.indices, minlength=d)
    mean = np.bincount(X.indices, weights=data, minlength=d) / max(m, 1)
    dev = data - mean[X.indices]
    m2 = np.bincount(X.indices, weights=dev * dev, minlength=d) + (m - stored) * mean**2
    return mean, m2


def nbytes(X: Any) -> int:
    """Bytes of a CSR matrix's arrays."""
    return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)


# -- costs ------------------------------------------------------------------------------------


@njit()
def csr_slab_costs(indptr, indices, data, lo, hi, mu_t, mu_sq, out):  # pragma: no cover
    """``out[:hi-lo] = ||x_i - mu_j||^2`` for rows ``lo <= i < hi`` of a CSR block, float64:
    ``||x||^2 - 2 x.mu + ||mu||^2`` over the row's nonzeros, clipped at 0.  ``mu_t`` holds the
    centers transposed (d, k), so a nonzero reads k contiguous numbers."""
    k = mu_t.shape[1]
    for r in range(hi - lo):
        i = lo + r
        for j in range(k):
            out[r, j] = 0.0
        xsq = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            x = np.float64(data[p])
            xsq += x * x
            t = indices[p]
            for j in range(k):
                out[r, j] += x * mu_t[t, j]
        for j in range(k):
            c = xsq - 2.0 * out[r, j] + mu_sq[j]
            out[r, j] = c if c > 0.0 else 0.0


def prepared_centers_csr(X: Any, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centers as :func:`csr_slab_costs` takes them: rounded to X's dtype then float64,
    transposed (d, k), and their squared norms."""
    mu = np.asarray(centers, dtype=X.dtype).astype(np.float64)
    return np.ascontiguousarray(mu.T), np.einsum("ij,ij->i", mu, mu)


@njit(parallel=True)
def _csr_costs(indptr, indices, data, mu_t, mu_sq, out, slab):  # pragma: no cover - compiled
    m = indptr.shape[0] - 1
    n_slabs = (m + slab - 1) // slab
    for b in numba.prange(n_slabs):
        lo = b * slab
        hi = min(m, lo + slab)
        csr_slab_costs(indptr, indices, data, lo, hi, mu_t, mu_sq, out[lo:hi])


def cost_block_csr(X: Any, centers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`~ballot_dask.costs.cost_block` of a sparse block (float64, (m, k))."""
    X = as_csr(X)
    shape = (X.shape[0], centers.shape[0])
    if out is None or out.shape != shape or out.dtype != np.float64:
        out = np.empty(shape, dtype=np.float64)
    if X.shape[0]:
        mu_t, mu_sq = prepared_centers_csr(X, centers)
        with _threads_for(X.shape[0]):
            _csr_costs(X.indptr, X.indices, X.data, mu_t, mu_sq, out, slab_rows(shape[1]))
    return out


# -- the exact step's pass ----------------------------------------------------------------------


@njit(parallel=True)
def _csr_exact_pass(
    indptr, indices, data, W, d, mu_t, mu_sq, v, theta, cap, lanes, slab
):  # pragma: no cover - compiled
    m = indptr.shape[0] - 1
    k = mu_t.shape[1]
    n_lanes, n_workers = lanes
    weighted = W.shape[0] > 0  # else every row weighs 1
    counts = lane_counts(n_lanes, k)  # a cache line between lanes (kernels.lane_zeros)
    mass = lane_zeros(n_lanes, k)
    sums = lane_blocks(n_lanes, k, d)
    slack = np.full((n_workers, k, k), np.inf)  # a minimum: per thread
    obj = lane_scalars(n_lanes)
    band = np.empty((n_lanes, max(cap, 1)), dtype=np.int64)
    taken = lane_counts(n_lanes, 1)[:, 0]
    hist = np.zeros((n_workers, _BINS), dtype=np.int64)
    pairs = np.zeros((n_workers, 1, 1, 0), dtype=np.int64)  # no pair histogram
    none = np.empty(0, dtype=np.int64)  # no allowances: the band on the gap
    bounds = (theta, cap, 1.0, none, none, np.empty(0))
    step = (m + n_lanes - 1) // n_lanes
    for w in numba.prange(n_workers):  # one cost buffer per thread, not per lane
        C = np.empty((slab, k))
        for lane in range(w, n_lanes, n_workers):
            lane_end = min(m, (lane + 1) * step)
            for lo in range(lane * step, lane_end, slab):
                hi = min(lo + slab, lane_end)
                csr_slab_costs(indptr, indices, data, lo, hi, mu_t, mu_sq, C)
                for r in range(hi - lo):
                    i = lo + r
                    wi = W[i] if weighted else 1.0
                    a = _settle(
                        C, r, i, v, bounds, lane, counts, mass, wi, 0.0, slack[w], obj, band,
                        taken, hist[w], pairs[w],
                    )  # fmt: skip
                    if a >= 0:
                        for p in range(indptr[i], indptr[i + 1]):
                            sums[lane, a, indices[p]] += wi * data[p]
    return counts[:, :k], mass[:, :k], sums[:, :k], slack, obj, band, taken.copy(), hist


def exact_pass_csr(
    X: Any,
    centers: np.ndarray,
    v: np.ndarray,
    theta: float,
    cap: int,
    offset: int = 0,
    *,
    strict: bool = False,
    weights: np.ndarray | None = None,
    shared: bool = False,
) -> ExactPass:
    """:func:`~ballot_dask.exact_pass.exact_pass` of a sparse block: the band's rows come back
    as a CSR matrix."""
    X = as_csr(X)
    m, d = X.shape
    k = centers.shape[0]
    mu_t, mu_sq = prepared_centers_csr(X, centers)
    lanes = 1 if strict else pass_lanes(m, k, d)
    with _threads_for(m):
        counts, mass, sums, slack, obj, band, taken, hist = _csr_exact_pass(
            X.indptr,
            X.indices,
            X.data,
            _weight_array(weights),
            d,
            mu_t,
            mu_sq,
            np.asarray(v, dtype=np.float64),
            float(theta),
            _lane_cap(int(cap), lanes, shared),
            (lanes, slack_workers(lanes, k)),
            slab_rows(k),
        )
    rows = np.concatenate([band[lane, : taken[lane]] for lane in range(lanes)])
    return ExactPass(
        counts=counts.sum(axis=0),
        sums=sums.sum(axis=0),
        objective=float(obj.sum()),
        slack=slack.min(axis=0),
        rows=rows.astype(np.int64) + offset,
        x=X[rows],
        hist=hist.sum(axis=0),
        theta=float(theta),
        mass=mass.sum(axis=0),
        w=None if weights is None else np.asarray(weights, dtype=np.float64)[rows],
    )


@njit(parallel=True)
def _csr_labels_pass(
    indptr, indices, data, mu_t, mu_sq, v, rows, fixed, out, lanes, slab
):  # pragma: no cover - compiled
    m = indptr.shape[0] - 1
    k = mu_t.shape[1]
    n_lanes, n_workers = lanes
    step = (m + n_lanes - 1) // n_lanes
    for w in numba.prange(n_workers):  # one cost buffer per thread, not per lane
        C = np.empty((slab, k))
        for lane in range(w, n_lanes, n_workers):
            lane_end = min(m, (lane + 1) * step)
            p = np.searchsorted(rows, lane * step)
            for lo in range(lane * step, lane_end, slab):
                hi = min(lo + slab, lane_end)
                csr_slab_costs(indptr, indices, data, lo, hi, mu_t, mu_sq, C)
                p = _label_slab(C, lo, hi, v, rows, fixed, p, out)


def power_labels_csr(
    X: Any, centers: np.ndarray, v: np.ndarray, rows: np.ndarray, fixed: np.ndarray
) -> np.ndarray:
    """:func:`~ballot_dask.exact_pass.power_labels` of a sparse block."""
    X = as_csr(X)
    m, d = X.shape
    k = centers.shape[0]
    out = np.empty(m, dtype=np.int64)
    if m == 0:
        return out
    mu_t, mu_sq = prepared_centers_csr(X, centers)
    lanes = pass_lanes(m, k, d)  # the exact pass's, hence its slabs
    with _threads_for(m):
        _csr_labels_pass(
            X.indptr,
            X.indices,
            X.data,
            mu_t,
            mu_sq,
            np.asarray(v, dtype=np.float64),
            rows,
            fixed,
            out,
            (lanes, lane_workers(lanes)),
            slab_rows(k),
        )
    return out


# -- centroid sums ----------------------------------------------------------------------------


@njit()
def _csr_label_sums(indptr, indices, data, labels, sums):  # pragma: no cover - compiled
    for i in range(indptr.shape[0] - 1):
        a = labels[i]
        if a < 0:
            continue
        for p in range(indptr[i], indptr[i + 1]):
            sums[a, indices[p]] += data[p]


def label_sums_csr(X: Any, labels: np.ndarray, k: int) -> np.ndarray:
    """:func:`~ballot_dask.kernels.label_sums` of a sparse block (rows labelled -1 left out)."""
    X = as_csr(X)
    sums = np.zeros((k, X.shape[1]))
    if X.shape[0]:
        _csr_label_sums(X.indptr, X.indices, X.data, np.asarray(labels, dtype=np.int64), sums)
    return sums


def assignment_terms_csr(
    X: Any,
    C: np.ndarray,
    labels: np.ndarray,
    potentials: np.ndarray,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """:func:`~ballot_dask.kernels.assignment_terms` of a sparse block (arguments resolved
    by it): the counts, slack and objective by the dense kernel on the costs alone, the sums
    from the rows' nonzeros at the same labels."""
    m, k = C.shape
    with _threads_for(m):
        counts, _, slack, obj = _assignment(
            read_only(np.zeros((m, 0), dtype=X.dtype)),
            read_only(C),
            potentials,
            rows,
            labels,
            _n_lanes(m, k * k),
        )
    full = reduced_cost_labels(C, potentials)[0]  # the same rule as the kernel's labels
    full[rows] = labels
    return counts.sum(axis=0), label_sums_csr(X, full, k), slack.min(axis=0), float(obj.sum())


@njit(parallel=True)
def _csr_rounded(
    indptr, indices, data, d, C, v, eps, scale, deficit, labels, n_lanes
):  # pragma: no cover - compiled
    m, k = C.shape
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
                    for p in range(indptr[i], indptr[i + 1]):
                        sums[lane, j, indices[p]] += gj * data[p]
    return mass[:, :k], sums[:, :k], cost, hard, counts[:, :k]


def rounded_plan_terms_csr(
    X: Any,
    C: np.ndarray,
    v: np.ndarray,
    eps: float,
    scale: np.ndarray,
    deficit: np.ndarray,
) -> tuple:
    """:func:`~ballot_dask.plan_kernels.rounded_plan_terms` of a sparse block."""
    X = as_csr(X)
    m, k = C.shape
    lanes = _n_lanes(m, k * (X.shape[1] + 2))
    labels = np.empty(m, dtype=np.int64)
    with _threads_for(m):
        mass, sums, cost, hard, counts = _csr_rounded(
            X.indptr,
            X.indices,
            X.data,
            X.shape[1],
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
