"""The exact step's pass over one block of X: everything an iteration needs, in one read.

Costs are computed slab by slab inside the pass (a few thousand rows at a time: float64 sums
of squared differences for small ``k * d`` or fewer than four features; beyond, a BLAS
product, float64 up to 32 clusters and float32 from 33 with ``k * d`` of 4096 or more, each
row's costs within a proven bound of the float64 ones,
:func:`~ballot_dask.costs.screened_slab_costs`)
and never stored, so a task's memory is bounded by the slab, not by the block.  For every row,
the labels under the potentials ``v`` and the top-two reduced-cost gap decide (a gap within
twice the row's bound counts as a tie: the row goes to the band):

- gap ``<= theta`` (or, with an allowance per pair of clusters, the gap to some cluster
  ``b`` minus the pair's allowance): a *band* row, whose label may change; its index and
  coordinates are kept (the caller recomputes its cost row), and on request its few
  cheapest clusters under ``v`` (:mod:`.candidates`: then nothing is recomputed);
- otherwise a *fixed* row, summarised at its label ``argmin_j (C_ij - v_j)``: per-cluster
  counts and coordinate sums (the centroid update), its float64 cost (the objective) and its
  row of the slack matrix ``min over fixed i in a of (C_ib - C_ia)`` (the certificate; less
  twice the row's bound where the costs were screened: a lower bound, still a proof).

A histogram of the gaps (four bins per octave) tells the next pass which threshold
gives the band it wants.  On request (``pair_scale > 0``, small k) the pass also counts the rows
by label, second-best cluster and gap (four bins per octave around ``pair_scale``): the *pair
histogram* from which :mod:`ballot_dask.solvers.shift` moves the potentials toward balance
with no further pass.  At most ``cap`` rows enter the band per block; the others are fixed
(always allowed: fixing a row only narrows what the repair may move, and the shortest paths
ask for a wider band when they need one).

A sparse (CSR) block runs the same pass (:func:`ballot_dask.sparse.exact_pass_csr`): its cost
slabs come from the rows' nonzeros and feed the same per-row step (:func:`_settle`); only the
centroid sums read X again, nonzero by nonzero.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numba
import numpy as np
from scipy.sparse import issparse

from .ahead import wait_for_pass
from .buffers import empty_buffer
from .candidates import _BUFFER, top_columns
from .costs import (
    cost_block,
    row_cost,
    row_costs,
    screened_centers,
    screened_slab_costs,
    slab_rows,
    slab_work,
)
from .jit import njit, read_only
from .kernels import (
    _CHAINS_FROM,
    _best_two,
    _best_two_chains,
    _best_two_scan,
    _threads_for,
    lane_blocks,
    lane_counts,
    lane_scalars,
    lane_workers,
    lane_zeros,
    pass_lanes,
    slack_workers,
)
from .lanes import gather_band
from .pair_bins import PAIR_BINS, _pair_bin

#: gaps below this share of a row's cost scale are ties
_TIE = 1e-12
#: histogram bins: bin 0 for a gap of 0, then ``_SUB`` bins per octave (linear in the
#: mantissa: the bins of a gap in ``[2^(e-1), 2^e)`` start at ``1 + (e + _EXP - 1) * _SUB``),
#: and the last for ``inf``.  A threshold from the histogram then holds at most 1.25 times the
#: rows asked for (a power of two: up to twice, measured here at k = 1024, 10^5 rows: warm
#: bands of 45 000 rows for 16 384 asked)
_EXP = 1080
_SUB = 4
_BINS = 2 * _EXP * _SUB + 2


class Candidates(NamedTuple):
    """A pass's band rows' candidates: ``columns`` (m, w) int32, their ``costs`` (m, w)
    float64 and each row's ``floor`` (m,), as :class:`~ballot_dask.candidates.BandCosts`."""

    columns: np.ndarray
    costs: np.ndarray
    floor: np.ndarray


