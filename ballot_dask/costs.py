"""Squared Euclidean costs of a row block at the centers, float64, in slabs.

Cost blocks are float64 whatever the dtype of X: the centers are first rounded to X's dtype
(the fitted centers are stored in it), then the distances are computed in float64 from those
values, which float64 holds exactly.  The optimality certificate is therefore a statement
about float64 costs, to round-off of order 1e-16 of the costs.

Small ``k * d`` (or fewer than four features): sums of squared differences, in the same order
in every pass (:func:`slab_costs`).  Beyond: the expansion around the centers' mean through
BLAS; the exact pass takes it with a proven bound on each row's error
(:func:`screened_slab_costs`, :class:`Screen`), float64 products up to 32 clusters and
float32 from 33.  A sparse block's costs are :mod:`ballot_dask.sparse`'s.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from scipy.sparse import issparse

from .jit import njit, read_only
from .kernels import _threads_for

#: costs go through BLAS from this many multiply-adds per row (k * d) with at least
#: ``_BLAS_FEATURES`` features, and from ``_BLAS_WORK`` whatever d.  Measured here, one
#: thread, an exact pass over 10^6 rows: at k = 16, d = 32, 168 ms with the direct loop and
#: 93 ms through BLAS (70 ms against 98 ms at d = 16, 55 ms against 58 ms at d = 4); with two
#: or three features the direct loop is as fast or faster (d = 2: 71 ms against 73 ms at
#: k = 32, 313 ms against 317 ms at k = 256)
_BLAS_WORK = (1 << 12) - 1
_BLAS_WIDE_WORK = 63
_BLAS_FEATURES = 4
#: a slab's float64 costs take at most this many cells (BLAS: ``_BLAS_SLAB_CELLS``)
_SLAB_CELLS = 1 << 16
_BLAS_SLAB_CELLS = 1 << 18
#: up to this many centers the direct costs run over the features outermost, ``_GROUP_ROWS``
#: rows at a time (see :func:`slab_costs`; measured here, the other order is as fast or
#: faster from k = 32)
_NARROW_K = 16
_GROUP_ROWS = 64


def slab_rows(k: int, blas: bool = False) -> int:
    """Rows per slab of the cost computation for ``k`` clusters (a function of the shapes
    only, so every pass computes a row's costs with the same arithmetic).  BLAS wants tall
    slabs, up to 1024 rows, but no more than ``_BLAS_SLAB_CELLS`` costs: a slab that leaves
    the caches costs more than BLAS gains (measured here, d = 64, an exact pass over 10^5
    rows: 1.95 s at k = 4096 with 1024-row slabs, 1.11 s with 128; 0.57 s and 0.49 s at
    k = 2048)."""
    if blas:
        return max(64, min(1024, _BLAS_SLAB_CELLS // max(k, 1)))
    return max(64, min(4096, _SLAB_CELLS // max(k, 1)))


@njit(inline="always")
def _centred_row(X, i, mean, z):  # pragma: no cover - compiled
    """``z[:] = X[i] - mean`` (computed in float64, stored in z's dtype); returns the row's
    squared norm from the float64 differences, summed in four interleaved chains (feature
    ``t`` into chain ``t % 4``, then ``(s0 + s1) + (s2 + s3)``): a fixed order, so every
    kernel gets the same number, and four independent additions at a time instead of one
    chain that waits on each (the norms of 10^6 rows of 32 features: 27 ms -> 9 ms)."""
    d = z.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    t = 0
    while t + 4 <= d:
        z0 = np.float64(X[i, t]) - mean[t]
        z1 = np.float64(X[i, t + 1]) - mean[t + 1]
        z2 = np.float64(X[i, t + 2]) - mean[t + 2]
        z3 = np.float64(X[i, t + 3]) - mean[t + 3]
        z[t] = z0
        z[t + 1] = z1
        z[t + 2] = z2
        z[t + 3] = z3
        s0 += z0 * z0
        s1 += z1 * z1
        s2 += z2 * z2
        s3 += z3 * z3
        t += 4
    while t < d:
        zt = np.float64(X[i, t]) - mean[t]
        z[t] = zt
        s0 += zt * zt
        t += 1
    return (s0 + s1) + (s2 + s3)


@njit(inline="always")
def _slab_products(X, lo, s, mean, mu_b, xs, xsq, prod):  # pragma: no cover - compiled
    """For the ``s`` rows of X from ``lo``: their centred coordinates into ``xs[:s]`` (float64
    differences stored in xs's dtype), their squared norms into ``xsq[:s]``
    (:func:`_centred_row`) and the BLAS products ``xs[:s] @ mu_b`` into ``prod[:s]``.  The
    buffers are the caller's, one set per thread, not arrays made per slab: where freed memory
    goes back to the system at once (a Dask nanny's ``MALLOC_TRIM_THRESHOLD_``), a slab's
    fresh arrays cost their page faults every time (an exact pass over a 250 000-row chunk
    in a worker: 30 ms instead of 17 ms)."""
    for r in range(s):
        xsq[r] = _centred_row(X, lo + r, mean, xs[r])
    np.dot(xs[:s], mu_b, prod[:s])


@njit()
def slab_costs(X, lo, hi, mu_t, mu_ct, mu_sq, mean, use_dot, out, work):  # pragma: no cover
    """``out[:hi-lo] = ||x_i - mu_j||^2`` for rows ``lo <= i < hi`` of X, float64.

    Small ``k * d``: sums of squared differences (exact zeros, no cancellation), vectorised
    over the centers so that every cost is accumulated in the same order (no reassociation:
    the same row gets the same costs in every pass).  Beyond: ``||x - m||^2 - 2 (x - m).(mu
    - m) + ||mu - m||^2`` by BLAS, ``m`` the centers' mean (the expansion then does not cancel
    far from the origin: the error stays about ``d`` roundings of the costs' own scale).
    ``mu_t`` and ``mu_ct`` are the centers and the centred centers, transposed (d, k);
    ``work``: the thread's buffers ``(xs, xsq, prod)`` of :func:`_slab_products`, float64
    (BLAS only; ``slab`` rows).
    """
    s = hi - lo
    d, k = mu_t.shape
    if use_dot:
        xs, xsq, prod = work
        _slab_products(X, lo, s, mean, mu_ct, xs, xsq, prod)
        for r in range(s):
            for j in range(k):
                c = xsq[r] - 2.0 * prod[r, j] + mu_sq[j]
                out[r, j] = c if c > 0.0 else 0.0
    elif k <= _NARROW_K:
        # few centers: a row's costs fill a vector or two, and its sums over the features
        # are a chain that waits on each addition; the features go outermost over a group of
        # rows, whose chains run side by side (about twice as fast here at k = 16, d = 16).
        # Every cost is still summed over the features in their order: the same numbers
        for g in range(0, s, _GROUP_ROWS):
            end = min(s, g + _GROUP_ROWS)
            for r in range(g, end):
                for j in range(k):
                    out[r, j] = 0.0
            for t in range(d):
                m = mu_t[t]
                for r in range(g, end):
                    xt = np.float64(X[lo + r, t])
                    o = out[r]
                    for j in range(k):
                        diff = xt - m[j]
                        o[j] += diff * diff
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
    k, d = mu.shape
    use_dot = bool(k * d > _BLAS_WORK or (d >= _BLAS_FEATURES and k * d > _BLAS_WIDE_WORK))
    return np.ascontiguousarray(mu.T), np.ascontiguousarray(mu_c.T), mu_sq, mean, use_dot


#: unit roundoffs of float32 and float64
_U32 = 2.0**-24
_U64 = 2.0**-53


class Screen(NamedTuple):
    """The centers as :func:`screened_slab_costs` takes them: :func:`prepared_centers`'s,
    the centred centers in float32 (transposed, (d, k); empty unless ``screened``) and in
    float64 row by row ((k, d): a row's cost at one center, :func:`row_cost`), the largest
    centred center's norm, and whether the BLAS products are float32 (``screened``: the pass
    then takes a fixed row's cost for the objective, and a band row's candidates' costs,
    again in float64; else float64 products, on ``mu_ct``).  The kernels take it as a plain
    tuple (``tuple(screen)``): a class in a compiled signature is pickled into the kernel
    cache's index, which another version of the package, without the class, could then not
    read.  Its types are the same whatever the products' dtype: one compiled kernel per
    dtype of X (each takes about 20 s to compile)."""

    mu_t: np.ndarray
    mu_ct: np.ndarray
    mu_ct32: np.ndarray
    mu_c: np.ndarray
    mu_sq: np.ndarray
    mean: np.ndarray
    use_dot: bool
    norm: float
    screened: bool


#: the exact pass's BLAS products are float32 from this many centers (and ``_BLAS_WORK``
#: multiply-adds a row), float64 below.  With few columns float32 products are hardly
#: faster (measured here, 10^6 x 32, k = 16: 39 ms against 41 ms for the costs) and they
#: cost a second float64 cost per fixed row for the objective; float64 products also leave
#: the band and the slack matrix as the float64 costs would (a screening bound about 10^-12
#: of theirs instead of 10^-5 or so)
_F64_PRODUCTS = 32


def screened_centers(X: np.ndarray, centers: np.ndarray) -> Screen:
    """The centers as the exact pass and its labels pass take them (:class:`Screen`)."""
    mu_t, mu_ct, mu_sq, mean, use_dot = prepared_centers(X, centers)
    k, d = mu_ct.shape[1], mu_ct.shape[0]
    screened = use_dot and k > _F64_PRODUCTS and k * d > _BLAS_WORK
    mu_ct32 = mu_ct.astype(np.float32) if screened else np.empty((0, 0), dtype=np.float32)
    norm = float(np.sqrt(mu_sq.max(initial=0.0)))
    mu_c = np.ascontiguousarray(mu_ct.T)
    return Screen(mu_t, mu_ct, mu_ct32, mu_c, mu_sq, mean, use_dot, norm, screened)


@njit(inline="always")
def slab_work(slab, sc):  # pragma: no cover - compiled
    """A thread's buffers for :func:`screened_slab_costs`: centred rows, their norms and the
    BLAS products ``(xs, xs32, xsq, prod, prod32)`` (the ``32`` ones float32, the others
    float64); only those of the products' dtype have rows (none without BLAS)."""
    d, k = sc[1].shape
    use_dot, screened = sc[6], sc[8]
    wide = slab if use_dot and not screened else 0
    narrow = slab if screened else 0
    return (
        np.empty((wide, d)),
        np.empty((narrow, d), dtype=np.float32),
        np.empty(slab if use_dot else 0),
        np.empty((wide, k)),
        np.empty((narrow, k), dtype=np.float32),
    )


@njit(inline="always")
def _bounded_costs(xsq, prod, mu_sq, norm, unit, s, out, err):  # pragma: no cover - compiled
    """The slab's costs from its norms and products, and each row's bound (see
    :func:`screened_slab_costs`)."""
    k = mu_sq.shape[0]
    for r in range(s):
        xn = math.sqrt(xsq[r])
        err[r] = unit * xn * norm + 8.0 * _U64 * (xn + norm) ** 2
        for j in range(k):
            c = xsq[r] - 2.0 * np.float64(prod[r, j]) + mu_sq[j]
            out[r, j] = c if c > 0.0 else 0.0


@njit()
def screened_slab_costs(X, lo, hi, sc, out, err, work):  # pragma: no cover - compiled
    """:func:`slab_costs` with the BLAS product in float32 when ``sc`` is ``screened``
    (twice as fast as float64 at large k), else in float64, and
    ``err[r]`` a bound on the error that adds to the float64 costs' own, at every center.

    The exact step needs a row's costs only to tell its label, its gap and its slack-matrix
    row, and it can do with a bound: a row whose top-two gap exceeds ``2 err`` has the same
    label under the float64 costs, and ``C_ib - C_ia - 2 err`` is a lower bound on its
    slack (the certificate stays a proof).  Rows within ``2 err`` of a tie go to the band,
    whose costs are float64 (:func:`row_cost`; the caller also takes a fixed row's cost for
    the objective from it).  With ``z = x - m`` and ``mu_j - m`` rounded to float32, their
    float32 product is within ``gamma_d |z| |mu_j - m|`` of theirs (any order of summation,
    Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1), and the roundings add
    ``2 u |z| |mu_j - m|``: with ``u = 2^-24``, the cost ``|z|^2 - 2 z.(mu_j - m) + |mu_j -
    m|^2`` is within ``2 (d + 4) u |z| max_j |mu_j - m|`` (``d u`` below 1 %), plus a few
    float64 roundings of its terms.  Float64 products: the same bound with ``u = 2^-53``
    (the rows' norms are :func:`row_cost`'s, summed in the same order).  Without BLAS:
    :func:`slab_costs`, ``err`` 0.  ``work``: the thread's :func:`slab_work`."""
    s = hi - lo
    mu_t, mu_ct, mu_ct32, _, mu_sq, mean, use_dot, norm, screened = sc
    xs, xs32, xsq, prod, prod32 = work
    if not use_dot:
        # use_dot (False), not the constant: a literal False would be typed Literal[bool]
        # and compile slab_costs a second time for each dtype
        slab_costs(X, lo, hi, mu_t, mu_ct, mu_sq, mean, use_dot, out, (xs, xsq, prod))
        for r in range(s):
            err[r] = 0.0
        return
    d = mu_ct.shape[0]
    if screened:
        _slab_products(X, lo, s, mean, mu_ct32, xs32, xsq, prod32)
        _bounded_costs(xsq, prod32, mu_sq, norm, 2.0 * (d + 4) * _U32, s, out, err)
    else:
        _slab_products(X, lo, s, mean, mu_ct, xs, xsq, prod)
        _bounded_costs(xsq, prod, mu_sq, norm, 2.0 * (d + 4) * _U64, s, out, err)


@njit(inline="always")
def _dot_row(z, mu_c, j):  # pragma: no cover - compiled
    """``z . mu_c[j]`` in float64, in :func:`_centred_row`'s four chains."""
    d = z.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    t = 0
    while t + 4 <= d:
        s0 += z[t] * mu_c[j, t]
        s1 += z[t + 1] * mu_c[j, t + 1]
        s2 += z[t + 2] * mu_c[j, t + 2]
        s3 += z[t + 3] * mu_c[j, t + 3]
        t += 4
    while t < d:
        s0 += z[t] * mu_c[j, t]
        t += 1
    return (s0 + s1) + (s2 + s3)


@njit(inline="always")
def row_cost(X, i, j, sc, z):  # pragma: no cover - compiled
    """Row ``i``'s float64 cost at center ``j``: :func:`slab_costs`'s BLAS expansion, one
    center (``sc``: a :class:`Screen` as a plain tuple; ``z``: scratch of d float64)."""
    _, _, _, mu_c, mu_sq, mean, _, _, _ = sc
    xsq = _centred_row(X, i, mean, z)
    c = xsq - 2.0 * _dot_row(z, mu_c, j) + mu_sq[j]
    return c if c > 0.0 else 0.0


@njit(inline="always")
def row_costs(X, i, columns, out, sc, z):  # pragma: no cover - compiled
    """Row ``i``'s float64 costs at the centers ``columns``, into ``out``: :func:`row_cost`
    at each (the same numbers), the row's centred coordinates taken once (into ``z``)."""
    _, _, _, mu_c, mu_sq, mean, _, _, _ = sc
    xsq = _centred_row(X, i, mean, z)
    for q in range(columns.shape[0]):
        j = columns[q]
        c = xsq - 2.0 * _dot_row(z, mu_c, j) + mu_sq[j]
        out[q] = c if c > 0.0 else 0.0


@njit(parallel=True)
def _costs(X, mu_t, mu_ct, mu_sq, mean, use_dot, out, slab, workers):  # pragma: no cover
    m = X.shape[0]
    d, k = mu_t.shape
    n_slabs = (m + slab - 1) // slab
    rows = slab if use_dot else 0
    for w in numba.prange(workers):  # the slabs w, w + workers, ...: one set of buffers each
        work = (np.empty((rows, d)), np.empty(rows), np.empty((rows, k)))
        for b in range(w, n_slabs, workers):
            lo = b * slab
            hi = min(m, lo + slab)
            slab_costs(X, lo, hi, mu_t, mu_ct, mu_sq, mean, use_dot, out[lo:hi], work)


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
        with _threads_for(X.shape[0], blas=use_dot, cells=centers.shape[0] * X.shape[1]):
            slab = slab_rows(centers.shape[0], use_dot)
            workers = max(1, min(numba.get_num_threads(), -(-X.shape[0] // slab)))
            _costs(read_only(X), mu_t, mu_ct, mu_sq, mean, use_dot, out, slab, workers)
    return out
