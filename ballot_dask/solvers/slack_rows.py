"""The band's slack matrix kept current while the repair (:mod:`.paths`) moves points.

``slack[x, b]`` is the cheapest band move ``x -> b`` (``min over band points i of x of
C_ib - C_ix``) and ``where[x, b]`` its point.  When a point leaves ``x``, the arcs out of
``x`` whose cheapest move it was need another; two ways to find it:

- *rescans* (few band points a cluster): the entries of row ``x`` that the point held are
  recomputed from ``x``'s band points (:func:`_rescan_entries`, dense rows: a point's k
  costs), or the whole row is (:func:`_rescan`, candidates: a point's few columns);
- *arc lists* (many band points a cluster): every arc keeps a sorted list of its ``L``
  cheapest moves and the smallest value it left out (:func:`_refill`, :func:`_insert`,
  :func:`_cheapest`, :func:`_moved_lists`), so that moving points along one arc does not
  rescan the cluster each time.

Rows are dense (``columns`` None: ``costs[i, b]`` is ``C_ib``) or candidates
(:mod:`ballot_dask.candidates`: ``costs[i, t]`` is the cost of cluster ``columns[i, t]``).
"""

from __future__ import annotations

import numpy as np

from ..jit import njit


@njit()
def _cost(costs, columns, i, b):  # pragma: no cover - compiled
    """``C_ib``: ``costs[i, b]`` for dense rows (``columns`` is None: a branch the compiler
    removes), else looked up among row ``i``'s columns (``inf`` when ``b`` is not one of
    them: the restricted problem)."""
    if columns is None:
        return costs[i, b]
    for t in range(columns.shape[1]):
        if columns[i, t] == b:
            return costs[i, t]
    return np.inf


@njit()
def _column(columns, i, t):  # pragma: no cover - compiled
    """The cluster of row ``i``'s ``t``-th cost: ``t`` for dense rows."""
    if columns is None:
        return t
    return columns[i, t]


@njit()
def _fill(costs, columns, labels, labcost, slack, where):  # pragma: no cover - compiled
    """The band's slack matrix under ``labels`` (``slack`` all ``inf`` and ``where`` all -1
    on entry; the diagonal stays so), each entry's point in ``where``, and every point's
    cost at its label in ``labcost``."""
    for i in range(labels.shape[0]):
        a = labels[i]
        ca = _cost(costs, columns, i, a)
        labcost[i] = ca
        for t in range(costs.shape[1]):
            b = _column(columns, i, t)
            r = costs[i, t] - ca
            if b != a and r < slack[a, b]:
                slack[a, b] = r
                where[a, b] = i


@njit()
def _refill(costs, columns, x, b, head, nxt, vals, rows, start, end, bound):  # pragma: no cover
    """Rebuild arc ``x -> b``'s list: the ``L`` smallest ``C_ib - C_ix`` over the band points
    of ``x``, sorted; ``bound`` becomes the smallest value left out (``inf``: none)."""
    L = vals.shape[2]
    kept = 0
    left_out = np.inf
    i = head[x]
    while i >= 0:
        r = _cost(costs, columns, i, b) - _cost(costs, columns, i, x)
        if r == np.inf:  # b is not among the row's columns: no move
            i = nxt[i]
            continue
        if kept < L:
            p = kept
            kept += 1
        elif r < vals[x, b, L - 1]:
            if vals[x, b, L - 1] < left_out:
                left_out = vals[x, b, L - 1]
            p = L - 1
        else:
            if r < left_out:
                left_out = r
            i = nxt[i]
            continue
        while p > 0 and vals[x, b, p - 1] > r:  # sorted insertion
            vals[x, b, p] = vals[x, b, p - 1]
            rows[x, b, p] = rows[x, b, p - 1]
            p -= 1
        vals[x, b, p] = r
        rows[x, b, p] = i
        i = nxt[i]
    start[x, b] = 0
    end[x, b] = kept
    bound[x, b] = left_out