class ExactPass(NamedTuple):
    """One pass of the exact step over a block (or over every block, combined)."""

    counts: np.ndarray  #: (k,) int64: fixed rows per cluster
    sums: np.ndarray  #: (k, d) float64: their coordinate sums
    objective: float  #: their costs, summed
    slack: np.ndarray  #: (k, k) ``min over fixed i in a of (C_ib - C_ia)``, ``inf`` if none
    rows: np.ndarray  #: (m,) int64: global indices of the band rows, increasing
    x: Any  #: (m, d): their coordinates (X's dtype; CSR rows for a sparse X)
    hist: np.ndarray  #: (_BINS,) int64: rows per gap bin (four per octave)
    theta: float  #: the band threshold the pass used
    mass: np.ndarray | None = None  #: (k,) float64: fixed rows' weight per cluster
    w: np.ndarray | None = None  #: (m,) float64: the band rows' weights (weighted pass only)
    #: the band rows' cheapest clusters (a pass asked for them), see :mod:`.candidates`
    candidates: Candidates | None = None
    #: (k, k, PAIR_BINS) int64: rows by label, second-best cluster and gap bin (every row,
    #: band or fixed), when the pass was asked for them (bins: :mod:`ballot_dask.pair_bins`)
    pairs: np.ndarray | None = None
    pair_scale: float = 0.0  #: the scale of the pair histogram's bins
    #: a lane of the pass took as many band rows as it could: rows within ``theta`` may have
    #: been fixed rather than gathered
    full: bool = False
    #: (n,) int32: every row's label (-1: a band row), when the pass was asked to keep them
    labels: np.ndarray | None = None
    #: the key the workers hold every row's label under, in place of ``labels``
    #: (:mod:`ballot_dask.held_labels`); ``None``: not held
    held_key: str | None = None

    def band_rows_below(self, wanted: int) -> float:
        """A threshold that would have put at least ``wanted`` rows in the band (the upper
        edge of the histogram's bin that reaches them: at most 1.25 times too wide), from
        the pass's histogram of gaps."""
        cumulative = np.cumsum(self.hist)
        j = int(np.searchsorted(cumulative, wanted))
        if j >= _BINS - 1:
            return math.inf
        return 0.0 if j == 0 else bin_edge(j)


#: the mantissa bits that tell a gap's quarter of its octave (``_SUB == 1 << _SUB_BITS``)
_SUB_BITS = 2


@njit(inline="always")
def _bin(gap):  # pragma: no cover - compiled
    """Histogram bin of a gap: 0 for 0, the last for ``inf``, else ``1 + (e + _EXP - 1) *
    _SUB + q`` for ``gap = m 2^e`` (``1/2 <= m < 1``), ``q`` the mantissa's quarter.  Read
    from the float's bits (``math.frexp`` for a subnormal gap): a call to ``frexp`` per row
    took a seventh of the pass (10^6 x 32, k = 16)."""
    if not gap > 0.0:
        return 0
    if gap == np.inf:
        return _BINS - 1
    bits = np.float64(gap).view(np.int64)
    biased = (bits >> 52) & 0x7FF
    if biased == 0:
        m, e = math.frexp(gap)
        q = min(int((m - 0.5) * (2 * _SUB)), _SUB - 1)
    else:
        e = biased - 1022  # gap = 1.f 2^(biased - 1023) = (1.f / 2) 2^e
        q = (bits >> (52 - _SUB_BITS)) & (_SUB - 1)  # floor(4 f): (m - 1/2) 8 = 4 f
    octave = min(max(e + _EXP, 1), 2 * _EXP)
    return 1 + (octave - 1) * _SUB + q


def bin_edge(j: int) -> float:
    """The upper edge of histogram bin ``j`` (``0 < j < _BINS - 1``): every gap in it or
    below is less."""
    octave, q = divmod(j - 1, _SUB)
    return math.ldexp(0.5 + (q + 1) / (2 * _SUB), octave + 1 - _EXP)


def gap_bin(gap: float) -> int:
    """The bin of ``ExactPass.hist`` that holds ``gap`` (the pass's own :func:`_bin`)."""
    return int(_bin(float(gap)))


