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
from typing import NamedTuple

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


def lane_workers(lanes: int) -> int:
    """Threads a compiled kernel's lanes are spread over (call inside :func:`_threads_for`):
    each thread works through its lanes one after another with one cost buffer, instead of a
    buffer per lane (a block has dozens of lanes; where freed memory goes back to the system
    at once, as a Dask nanny's ``MALLOC_TRIM_THRESHOLD_`` makes it, a buffer per lane cost a
    pass its page faults: the exact pass on 250 000 rows took 39 ms instead of 19 ms).  The
    lanes, hence the results, do not depend on it."""
    return max(1, min(numba.get_num_threads(), lanes))


#: the exact pass's slack matrices (one per thread, k^2 float64 each) take at most this many
#: cells in all (256 MB), and always one
_SLACK_CELLS = 1 << 25


def pass_lanes(m: int, k: int, d: int) -> int:
    """Lanes of the exact pass and of the labels pass that repeats its slabs: sized by what
    a lane keeps (its counts, weights and coordinate sums).  The slack matrix is a minimum,
    exact in any order, so it is kept per thread (:func:`slack_workers`), not per lane: at
    k = 4096 a lane's would be 128 MB, and lanes held one each left a pass on one thread."""
    return _n_lanes(m, k * (d + 2))


def slack_workers(lanes: int, k: int) -> int:
    """Threads the exact pass's lanes are spread over: :func:`lane_workers`, fewer when their
    slack matrices would exceed ``_SLACK_CELLS`` (from k = 2048 on, on many threads)."""
    return max(1, min(lane_workers(lanes), _SLACK_CELLS // max(k * k, 1)))


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
        slab_costs(X, lo, hi, mu_t, mu_ct, mu_sq, mean, False, out, (xs, xsq, prod))
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
        with _threads_for(X.shape[0], blas=use_dot):
            slab = slab_rows(centers.shape[0], use_dot)
            workers = max(1, min(numba.get_num_threads(), -(-X.shape[0] // slab)))
            _costs(X, mu_t, mu_ct, mu_sq, mean, use_dot, out, slab, workers)
    return out


#: columns from which :func:`_best_two` scans a row in four chains
_CHAINS_FROM = 64


@njit(inline="always")
def _best_two(C, v, i):  # pragma: no cover - compiled
    """Row ``i``'s reduced-cost argmin (lowest index on ties), minimum and second minimum
    (the minimum again on a tie).  Branch-free; from ``_CHAINS_FROM`` columns in four
    chains (:func:`_best_two_chains`), the same three numbers."""
    if C.shape[1] >= _CHAINS_FROM:
        return _best_two_chains(C, v, i)
    return _best_two_scan(C, v, i)


@njit(inline="always")
def _best_two_scan(C, v, i):  # pragma: no cover - compiled
    """:func:`_best_two` in one scan (the faster below ``_CHAINS_FROM`` columns)."""
    b1 = np.inf
    b2 = np.inf
    a = 0
    for j in range(C.shape[1]):
        x = C[i, j] - v[j]
        a = j if x < b1 else a
        b2 = min(b2, max(b1, x))
        b1 = min(b1, x)
    return a, b1, b2


@njit(inline="always")
def _chain_step(x, j, p, a, s):  # pragma: no cover - compiled
    """One column of a top-two chain: reduced cost ``x`` of column ``j`` into the chain's
    least ``p``, its column ``a`` and its second least ``s`` (branch-free)."""
    return min(p, x), (j if x < p else a), min(s, max(p, x))


@njit(inline="always")
def _best_two_chains(C, v, i):  # pragma: no cover - compiled
    """:func:`_best_two` in four independent chains over the columns (``j mod 4``, the last
    few in the first), merged at the end: one scan's chain of dependent minima took 1.6
    times as long at k = 1024 (measured here; at k = 16 the one scan is faster, and a call
    of its own keeps the caller's code as compact as it was)."""
    k = C.shape[1]
    p0 = p1 = p2 = p3 = np.inf  # each chain's least, its column and its second least
    a0 = a1 = a2 = a3 = 0
    s0 = s1 = s2 = s3 = np.inf
    j = 0
    while j + 4 <= k:
        p0, a0, s0 = _chain_step(C[i, j] - v[j], j, p0, a0, s0)
        p1, a1, s1 = _chain_step(C[i, j + 1] - v[j + 1], j + 1, p1, a1, s1)
        p2, a2, s2 = _chain_step(C[i, j + 2] - v[j + 2], j + 2, p2, a2, s2)
        p3, a3, s3 = _chain_step(C[i, j + 3] - v[j + 3], j + 3, p3, a3, s3)
        j += 4
    while j < k:  # the last columns, in the first chain (their indices exceed its others)
        p0, a0, s0 = _chain_step(C[i, j] - v[j], j, p0, a0, s0)
        j += 1
    # merge: the least of the union, its lowest column, and the second least of the union
    a, b1, b2 = a0, p0, s0
    for p, q, s in ((p1, a1, s1), (p2, a2, s2), (p3, a3, s3)):
        b2 = min(min(b2, s), max(b1, p))
        a = q if p < b1 or (p == b1 and q < a) else a
        b1 = min(b1, p)
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


@njit(inline="always")
def _exp(x):  # pragma: no cover - compiled
    return math.exp(x) if x > _EXP_FLOOR else 0.0


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
