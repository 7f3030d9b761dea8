"""The Dijkstra searches of the exact repair (:mod:`.paths`) on the cluster graph: the k
clusters and the node ``R = k`` of the size ranges, with arcs ``x -> b`` of reduced length
``slack[x, b] - v_b + v_x`` (``slack``: the cheapest band move between two clusters).

:func:`_shortest_path` searches from one source to the nearest deficit; :func:`_forest`
from every surplus at once, keeping node-disjoint paths to many deficits.  Both share the
frontier scan (:func:`_nearest`) and the relaxation (:func:`_relax`).
"""

from __future__ import annotations

import numpy as np

from ..jit import njit

#: a cluster's arcs are read from its band points (:func:`_relax_members`) while they hold
#: at most ``k / _MEMBER_COSTS`` costs in all: a gathered cost and its test against the
#: frontier cost about this many times a term of the vectorised scan of a row of ``slack``
#: when the rows come from memory (large k: :data:`MEMBER_MIN_K`)
_MEMBER_COSTS = 2
#: ... and only from this many clusters on: below, ``slack`` stays in the caches, its rows
#: are cheap to scan and the band's points hold more costs than a row (measured here at
#: k = 1024: the searches 10 % slower with them; at k = 4096, 1.9 times faster)
MEMBER_MIN_K = 2048
#: above every key of the Dijkstra frontier's bits (``+inf`` is ``0x7FF0...``)
_NO_KEY = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(inline="always")
def _nearest(bits, k):  # pragma: no cover - compiled
    """The frontier's node of least key (the lowest index among equals): an integer minimum
    on the keys' bits, then the first index holding it (both loops vectorise)."""
    least = _NO_KEY
    for y in range(k + 1):
        t = bits[y]
        least = t if t < least else least
    x = k + 1
    for y in range(k + 1):
        t = y if bits[y] == least else k + 1
        x = t if t < x else x
    return x


@njit(inline="always")
def _relax_to_R(x, dx, v, target, upper, tol, dist, key, pred):  # pragma: no cover - compiled
    """The arc ``x -> R`` out of the settled cluster ``x``, while it may take a point more."""
    R = v.shape[0] - 1
    if target[x] < upper[x] - tol:
        nd = dx + max(v[x] - v[R], 0.0)
        if nd < dist[R]:
            dist[R] = nd
            key[R] = nd
            pred[R] = x


@njit(inline="always")
def _relax(x, dx, slack, v, target, lower, upper, tol, dist, key, pred):  # pragma: no cover
    """Relax the arcs out of the settled node ``x`` (at distance ``dx``): to every cluster
    (reduced lengths ``slack[x, b] - v_b + v_x``) and to ``R``, or from ``R`` to every
    cluster that may give a point (bounds compared with ``tol``)."""
    k = slack.shape[0]
    R = k
    if x < k:
        vx = v[x]
        for b in range(k):  # slack[x, x] is inf: no arc to itself
            nd = dx + max(slack[x, b] - v[b] + vx, 0.0)  # < 0: round-off on a tight arc
            better = nd < dist[b]
            dist[b] = nd if better else dist[b]
            key[b] = nd if better else key[b]
            pred[b] = x if better else pred[b]
        _relax_to_R(x, dx, v, target, upper, tol, dist, key, pred)
    else:
        for b in range(k):
            if target[b] > lower[b] + tol:
                nd = dx + max(v[R] - v[b], 0.0)
                if nd < dist[b]:
                    dist[b] = nd
                    key[b] = nd
                    pred[b] = R


@njit()
def _relax_members(
    x, dx, costs, columns, labcost, head, nxt, v, dist, key, pred
):  # pragma: no cover - compiled
    """:func:`_relax`'s arcs out of the cluster ``x`` to the clusters, read from ``x``'s band
    points instead of ``slack[x]`` (:mod:`.paths`' arrays): the arc ``x -> b`` is the least
    ``costs[i, t] - labcost[i]`` over the points ``i`` of ``x`` with ``columns[i, t] = b``,
    which is ``slack[x, b]``, and the least of the relaxed lengths is the relaxed length of
    the least (rounding is monotone): the same distances and predecessors."""
    vx = v[x]
    i = head[x]
    while i >= 0:
        ci = labcost[i]
        for t in range(columns.shape[1]):
            b = columns[i, t]
            if b != x:
                nd = dx + max(costs[i, t] - ci - v[b] + vx, 0.0)
                if nd < dist[b]:
                    dist[b] = nd
                    key[b] = nd
                    pred[b] = x
        i = nxt[i]


