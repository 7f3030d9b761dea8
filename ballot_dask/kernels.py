"""Per-chunk kernels: one row block in, small summaries out.

Every solver in the package is written as passes over row blocks.  A pass applies one of the
kernels below to each block (the in-memory path has one block, a Dask array has one per chunk)
and reduces the per-block summaries with the matching ``combine_*`` function.  The summaries are
O(k^2) numbers, so the only state a pass broadcasts is the centers and the k dual potentials.

The hot loops are compiled with numba.  Rows are split into a fixed number of *lanes* that
depend only on the block's row count (never on the thread count), so every sum is accumulated
in the same order on every run: results do not depend on the thread count (the cost kernel may
still vectorise a row's sum differently with a chunk's memory alignment: a last-bit effect).

The costs themselves (cost blocks, the exact pass's slabs) are in :mod:`ballot_dask.costs`;
every accumulation is float64.

The kernels that read X (:func:`~ballot_dask.costs.cost_block`, :func:`assignment_terms`,
:func:`label_sums`, :func:`rounded_plan_terms`) take a ``scipy.sparse`` CSR block too: they
hand it to their twin in :mod:`ballot_dask.sparse`, which reads the block's nonzeros and never
densifies it.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numba
import numpy as np
from scipy.sparse import issparse

from .jit import njit, read_only

_LANE_ROWS = 4096
_MAX_LANES = 64
_PARALLEL_ROWS = 32768  # smaller blocks run on one thread: a parallel region costs more
#: ... unless their costs take this many multiply-adds (:func:`_threads_for`)
_PARALLEL_WORK = 1 << 24


_LANE_CELLS = 1 << 22  # per-lane accumulators stay under 32 MB in all


#: 8-byte numbers in a cache line (64 bytes).  Per-lane accumulators are laid out with at
#: least a line between one lane's numbers and the next lane's (:func:`lane_zeros`): the
#: lanes of a block run on different threads, and two threads that write to one line take
#: it from each other at every write (false sharing).  Measured here, the exact pass over
#: 10^6 float32 rows on two threads, side by side and a line apart (the two kernels
#: alternated in one process): k = 2, d = 16, 63 and 30 ms; k = 8, d = 2, 51 and 17 ms;
#: k = 4, d = 16, 33 and 28 ms; k = 16, d = 16, 46 and 45 ms (its rows span two lines)
_LINE = 8


@njit(inline="always")
def lane_zeros(n_lanes, k):  # pragma: no cover - compiled
    """Per-lane accumulators of ``k`` float64 zeros: shape ``(n_lanes, k + _LINE)``, a lane's
    row ``[lane, :k]`` a cache line or more from the next lane's.  Contiguous, so that a
    kernel's loops over a row still vectorise (a view of the first ``k`` columns would not:
    its strides are unknown to the compiler); the kernel returns ``[:, :k]``."""
    return np.zeros((n_lanes, k + _LINE))


@njit(inline="always")
def lane_counts(n_lanes, k):  # pragma: no cover - compiled
    """:func:`lane_zeros` of int64."""
    return np.zeros((n_lanes, k + _LINE), dtype=np.int64)


@njit(inline="always")
def lane_scalars(n_lanes):  # pragma: no cover - compiled
    """One float64 zero per lane, a cache line apart (a strided view, indexed by lane)."""
    return np.zeros((n_lanes, _LINE))[:, 0]


@njit(inline="always")
def lane_blocks(n_lanes, k, d):  # pragma: no cover - compiled
    """Zeros in per-lane blocks of ``k`` rows of ``d``: shape ``(n_lanes, k + p, d)``, ``p``
    rows of padding (a cache line or more) between lanes; the kernel returns ``[:, :k]``."""
    return np.zeros((n_lanes, k + (_LINE + d - 1) // max(d, 1), d))


def _n_lanes(m: int, cells: int = 1) -> int:
    """Lanes for a block of ``m`` rows: a function of the shapes only, so sums are always
    accumulated in the same order; fewer when each lane holds many (``cells``) numbers (then
    a power of two: three lanes on two threads would take two lanes' time)."""
    cap = max(1, min(_MAX_LANES, _LANE_CELLS // max(cells, 1)))
    cap = 1 << (cap.bit_length() - 1)  # a power of two: lanes split evenly over the threads
    return int(min(max(1, math.ceil(m / _LANE_ROWS)), cap))


@functools.cache
def _blas_controller() -> Any:
    """The process's BLAS libraries, found once: ``threadpool_limits`` scans the process's
    mapped libraries at every call (3-4 ms once numba and scikit-learn are loaded, 0.3 s of a
    20-iteration fit on 10^6 rows), a controller only sets their thread counts.  SciPy's
    BLAS is loaded first: the compiled kernels' products (numba's ``np.dot``) call it, and a
    controller made before it was loaded never held it to one thread (their threads then ran
    inside the kernels' own, and a product's rounding followed the thread count)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


#: how deep the calling thread is in regions that hold BLAS to one thread (:func:`_blas_held`)
_holding = threading.local()


@contextmanager
def _blas_held() -> Iterator[None]:
    """BLAS held to one thread for the block, unless the calling thread holds it already (an
    enclosing region: a solver step holds it, and the kernels' regions inside it would set
    the same limit again, each time reading and restoring every library's thread count:
    about 40 us, 254 times in a 30-iteration fit on 10^5 x 16 rows, k = 16).  Only the
    calling thread's own enclosing region counts: another thread's (a Dask task on the
    threaded scheduler) restores the limits it found when it ends, so it is not relied on."""
    depth = getattr(_holding, "depth", 0)
    if depth:
        _holding.depth = depth + 1
        try:
            yield
        finally:
            _holding.depth = depth
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        _holding.depth = 1
        try:
            yield
        finally:
            _holding.depth = 0


@contextmanager
def blas_on_one_thread() -> Iterator[None]:
    """BLAS held to one thread (where the compiled kernels run on several): what a solver
    step runs under (:data:`ballot_dask.solvers.SOLVERS`).  Its calls between the kernels are
    small (k x k systems, products with a band's rows); after a call on its own threads,
    OpenBLAS's threads spin for a while and take a core from the next parallel kernel
    (measured here: E-BalLOT on 10^5 x 16 separated rows, k = 256, reg 1e-2, 20 iterations
    at most, alternated with the tree before: 8.7 s instead of 12.6 s, medians of two).
    As scikit-learn's ``KMeans`` holds it in its Lloyd loop."""
    with ExitStack() as stack:
        if numba.get_num_threads() > 1:
            stack.enter_context(_blas_held())
        yield


@contextmanager
def _threads_for(rows: int, blas: bool = False, cells: int = 0) -> Iterator[None]:
    """One thread for a small block.  Starting a parallel region on a busy machine can cost
    milliseconds (threads spin at its barrier), more than the work on a few thousand rows.
    A block of fewer rows runs in parallel all the same when ``rows * cells`` (``cells``:
    the multiply-adds a row takes, ``k * d`` for its costs) reaches :data:`_PARALLEL_WORK`.

    With ``blas`` (the region calls BLAS from its threads), BLAS runs single-threaded inside
    it, also on one thread (and when numba runs on one thread already): its own threads would
    contend with the region's (several times slower), and after a call of its own they spin
    for a while, taking a core from the next parallel region (measured here: a 20-iteration
    fit on 10^6 x 32, k = 16, took 3.4 s instead of 2.0 s when the small blocks of its row
    sample and band called BLAS with its own threads)."""
    parallel = rows >= _PARALLEL_ROWS or rows * cells >= _PARALLEL_WORK
    with ExitStack() as stack:
        if blas:  # (whatever numba's threads: the products' rounding does not follow them)
            stack.enter_context(_blas_held())
        if parallel:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


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
    counts = lane_counts(n_lanes, k)  # a cache line between lanes (lane_zeros)
    step = (m + n_lanes - 1) // n_lanes
    write_labels = labels.shape[0] == m
    for lane in numba.prange(n_lanes):
        for i in range(lane * step, min(m, (lane + 1) * step)):
            a, b1, b2 = _best_two(C, v, i)
            counts[lane, a] += 1
            gaps[i] = b2 - b1
            if write_labels:
                labels[i] = a
    return counts[:, :k]


def reduced_cost_labels(C: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``argmin_j (C_ij - v_j)`` (a power diagram) and the top-two reduced-cost gaps.

    A point whose gap is large keeps its label under any small change of the potentials; only
    points with a small gap are in doubt.  With one column the gap is ``inf``.
    """
    m = C.shape[0]
    labels = np.empty(m, dtype=np.int64)
    gaps = np.empty(m, dtype=np.float64)
    with _threads_for(m):
        _top_two(read_only(C), np.asarray(v, dtype=np.float64), labels, gaps, _n_lanes(m))
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
        _runner_up(read_only(C), np.asarray(v, dtype=np.float64), labels, second, gaps, _n_lanes(m))
    return labels, second, gaps


_EXP_FLOOR = -700.0  # exp() below this is 0 for our sums; skipping it avoids slow denormals


@njit(inline="always")
def _exp(x):  # pragma: no cover - compiled
    return math.exp(x) if x > _EXP_FLOOR else 0.0


@njit(parallel=True)
def _assignment(X, C, v, rows, fixed, n_lanes):  # pragma: no cover - compiled
    m, k = C.shape
    d = X.shape[1]
    counts = lane_counts(n_lanes, k)  # a cache line between lanes (lane_zeros)
    sums = lane_blocks(n_lanes, k, d)
    slack = np.full((n_lanes, k, k), np.inf)
    obj = lane_scalars(n_lanes)
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
    return counts[:, :k], sums[:, :k], slack, obj


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
            read_only(X),
            read_only(C),
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
        _label_sums(read_only(X), np.asarray(labels, dtype=np.int64), sums)
    return sums