@njit()
def _insert(x, b, r, i, vals, rows, start, end, bound):  # pragma: no cover - compiled
    """A point joining ``x`` enters arc ``x -> b``'s list when it may be among the cheapest
    (every band point of ``x`` left out of the list costs ``bound[x, b]`` or more)."""
    if r >= bound[x, b]:
        return
    L = vals.shape[2]
    s0 = start[x, b]
    e0 = end[x, b]
    if e0 == L and s0 > 0:  # compact the consumed head away
        for t in range(s0, e0):
            vals[x, b, t - s0] = vals[x, b, t]
            rows[x, b, t - s0] = rows[x, b, t]
        e0 -= s0
        s0 = 0
        start[x, b] = 0
    if e0 == L:  # full: the largest of the list and the point is left out, and bounds
        # what is left out (the point itself when no entry costs more)
        if r >= vals[x, b, e0 - 1]:
            bound[x, b] = r
            return
        e0 -= 1
        if vals[x, b, e0] < bound[x, b]:
            bound[x, b] = vals[x, b, e0]
    p = e0
    while p > s0 and vals[x, b, p - 1] > r:
        vals[x, b, p] = vals[x, b, p - 1]
        rows[x, b, p] = rows[x, b, p - 1]
        p -= 1
    vals[x, b, p] = r
    rows[x, b, p] = i
    end[x, b] = e0 + 1


@njit()
def _cheapest(
    costs, columns, labels, x, b, head, nxt, vals, rows, start, end, bound
):  # pragma: no cover - compiled
    """The cheapest band move ``x -> b``: ``(C_ib - C_ix, i)``, or ``(inf, -1)``."""
    while True:
        s0 = start[x, b]
        while s0 < end[x, b] and labels[rows[x, b, s0]] != x:  # points that left x since
            s0 += 1
        start[x, b] = s0
        if s0 < end[x, b]:
            return vals[x, b, s0], rows[x, b, s0]
        if bound[x, b] == np.inf:
            return np.inf, -1
        _refill(costs, columns, x, b, head, nxt, vals, rows, start, end, bound)


@njit()
def _rescan(costs, columns, labcost, x, head, nxt, slack, where):  # pragma: no cover - compiled
    """Row ``x`` of the slack matrix again from ``x``'s band points, each over its own
    columns (candidates: a few per point; dense rows: few points per cluster, so this costs
    less than keeping arc lists)."""
    for b in range(slack.shape[1]):
        slack[x, b] = np.inf
        where[x, b] = -1
    i = head[x]
    while i >= 0:
        for t in range(costs.shape[1]):
            b = _column(columns, i, t)
            r = costs[i, t] - labcost[i]
            if b != x and r < slack[x, b]:
                slack[x, b] = r
                where[x, b] = i
        i = nxt[i]


@njit()
def _rescan_entries(costs, labcost, x, i, head, nxt, slack, where):  # pragma: no cover
    """Dense rows: the entries of row ``x`` whose cheapest move was point ``i`` (it has just
    left ``x``), again from ``x``'s band points.  The other entries keep their minimum;
    where several points tie on it, the one the row keeps may differ from a whole rescan's,
    which :func:`_rescan` would take in list order (measured here, the cold repair of
    25 000 rows at k = 1024: 0.42 s instead of 0.60 s with whole rescans)."""
    for b in range(slack.shape[1]):
        if where[x, b] == i:
            best = np.inf
            arg = -1
            j = head[x]
            while j >= 0:
                r = costs[j, b] - labcost[j]
                if r < best:
                    best = r
                    arg = j
                j = nxt[j]
            slack[x, b] = best
            where[x, b] = arg


@njit()
def _moved_lists(
    costs, columns, labels, i, x, y, cy, head, nxt, slack, where, vals, rows, start, end, bound
):  # pragma: no cover - compiled
    """Point ``i`` moved from ``x`` to ``y`` (at cost ``cy``): the arcs out of ``x`` whose
    cheapest move it was take the next from their lists, and ``i`` joins the lists of the
    arcs out of ``y``."""
    width = costs.shape[1]
    for t in range(width):
        b = _column(columns, i, t)
        if where[x, b] == i:
            slack[x, b], where[x, b] = _cheapest(
                costs, columns, labels, x, b, head, nxt, vals, rows, start, end, bound
            )
    for t in range(width):
        b = _column(columns, i, t)
        if b == y:
            continue
        r = costs[i, t] - cy
        if bound[y, b] == np.inf and head[y] == i and nxt[i] < 0:
            bound[y, b] = -np.inf  # y had no band point: its lists start now
            end[y, b] = 0
            start[y, b] = 0
        if bound[y, b] > -np.inf:  # a list not built yet will find i there
            _insert(y, b, r, i, vals, rows, start, end, bound)
        if r < slack[y, b]:
            slack[y, b] = r
            where[y, b] = i