@njit(inline="always")
def _settle(
    C, r, i, v, bounds, lane, counts, mass, wi, e, slack, obj, band, taken, hist, pairs
):  # pragma: no cover - compiled
    """Row ``i`` of the block, whose costs are ``C[r]`` (each within ``e`` of the float64
    costs: :func:`~ballot_dask.costs.screened_slab_costs`) and weight ``wi``: into the
    lane's band (returns -1), or fixed at its label ``a`` (returns ``a``) with its count,
    weight, weighted cost and slack-matrix row added (the row's slack less ``2 e``: a lower
    bound; a gap within ``2 e`` puts the row in the band, as a tie does).  The caller adds
    its (weighted) coordinates to the centroid sums (the only use of X) and, where the costs
    were screened, its float64 cost to the objective in place of ``C[r, a]``.

    ``bounds`` is ``(theta, cap, scale, *allow)``: the band threshold, the lane's band rows
    at most, the scale of the pair histogram and the allowances (:func:`_allowance_array`).
    The row's gap is counted in ``hist``, and, unless ``pairs`` has no bins, by label,
    second-best cluster and gap in ``pairs`` (the thread's: counts, whose order of addition
    does not matter, are kept per thread, the other sums per lane; so is ``slack``, the
    thread's slack matrix: a minimum, exact in any order).  Unless ``allow`` is empty, the
    band is on the row's *score* ``min_{j != a} (gap to j - allow[a, j])`` rather than on
    its gap (and ``hist`` counts scores): pairs of clusters with an allowance take rows
    farther from their boundary."""
    theta, cap, scale, ptr, col, val = bounds
    k = C.shape[1]
    if k >= _CHAINS_FROM:  # (as _best_two, whose branch inlined here cost k = 16 a tenth)
        a, b1, b2 = _best_two_chains(C, v, r)
    else:
        a, b1, b2 = _best_two_scan(C, v, r)
    gap = b2 - b1
    score = gap
    if ptr.shape[0] > 0:  # the pairs with an allowance, by label (CSR; a pair without one:
        # its gap, at least the row's top-two gap)
        for q in range(ptr[a], ptr[a + 1]):
            j = col[q]
            score = min(score, C[r, j] - v[j] - b1 - val[q])
    hist[_bin(score)] += 1
    if pairs.shape[2] > 0:  # the second-best cluster: the first other one at b2
        a2 = k
        # (a minimum, branch-free: with a scan that stopped at the column, the histogram
        # took 18-20 ms of a pass over 10^6 x 16 at k = 16, one thread; 7-9 ms with this)
        for j in range(k):
            a2 = min(a2, j if (C[r, j] - v[j] == b2) & (j != a) else k)
        if a2 == k:
            a2 = 0 if a else 1
        pairs[a, a2, _pair_bin(gap, scale)] += 1
    # a gap at round-off level is a tie: always in the band, so that no fixed row's label
    # hangs on the last bit of its costs
    tie = gap <= _TIE * (abs(b1) + abs(v[a]) + C[r, a]) or gap <= 2.0 * e
    if (score <= theta or tie) and taken[lane] < cap:
        band[lane, taken[lane]] = i
        taken[lane] += 1
        return -1
    ca = C[r, a]
    counts[lane, a] += 1
    mass[lane, a] += wi
    obj[lane] += wi * ca
    if wi > 0.0:  # a weightless row is not in the plan's support: no constraint
        least = ca + 2.0 * e
        for j in range(k):
            red = C[r, j] - least
            if red < slack[a, j]:
                slack[a, j] = red
        slack[a, a] = 0.0
    return a