@njit(inline="always")
def _relax_any(
    x, dx, slack, v, target, lower, upper, tol, dist, key, pred, members
):  # pragma: no cover - compiled
    """:func:`_relax`, with the arcs out of a cluster read by :func:`_relax_members` where
    that reads fewer costs than a row of ``slack`` (candidates: a few columns a point).
    ``members``: :mod:`.paths`' ``(costs, columns, labcost, head, nxt, counts, fixed_counts)``
    (``counts - fixed_counts``: a cluster's band points)."""
    k = slack.shape[0]
    costs, columns, labcost, head, nxt, counts, fixed = members
    if x < k and (counts[x] - fixed[x]) * columns.shape[1] * _MEMBER_COSTS <= k:
        _relax_members(x, dx, costs, columns, labcost, head, nxt, v, dist, key, pred)
        _relax_to_R(x, dx, v, target, upper, tol, dist, key, pred)
    else:
        _relax(x, dx, slack, v, target, lower, upper, tol, dist, key, pred)


@njit()
def _shortest_path(
    slack, v, excess, target, lower, upper, source, tol, dist, key, pred, members=None
):  # pragma: no cover - compiled
    """Dijkstra on the cluster graph (k clusters and the node ``R = k``) from ``source`` to the
    nearest node with a deficit (``excess < -tol``): arcs ``x -> b`` of reduced length
    ``slack[x, b] - v_b + v_x``, ``x -> R`` while ``target[x] < upper[x] - tol`` and
    ``R -> b`` while ``target[b] > lower[b] + tol``.  Fills ``dist`` and ``pred``; returns
    ``(sink, distance to it, nodes settled)``, ``sink = -1`` when no deficit is reachable.
    ``members`` (candidates at large k, see :func:`_relax_any`): the arcs out of a cluster
    with few band points are read from them.

    The graph is dense (k arcs a node), so the frontier is an array, not a heap: ``key`` is
    the tentative distance of the nodes not yet settled (``inf`` once settled).  The scans
    over it are integer minima on its bits (distances are non-negative, and non-negative
    floats order as their bits do): the compiler vectorises those, not a float minimum; the
    relaxation selects instead of branching, for the same reason (measured here, a node
    settled in 1.0 us instead of 2.6 at k = 1024, 2.3 instead of 3.8 at k = 4096).  A
    settled node needs no test when its neighbours are relaxed: its distance is at most the
    current one and lengths are non-negative, so it never improves."""
    k = slack.shape[0]
    bits = key.view(np.int64)
    for x in range(k + 1):
        dist[x] = np.inf
        key[x] = np.inf
        pred[x] = -1
    dist[source] = 0.0
    key[source] = 0.0
    work = 0
    while True:
        x = _nearest(bits, k)
        dx = key[x]
        if dx == np.inf:
            return -1, 0.0, work
        key[x] = np.inf
        work += 1
        if excess[x] < -tol:
            return x, dx, work
        if members is None:
            _relax(x, dx, slack, v, target, lower, upper, tol, dist, key, pred)
        else:
            _relax_any(x, dx, slack, v, target, lower, upper, tol, dist, key, pred, members)


@njit()
def _forest(
    slack,
    where,
    v,
    excess,
    target,
    lower,
    upper,
    dist,
    key,
    pred,
    left,
    used,
    taken,
    path_row,
    sinks,
    most,
    members=None,
):  # pragma: no cover - compiled
    """Dijkstra from every node with a surplus at once (as :func:`_shortest_path`, whose
    frontier and arcs it shares), accepting a path to each deficit it settles while the
    paths stay node-disjoint (the roots aside, each giving at most its surplus) and no point
    serves two of them; at most ``most`` paths.  Returns ``(paths, D, nodes settled)``: the
    paths' sinks are ``sinks[:paths]``, the point on each path's arc into node ``y`` is
    ``path_row[y]`` (``used``, ``taken`` mark their nodes and points), and ``D`` is the
    distance of the last node settled: potentials raised by ``min(dist, D)`` make every
    accepted path tight (one point moved along each of them is then optimal, as one is in
    the single search)."""
    k = slack.shape[0]
    bits = key.view(np.int64)
    deficits = 0
    for x in range(k + 1):
        dist[x] = np.inf
        key[x] = np.inf
        pred[x] = -1
        left[x] = excess[x] if excess[x] > 0 else 0
        if excess[x] > 0:
            dist[x] = 0.0
            key[x] = 0.0
        elif excess[x] < 0:
            deficits += 1
    found = 0
    work = 0
    D = 0.0
    while found < most and found < deficits:
        x = _nearest(bits, k)
        dx = key[x]
        if dx == np.inf:
            break
        key[x] = np.inf
        work += 1
        D = dx
        if excess[x] < 0:
            ok = True
            y = x
            while pred[y] >= 0:
                p = pred[y]
                if used[y] or (p < k and y < k and taken[where[p, y]]):
                    ok = False
                    break
                y = p
            if ok and left[y] > 0:
                left[y] -= 1
                y = x
                while pred[y] >= 0:
                    p = pred[y]
                    used[y] = True
                    if p < k and y < k:
                        taken[where[p, y]] = True
                        path_row[y] = where[p, y]
                    y = p
                sinks[found] = x
                found += 1
        if members is None:
            _relax(x, dx, slack, v, target, lower, upper, 0.0, dist, key, pred)
        else:
            _relax_any(x, dx, slack, v, target, lower, upper, 0.0, dist, key, pred, members)
    return found, D, work
