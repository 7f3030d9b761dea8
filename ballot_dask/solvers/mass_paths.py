"""Successive shortest paths for weighted points: the exact core of a weighted assignment step.

With ``sample_weight`` the transport problem's sources carry masses ``w_i`` instead of one
point each, and the capacities are masses too.  An optimum may split a point's mass between
clusters, so the unit paths of :mod:`.paths` (which move whole points) are generalised to
*pieces*: a piece is a share of one point's mass sitting in one cluster.  Every point starts as
one piece at its label; an augmentation moves ``delta`` along the shortest path, where
``delta`` is the smallest of the source's surplus, the sink's deficit, the slack of the
capacity arcs on the path and the mass of the piece each cluster arc moves.  A piece heavier
than ``delta`` is split: ``delta`` of it moves, the rest stays.  The arc lengths, the dual update
and the certificate are those of :mod:`.paths` (the slack matrix is taken over pieces, which
is the support of the plan), so the result is an exact optimum of the weighted problem,
whatever the weights.

Each augmentation either empties the source's surplus or the sink's deficit, saturates a
capacity arc, or moves a whole piece, so the loop ends; a basic optimum splits at most
``k - 1`` points, and with whole-number weights and capacities every ``delta`` is a whole
number, so every share is one (the copies of a repeated row, split as the repeated rows would
be).  Masses are compared within ``tol`` (round-off of
the sums of fractional weights).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..jit import njit
from .dijkstra import _shortest_path
from .paths import DONE, LIMIT, STUCK, _push, _unlink

__all__ = ["DONE", "LIMIT", "STUCK", "MassPathsResult", "mass_shortest_paths"]


class MassPathsResult(NamedTuple):
    """What :func:`mass_shortest_paths` returns."""

    potentials: np.ndarray  #: (k,) the final potentials
    status: int  #: :data:`DONE`, :data:`LIMIT` or :data:`STUCK`
    augmentations: int  #: augmenting paths
    slack: np.ndarray  #: (k, k) slack matrix over the pieces
    piece_rows: np.ndarray  #: (p,) band row of every piece
    piece_mass: np.ndarray  #: (p,) its mass (> 0)
    piece_labels: np.ndarray  #: (p,) its cluster


@njit()
def _rescan(costs, prow, plab, head, nxt, x, b):  # pragma: no cover - compiled
    """The cheapest move ``x -> b`` over the pieces in ``x``: ``(C_ib - C_ix, piece)``."""
    best = np.inf
    where = -1
    p = head[x]
    while p >= 0:
        i = prow[p]
        r = costs[i, b] - costs[i, x]
        if r < best:
            best = r
            where = p
        p = nxt[p]
    return best, where


@njit()
def _grow(a, size):  # pragma: no cover - compiled
    out = np.empty(size, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit()
def _mass_paths(
    costs, weights, labels, lower, upper, fixed_mass, v_in, tol, max_augment
):  # pragma: no cover - compiled
    m, k = costs.shape
    R = k
    v = np.zeros(k + 1)
    v[:k] = v_in
    size = m + 2 * k + 16
    prow = np.empty(size, np.int64)
    pmass = np.empty(size)
    plab = np.empty(size, np.int64)
    nxt = -np.ones(size, np.int64)
    prv = -np.ones(size, np.int64)
    rnext = -np.ones(size, np.int64)  # the row's next piece
    head = -np.ones(k, np.int64)
    rhead = -np.ones(m, np.int64)  # a row's first piece
    counts = fixed_mass.copy()
    pieces = 0
    for i in range(m - 1, -1, -1):
        if weights[i] <= 0.0:
            continue  # a weightless row is in no cluster's support
        p = pieces
        pieces += 1
        a = labels[i]
        prow[p] = i
        pmass[p] = weights[i]
        plab[p] = a
        rhead[i] = p
        nxt[p] = head[a]
        prv[p] = -1
        if head[a] >= 0:
            prv[head[a]] = p
        head[a] = p
        counts[a] += weights[i]
    slack = np.full((k, k), np.inf)
    where = -np.ones((k, k), np.int64)
    # every arc's cheapest move, row by row: each row's costs and its label's slack row are
    # contiguous (a rescan of every arc reads the band k times, a column at a time: 0.47 s
    # of the 1.07 s solve of 10^5 band rows at k = 1024).  Rows in increasing order, the
    # first minimum kept: the piece each cluster's list would give first (:func:`_rescan`)
    for p in range(pieces - 1, -1, -1):
        i = prow[p]
        a = plab[p]
        ca = costs[i, a]
        for b in range(k):
            r = costs[i, b] - ca
            if r < slack[a, b] and b != a:
                slack[a, b] = r
                where[a, b] = p
    target = np.empty(k)
    excess = np.zeros(k + 1)
    total = 0.0
    for j in range(k):
        if v[j] > 0.0:
            target[j] = lower[j]
        elif v[j] < 0.0:
            target[j] = upper[j]
        else:
            target[j] = min(max(counts[j], lower[j]), upper[j])
        excess[j] = counts[j] - target[j]
        total += target[j] - counts[j]
    excess[R] = total
    dist = np.empty(k + 1)
    key = np.empty(k + 1)  # the search's frontier (see _shortest_path)
    pred = np.empty(k + 1, np.int64)
    augmentations = 0
    status = DONE
    source = 0
    while True:
        for step in range(k + 1):
            if excess[(source + step) % (k + 1)] > tol:
                source = (source + step) % (k + 1)
                break
        else:
            break
        if augmentations >= max_augment:
            status = LIMIT
            break
        sink, D, _ = _shortest_path(
            slack, v, excess, target, lower, upper, source, tol, dist, key, pred
        )
        if sink < 0:
            status = STUCK
            break
        for x in range(k + 1):
            v[x] += dist[x] if dist[x] < D else D
        # how much the path carries
        delta = min(excess[source], -excess[sink])
        y = sink
        while pred[y] >= 0:
            x = pred[y]
            if x < k and y < k:
                delta = min(delta, pmass[where[x, y]])
            elif y == R:
                delta = min(delta, upper[x] - target[x])
            else:
                delta = min(delta, target[y] - lower[y])
            y = x
        y = sink
        while pred[y] >= 0:
            x = pred[y]
            if x < k and y < k:
                p = where[x, y]
                i = prow[p]
                whole = pmass[p] <= delta
                moved = pmass[p] if whole else delta
                # the row's piece already in y, if any: the mass joins it (a row keeps one
                # piece per cluster, so moves back and forth do not fragment it)
                q = rhead[i]
                while q >= 0 and plab[q] != y:
                    q = rnext[q]
                if whole:  # the piece leaves x
                    _unlink(p, x, head, nxt, prv)
                if q >= 0:  # merge into it
                    pmass[q] += moved
                    if whole:  # p is gone: off the row's list
                        if rhead[i] == p:
                            rhead[i] = rnext[p]
                        else:
                            t = rhead[i]
                            while rnext[t] != p:
                                t = rnext[t]
                            rnext[t] = rnext[p]
                        plab[p] = -1
                        pmass[p] = 0.0
                    else:
                        pmass[p] -= delta
                else:
                    if whole:
                        q = p
                    else:  # split: delta of it moves to y as a new piece
                        if pieces == prow.shape[0]:
                            grown = 2 * pieces
                            prow = _grow(prow, grown)
                            pmass = _grow(pmass, grown)
                            plab = _grow(plab, grown)
                            nxt = _grow(nxt, grown)
                            prv = _grow(prv, grown)
                            rnext = _grow(rnext, grown)
                        q = pieces
                        pieces += 1
                        prow[q] = i
                        pmass[q] = delta
                        pmass[p] -= delta
                        rnext[q] = rhead[i]
                        rhead[i] = q
                    plab[q] = y
                    _push(q, y, head, nxt, prv)
                counts[x] -= moved
                counts[y] += moved
                if whole:
                    for b in range(k):  # arcs out of x whose cheapest move was this piece
                        if b != x and where[x, b] == p:
                            slack[x, b], where[x, b] = _rescan(costs, prow, plab, head, nxt, x, b)
                for b in range(k):  # arcs out of y: the piece may be their cheapest move now
                    if b != y:
                        r = costs[i, b] - costs[i, y]
                        if r < slack[y, b]:
                            slack[y, b] = r
                            where[y, b] = q
            elif y == R:
                target[x] += delta
            else:
                target[y] -= delta
            y = x
        excess[source] -= delta
        excess[sink] += delta
        augmentations += 1
    out = np.empty(k)
    for j in range(k):
        out[j] = v[j] - v[R]
    live = plab[:pieces] >= 0
    return (
        out,
        status,
        augmentations,
        slack,
        prow[:pieces][live],
        pmass[:pieces][live],
        plab[:pieces][live],
    )


def mass_shortest_paths(
    costs: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    potentials: np.ndarray,
    *,
    fixed_mass: np.ndarray | None = None,
    tol: float = 0.0,
    max_augment: int | None = None,
) -> MassPathsResult:
    """An exact optimum of the band's weighted transport problem, by moving mass along
    shortest paths until every cluster's mass is within its bounds.

    Parameters
    ----------
    costs : ndarray of shape (m, k)
        Cost rows of the band's points (float64).
    weights : ndarray of shape (m,)
        Their masses (non-negative; a zero-weight row belongs to no cluster).
    labels : ndarray of shape (m,), int64
        Their starting clusters, each a minimiser of ``costs[i] - potentials``.
    lower, upper : ndarray of shape (k,)
        Bounds on the clusters' masses, counting the fixed points.
    potentials : ndarray of shape (k,)
        Dual potentials under which the labels are minimisers.
    fixed_mass : ndarray of shape (k,), default=None
        Mass per cluster outside the band (it does not move).
    tol : float, default=0.0
        Masses within ``tol`` of a bound meet it (round-off of fractional weights).
    max_augment : int, default=None
        Stop (with :data:`LIMIT`) after this many augmentations.

    Returns
    -------
    MassPathsResult
        The pieces (row, mass, cluster) are the band's plan: a row with pieces in two
        clusters is split between them.
    """
    k = costs.shape[1]
    if fixed_mass is None:
        fixed_mass = np.zeros(k)
    v, status, augmentations, slack, rows, mass, plab = _mass_paths(
        np.ascontiguousarray(costs, dtype=np.float64),
        np.ascontiguousarray(weights, dtype=np.float64),
        np.ascontiguousarray(labels, dtype=np.int64),
        np.asarray(lower, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
        np.asarray(fixed_mass, dtype=np.float64),
        np.asarray(potentials, dtype=np.float64),
        float(tol),
        np.iinfo(np.int64).max if max_augment is None else int(max_augment),
    )
    return MassPathsResult(v, int(status), int(augmentations), slack, rows, mass, plab)