@njit(parallel=True)
def _exact_pass(
    X, sc, v, theta, cap, lanes, slab, width, scale, allow, W, row_labels
):  # pragma: no cover - compiled
    m, d = X.shape
    k = sc[0].shape[1]
    screened = sc[8]  # float32 products: a fixed row's cost again in float64
    n_lanes, n_workers = lanes
    weighted = W.shape[0] > 0  # else every row weighs 1
    # each lane's accumulators a cache line from the next lane's (lane_zeros: no false
    # sharing between the threads)
    counts = lane_counts(n_lanes, k)
    mass = lane_zeros(n_lanes, k)
    sums = lane_blocks(n_lanes, k, d)
    slack = np.full((n_workers, k, k), np.inf)  # a minimum: per thread, as the counts
    obj = lane_scalars(n_lanes)
    band = np.empty((n_lanes, max(cap, 1)), dtype=np.int64)
    taken = lane_counts(n_lanes, 1)[:, 0]
    hist = np.zeros((n_workers, _BINS), dtype=np.int64)
    pairs = np.zeros((n_workers, k, k, PAIR_BINS if scale > 0.0 else 0), dtype=np.int64)
    bounds = (theta, cap, scale, allow[0], allow[1], allow[2])
    # the band rows' candidates (width > 0): columns, costs and floor
    held = max(cap, 1) if width > 0 else 1
    columns = np.empty((n_lanes, held, max(width, 1)), dtype=np.int32)
    costs = np.empty((n_lanes, held, max(width, 1)))
    floor = np.empty((n_lanes, held))
    step = (m + n_lanes - 1) // n_lanes
    for w in numba.prange(n_workers):  # one cost buffer per thread, not per lane
        C = np.empty((slab, k))
        E = np.empty(slab)
        z = np.empty(d)
        work = slab_work(slab, sc)
        for lane in range(w, n_lanes, n_workers):
            red = np.empty(width + 1)
            col = np.empty(width + 1, dtype=np.int64)
            buf = np.empty(_BUFFER * (width + 1) + 1, dtype=np.int64)
            bred = np.empty(_BUFFER * (width + 1) + 1)
            lane_end = min(m, (lane + 1) * step)
            for lo in range(lane * step, lane_end, slab):
                hi = min(lo + slab, lane_end)
                screened_slab_costs(X, lo, hi, sc, C, E, work)
                for r in range(hi - lo):
                    i = lo + r
                    wi = W[i] if weighted else 1.0
                    a = _settle(
                        C, r, i, v, bounds, lane, counts, mass, wi, E[r], slack[w], obj, band,
                        taken, hist[w], pairs[w],
                    )  # fmt: skip
                    if row_labels.shape[0]:  # every row's label kept (-1 in the band)
                        row_labels[i] = a
                    if a >= 0:
                        for t in range(d):
                            sums[lane, a, t] += wi * X[i, t]
                        if screened:  # the objective from the float64 cost
                            obj[lane] += wi * (row_cost(X, i, a, sc, z) - C[r, a])
                    elif width > 0:
                        p = taken[lane] - 1
                        floor[lane, p] = top_columns(
                            C, r, v, width, columns[lane, p], costs[lane, p], red, col, buf, bred
                        )
                        if screened:  # the candidates' float64 costs; a floor still below
                            row_costs(X, i, columns[lane, p], costs[lane, p], sc, z)
                            floor[lane, p] -= E[r]
    taken = taken.copy()  # contiguous, as gather_band takes it
    counts, mass, sums = counts[:, :k], mass[:, :k], sums[:, :k]
    return counts, mass, sums, slack, obj, band, taken, hist, columns, costs, floor, pairs


def _least_of_threads(slack: np.ndarray) -> np.ndarray:
    """The threads' slack matrices' minimum, into the first one's (a view: no new k x k
    array, whose first touch cost 0.06 s a pass at k = 4096)."""
    for t in range(1, slack.shape[0]):
        np.minimum(slack[0], slack[t], out=slack[0])
    return slack[0]


def block_share(cap: int, m: int, total: int) -> int:
    """A block's share of a band of at most ``cap`` rows among ``total``: all of it for one
    block, else twice its share (rows are not spread evenly over the blocks) and a few."""
    return cap if m >= total else min(m, math.ceil(2.0 * cap * m / max(total, 1)) + 16)


