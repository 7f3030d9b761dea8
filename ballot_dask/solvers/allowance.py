"""The exact step's band reach per pair of clusters (its *allowance*), grown where a band
failed (:func:`_allow`; the pass applies it, :func:`~ballot_dask.exact_pass.exact_pass`).

A single threshold on the top-two gap serves the boundaries that cut through dense clusters,
where the potentials are sharp.  Where a boundary lies in a sparse region (the tails of
separated clusters), the potentials are loose: the rows a cluster must give up or take in may
lie far beyond it, and a threshold wide enough for them holds most of X.  The allowance lets
the pairs that need it reach further, under the same potentials and threshold.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..candidates import BandCosts, _keep_smallest
from ..capacities import Capacities
from ..exact_pass import ExactPass, gap_bin
from ..jit import njit
from ..kernels import _LINE, lane_counts
from .search import _sample_costs, _Search

_QUOTA = 2  # a cluster's band rows hold at least this many times its excess, by the sample
_QUOTA_ROWS = 8  # ... and this many of the sample's rows
_SHARE_ROWS = 16384  # the band's share under an allowance is told by this many sample rows ...
_SLAB_CELLS = 1 << 20  # ... in slabs of this many costs


def _allow(
    search: _Search,
    centers: np.ndarray,
    sample: np.ndarray | None,
    capacities: Capacities,
    band: ExactPass,
    labels: np.ndarray,
) -> bool:
    """Grow the band's per-pair allowance (its reach beyond ``theta``, under the same
    potentials ``v``) where the band proved too narrow; ``False`` if it would not grow.

    A single threshold on the top-two gap serves the boundaries that cut through dense
    clusters, where the potentials are sharp.  Where a boundary lies in a sparse region (the
    tails of separated clusters), the potentials are loose: the rows a cluster must give up
    or take in may lie far beyond it, and a threshold wide enough for them holds most of X.
    Two rules reach them, each for the pairs that need it:

    - *quotas*: a cluster with ``e`` points beyond its bounds under ``v`` reaches as far as
      holds about ``_QUOTA * e`` of its rows (rows labelled by it for a surplus; rows whose
      gap to it is least for a deficit), as the sample's rows tell; a surplus cluster whose
      fixed rows alone are over its bound (no move of the band's rows settles it) reaches
      that many rows beyond the threshold;
    - *the band's own potentials*: under the shortest paths' potentials ``v + delta`` of the
      band that failed, a fixed row labelled ``a`` would move to ``b`` if its gap to ``b`` is
      below ``delta_b - delta_a``: the pair reaches that far.

    The allowance of ``(a, b)`` is the larger of the two (``e_a + f_b`` for the quotas, ``e``
    of the surplus cluster ``a`` and ``f`` of the deficit cluster ``b``), never less than it
    was."""
    k = capacities.n_clusters
    v = search.potentials
    old = search.allowance_for_pass()
    allow = np.zeros((k, k)) if old is None else old.copy()
    counts = band.counts + np.bincount(labels, minlength=k)
    n = int(counts.sum())
    sample_labels = None
    if sample is not None:
        costs = _sample_costs(search, sample, centers)
        s = costs.costs.shape[0]
        sample_labels, gaps = costs.labels(v)
        reach_out, reach_in = np.zeros(k), np.zeros(k)
        over = np.flatnonzero(counts > capacities.upper)
        if over.size:  # each surplus cluster's rows, grouped once (k may be large)
            order = np.argsort(sample_labels, kind="stable")
            first = np.searchsorted(sample_labels[order], np.arange(k + 1))
            for a in over:
                excess = int(counts[a] - capacities.upper[a])
                members = gaps[order[first[a] : first[a + 1]]]
                # its fixed rows alone over its bound: however the band's own rows of it
                # move, that many rows beyond the threshold must leave too (the excess may
                # count the band's rows, or not, as the repair left the labels)
                beyond = int(band.counts[a] - capacities.upper[a])
                if beyond > 0:
                    held = int(np.count_nonzero(members <= search.theta))
                    reach_out[a] = _reach(members, beyond, s, n, search.theta, held)
                else:
                    reach_out[a] = _reach(members, excess, s, n, search.theta)
        under = np.flatnonzero(counts < capacities.lower)
        if under.size:  # the deficit clusters' columns, read in one pass over the sample rows
            lack = capacities.lower[under] - counts[under]
            least = costs.costs[np.arange(s), sample_labels] - v[sample_labels]
            reach_in[under] = _reach_in(
                costs.costs, v, least, sample_labels, under, lack, n, search.theta
            )
        allow = np.maximum(allow, reach_out[:, None] + reach_in[None, :])
    if search.repaired is not None:
        delta = search.repaired - v
        allow = np.maximum(allow, delta[None, :] - delta[:, None])
    np.fill_diagonal(allow, 0.0)
    allow = np.maximum(allow, 0.0)
    if not np.all(np.isfinite(allow)):
        return False
    # the pairs a row can use (see _Search.pass_allowance): the failed pass's fixed rows
    # labelled a have a gap to b of at least their slack less v_b - v_a; its band rows enter
    # again by their gap or by the pairs it applied
    bound = band.slack - (v[None, :] - v[:, None])
    if old is not None and search.applied is not None:
        bound[search.applied] = -np.inf
    search.reach_bound = (bound, band.theta)
    # grown where a pass applies it (growth in pairs no row can use would repeat the pass)
    usable = np.where(bound <= search.theta + allow, allow, 0.0)
    before = np.zeros((k, k))
    if old is not None and search.applied is not None:
        before = np.where(search.applied, old, 0.0)
    if not np.any(usable > before + 1e-9 * (np.abs(before) + search.theta)):
        return False
    search.allowance = (v, allow)
    search.allowed += 1
    # room for the rows it adds (a pass keeps at most about twice the rows it is asked for)
    rows = search.limit
    if sample_labels is not None:  # the sample's costs and labels from above
        share = _allowed_share(costs, sample_labels, v, usable, search.theta)
        rows = int(1.25 * share * n) + search.per_cluster * k
    search.wanted = min(search.limit, max(search.wanted, rows))
    return True


def _allowed_share(
    costs: BandCosts, labels: np.ndarray, v: np.ndarray, allow: np.ndarray, theta: float
) -> float:
    """The share of the sample's rows (their cost rows ``costs``, their labels under ``v``)
    a band at ``theta`` holds with the allowance ``allow`` (see
    :func:`~ballot_dask.exact_pass.exact_pass`): from every few rows (``_SHARE_ROWS`` in
    all, an estimate that only sizes the band), a slab of rows at a time."""
    m, k = costs.costs.shape
    stride = max(1, m // _SHARE_ROWS)
    picked = np.arange(0, m, stride)
    held = 0
    step = max(1, _SLAB_CELLS // max(k, 1))
    for lo in range(0, picked.size, step):
        at = picked[lo : lo + step]
        reduced = costs.costs[at] - v[None, :]
        lab = labels[at]
        rows = np.arange(at.size)
        score = reduced - reduced[rows, lab][:, None] - allow[lab]
        score[rows, lab] = np.inf
        held += int(np.count_nonzero(score.min(axis=1) <= theta))
    return held / max(picked.size, 1)


def _truncated(band: ExactPass) -> bool:
    """Whether the pass surely left rows within its threshold out of its band (its cap)."""
    top = gap_bin(band.theta)
    return bool(top > 0 and band.hist[:top].sum() > band.rows.shape[0])


def _quota_rows(points: int, s: int, n: int) -> int:
    """Sample rows that stand for about ``_QUOTA * points`` rows of X (and a few)."""
    return math.ceil(_QUOTA * points * s / max(n, 1)) + _QUOTA_ROWS


def _reach_in(
    costs: np.ndarray,
    v: np.ndarray,
    least: np.ndarray,
    labels: np.ndarray,
    under: np.ndarray,
    lack: np.ndarray,
    n: int,
    theta: float,
) -> np.ndarray:
    """:func:`_reach` for each deficit cluster ``under[t]`` (``lack[t]`` points short): the
    gaps to it of the sample's rows labelled otherwise (``costs``: their cost rows, ``least``
    their least reduced costs under ``v``, ``labels`` their labels).  One pass over the rows
    keeps each column's smallest gaps (the rows they stand for are few), instead of a copy of
    every deficit column and a selection in each (at k = 1024 on 66 667 sample rows: most of
    the second a failed band's allowance took)."""
    s = costs.shape[0]
    ranks = np.array([_quota_rows(int(e), s, n) for e in lack], dtype=np.int64)
    kept = _smallest_gaps(
        costs,
        np.asarray(v, dtype=np.float64),
        least,
        labels.astype(np.int64),
        under.astype(np.int64),
        ranks,
        max(1, min(numba.get_num_threads(), under.shape[0])),
    )
    return np.maximum(kept - theta, 0.0)


@njit(parallel=True)
def _smallest_gaps(costs, v, least, labels, under, ranks, workers):  # pragma: no cover
    """For each column ``b = under[t]``: the ``ranks[t]``-th smallest ``costs[i, b] - v[b] -
    least[i]`` over the rows ``i`` not labelled ``b`` (the largest there is when fewer rows;
    0 when none), as ``np.partition`` picks it (ties counted).  Rows outer, so that each
    cost row is read once from memory; thread ``w`` keeps the columns ``w, w + workers, ...``."""
    s = costs.shape[0]
    u = under.shape[0]
    # a column's numbers a cache line from the next column's, which another thread keeps
    # (kernels.lane_zeros: no false sharing)
    most = max(1, ranks.max())
    red = np.empty((u, most + _LINE))  # (only the first ``ranks[t]`` of a row are used)
    rows = np.empty((u, most + _LINE), dtype=np.int64)
    held = lane_counts(u, 1)[:, 0]
    for w in numba.prange(workers):
        for i in range(s):
            for t in range(w, u, workers):
                b = under[t]
                if labels[i] != b:
                    x = costs[i, b] - v[b] - least[i]
                    held[t] = _keep_smallest(x, i, red[t], rows[t], held[t], ranks[t])
    out = np.zeros(u)
    for t in range(u):
        if held[t]:
            out[t] = red[t, held[t] - 1]
    return out


def _reach(gaps: np.ndarray, points: int, s: int, n: int, theta: float, held: int = 0) -> float:
    """How far beyond ``theta`` a band must reach to hold about ``_QUOTA * points`` rows of
    X, from the gaps of the sample's (``s`` of ``n``) rows that could make that move, beyond
    the ``held`` smallest (the sample's rows within the threshold, where the band's own rows
    cannot settle the cluster: the quota is then counted beyond them)."""
    if not gaps.size:
        return 0.0
    rows = min(gaps.size, held + _quota_rows(points, s, n))
    return max(0.0, float(np.partition(gaps, rows - 1)[rows - 1]) - theta)