def _lane_cap(cap: int, lanes: int, shared: bool = False) -> int:
    """Band rows one lane may take: twice its share, and a few (rows in the band are not
    spread evenly over the block); the block's total stays within about twice ``cap``.
    ``shared``: ``cap`` is already twice the block's share of a band over many blocks
    (:func:`block_share`), and the lanes share it (each still up to twice its own share of
    the block's), so that the blocks' total stays within about twice the band asked for (a
    lane's doubling on top of the block's let a pass over ten chunks return 3.6 times the
    rows asked for, beyond the memory budget that allows twice)."""
    if lanes <= 1:
        return cap
    return min(cap, (1 if shared else 2) * -(-cap // lanes) + 64)


def exact_pass(
    X: np.ndarray,
    centers: np.ndarray,
    v: np.ndarray,
    theta: float,
    cap: int,
    offset: int = 0,
    *,
    strict: bool = False,
    weights: np.ndarray | None = None,
    width: int = 0,
    pair_scale: float = 0.0,
    allowance: np.ndarray | None = None,
    shared: bool = False,
    keep_labels: bool = False,
) -> ExactPass:
    """The exact step's pass over one block (see the module docstring).

    Parameters
    ----------
    X : ndarray of shape (m, d)
        The block's rows (float32 or float64).
    centers : ndarray of shape (k, d)
    v : ndarray of shape (k,)
        The potentials the labels and gaps are taken under.
    theta : float
        Band threshold on the top-two gap (``inf``: every row, up to ``cap``).
    cap : int
        Band rows this block should return at most (about twice as many may come back when
        they are unevenly spread over the block's lanes, unless ``strict`` or ``shared``).
    offset : int
        Global index of the block's first row.
    weights : ndarray of shape (m,), default=None
        The rows' weights (``sample_weight``): the fixed rows' ``mass``, sums and objective
        are weighted, and the band rows' weights come back as ``w``.  ``None``: every row
        weighs 1 (``mass`` then equals ``counts``).
    width : int, default=0
        Keep the band rows' ``width`` cheapest clusters under ``v`` as ``candidates``
        (:class:`~ballot_dask.candidates.BandCosts`); 0: none.
    pair_scale : float, default=0.0
        Count every row by label, second-best cluster and gap, in bins around this scale
        (``pairs``; :func:`~ballot_dask.pair_bins.pair_edges`); 0: none.
    allowance : ndarray of shape (k, k), default=None
        Per pair of clusters ``(a, b)``, how much farther than ``theta`` from the boundary
        with ``b`` a row labelled ``a`` may lie and still enter the band (non-negative): the
        band is on ``min_b (gap to b - allowance[a, b]) <= theta``, and ``hist`` counts that
        score.  ``None``: on the top-two gap (all allowances 0).
    shared : bool, default=False
        ``cap`` is one block's :func:`block_share` of a band over many blocks (already twice
        its share): at most about ``cap`` rows come back (see :func:`_lane_cap`).
    keep_labels : bool, default=False
        Return every row's label (``labels``, int32, -1 on band rows): in memory, the step's
        labels then need no other pass (:class:`~ballot_dask.solvers.base.ExactLabels`).

    A sparse (CSR) block goes to :func:`~ballot_dask.sparse.exact_pass_csr`, the same pass
    with the costs from the rows' nonzeros (without candidates).
    """
    if issparse(X):
        from .sparse import exact_pass_csr

        return exact_pass_csr(
            X, centers, v, theta, cap, offset, strict=strict, weights=weights, shared=shared
        )
    m = X.shape[0]
    k = centers.shape[0]
    sc = screened_centers(X, centers)
    lanes = 1 if strict else pass_lanes(m, k, X.shape[1])  # strict: one global cap
    width = min(int(width), k)
    row_labels = np.empty(m if keep_labels else 0, dtype=np.int32)
    wait_for_pass(X.dtype)  # compiled ahead in another process (on a cold kernel cache)
    with _threads_for(m, blas=sc.use_dot, cells=k * X.shape[1]):
        args = _arguments(X, sc, v, theta, cap, lanes, shared, width, pair_scale, allowance)
        out = _exact_pass(*args, _weight_array(weights), row_labels)
    counts, mass, sums, slack, obj, band, taken, hist, columns, costs, floor, pairs = out
    step = -(-m // lanes)  # a lane's rows (the last one's fewer): full when it refused one
    lane_rows = np.minimum(m, step * np.arange(1, lanes + 1)) - step * np.arange(lanes)
    full = bool(((taken >= _lane_cap(int(cap), lanes, shared)) & (taken < lane_rows)).any())
    gathered = gather_band(X, band, taken, columns, costs, floor, width)
    rows = gathered.rows
    candidates = None if gathered.candidates is None else Candidates(*gathered.candidates)
    return ExactPass(
        counts=counts.sum(axis=0),
        sums=sums.sum(axis=0),
        objective=float(obj.sum()),
        slack=_least_of_threads(slack),
        rows=rows + offset,
        x=gathered.x,
        hist=hist.sum(axis=0),
        theta=float(theta),
        mass=mass.sum(axis=0),
        w=None if weights is None else np.asarray(weights, dtype=np.float64)[rows],
        candidates=candidates,
        pairs=pairs.sum(axis=0) if pair_scale > 0.0 else None,
        pair_scale=float(pair_scale),
        full=full,
        labels=row_labels if keep_labels else None,
    )


def _arguments(
    X: Any,
    sc: Any,
    v: Any,
    theta: float,
    cap: int,
    lanes: int,
    shared: bool,
    width: int,
    pair_scale: float,
    allowance: np.ndarray | None,
) -> tuple:
    """:func:`_exact_pass`'s arguments but its weights and labels (call inside
    :func:`~ballot_dask.kernels._threads_for`, which sets the threads of the slack)."""
    k = sc[0].shape[1]
    return (
        read_only(X),
        tuple(sc),
        np.asarray(v, dtype=np.float64),
        float(theta),
        _lane_cap(int(cap), lanes, shared),
        (lanes, slack_workers(lanes, k)),
        slab_rows(k, sc.use_dot),
        width,
        float(pair_scale),
        _allowance_array(allowance, k),
    )


def pass_signature(dtype: Any) -> tuple:
    """The types :func:`_exact_pass` is compiled for with X of ``dtype`` (float32 or float64;
    the same for any block, centers and options): what :mod:`ballot_dask.ahead` compiles."""
    X = np.zeros((2, 2), dtype=dtype)
    args = _arguments(
        X, screened_centers(X, np.zeros((2, 2))), np.zeros(2), 0, 2, 1, False, 0, 0, None
    )
    labels = np.empty(0, dtype=np.int32)
    return tuple(numba.typeof(a) for a in (*args, _weight_array(None), labels))


def _allowance_array(allowance: np.ndarray | None, k: int) -> tuple:
    """The kernel's allowances: the positive entries off the diagonal, row by row (CSR:
    ``indptr``, ``indices``, ``values``); empty arrays for none.  A pair without one adds
    nothing to a row's score (its gap is at least the top-two gap), so a row whose label
    has none costs nothing more (at k = 1024 a dense row of allowances per row cost the pass
    a quarter of its time, in memory traffic)."""
    if allowance is None:
        return (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
    allowance = np.array(allowance, dtype=np.float64)
    if allowance.shape != (k, k):
        raise ValueError(f"allowance must have shape ({k}, {k}), got {allowance.shape}")
    np.fill_diagonal(allowance, 0.0)
    rows, cols = np.nonzero(allowance > 0.0)
    indptr = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=k), out=indptr[1:])
    return indptr, cols.astype(np.int64), allowance[rows, cols]


def _weight_array(weights: np.ndarray | None) -> np.ndarray:
    """The kernels' weights: float64, or empty for unit weights."""
    if weights is None:
        return np.empty(0)
    return np.ascontiguousarray(weights, dtype=np.float64)


@njit(inline="always")
def _label_slab(C, lo, hi, v, rows, fixed, p, out):  # pragma: no cover - compiled
    """``out[i]`` for the rows ``lo <= i < hi`` (costs ``C[i - lo]``): ``argmin_j (C_ij -
    v_j)``, or ``fixed[p]`` where ``rows[p] == i``.  Returns the next ``p``."""
    for r in range(hi - lo):
        i = lo + r
        if p < rows.shape[0] and rows[p] == i:
            out[i] = fixed[p]
            p += 1
            continue
        out[i] = _best_two(C, v, r)[0]
    return p


@njit(parallel=True)
def _labels_pass(X, sc, v, rows, fixed, out, lanes, slab):  # pragma: no cover
    m = X.shape[0]
    k = sc[0].shape[1]
    n_lanes, n_workers = lanes
    step = (m + n_lanes - 1) // n_lanes
    for w in numba.prange(n_workers):  # one cost buffer per thread, not per lane
        C = np.empty((slab, k))
        E = np.empty(slab)
        work = slab_work(slab, sc)
        for lane in range(w, n_lanes, n_workers):
            lane_end = min(m, (lane + 1) * step)
            p = np.searchsorted(rows, lane * step)
            for lo in range(lane * step, lane_end, slab):
                hi = min(lo + slab, lane_end)
                screened_slab_costs(X, lo, hi, sc, C, E, work)
                p = _label_slab(C, lo, hi, v, rows, fixed, p, out)


def power_labels(
    X: np.ndarray,
    centers: np.ndarray,
    v: np.ndarray,
    rows: np.ndarray | None = None,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """``argmin_j (C_ij - v_j)`` for a block (lowest index on ties), except on the block-local
    ``rows`` (sorted), which take ``fixed``: the labels :func:`exact_pass` counted, from costs
    computed with its own arithmetic and partition of the block."""
    m, k = X.shape[0], centers.shape[0]
    rows = np.zeros(0, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    fixed = np.zeros(0, dtype=np.int64) if fixed is None else np.asarray(fixed, dtype=np.int64)
    if issparse(X):
        from .sparse import power_labels_csr

        return power_labels_csr(X, centers, v, rows, fixed)
    out = np.empty(m, dtype=np.int64)
    if m == 0:
        return out
    sc = screened_centers(X, centers)
    lanes = pass_lanes(m, k, X.shape[1])  # the exact pass's, hence its slabs
    with _threads_for(m, blas=sc.use_dot, cells=k * X.shape[1]):
        _labels_pass(
            read_only(X),
            tuple(sc),
            np.asarray(v, dtype=np.float64),
            rows,
            fixed,
            out,
            (lanes, lane_workers(lanes)),
            slab_rows(k, sc.use_dot),
        )
    return out


def whole_block(
    X: np.ndarray, k: int, offset: int = 0, weights: np.ndarray | None = None
) -> ExactPass:
    """The pass's summary when every row of the block is in the band (nothing to read)."""
    m, d = X.shape
    hist = np.zeros(_BINS, dtype=np.int64)
    hist[-1] = m
    return ExactPass(
        counts=np.zeros(k, dtype=np.int64),
        sums=np.zeros((k, d)),
        objective=0.0,
        slack=np.full((k, k), np.inf),
        rows=np.arange(offset, offset + m, dtype=np.int64),
        x=X,
        hist=hist,
        theta=np.inf,
        mass=np.zeros(k),
        w=None if weights is None else np.asarray(weights, dtype=np.float64),
    )


def band_costs(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Cost rows of gathered band rows, with the pass's own arithmetic (a transient array:
    no huge-page advice, see :mod:`ballot_dask.buffers`)."""
    return cost_block(x, centers, out=empty_buffer((x.shape[0], centers.shape[0])))


__all__ = [
    "ExactPass",
    "band_costs",
    "block_share",
    "exact_pass",
    "power_labels",
    "whole_block",
]
