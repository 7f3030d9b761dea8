"""Successive shortest paths on the cluster graph: the exact core of BalLOT's assignment step.

The transport problem has n sources (the points) and k sinks (the clusters).  Given potentials
``v`` under which every point's label minimises its reduced cost ``C_ij - v_j`` (complementary
slackness), the only thing wrong with the labels is the sizes.  Moving a point ``i`` from
cluster ``a`` to cluster ``b`` costs ``C_ib - C_ia``; the cheapest such move between two clusters
is the slack matrix entry ``S[a, b] = min over i in a of (C_ib - C_ia)``, and the graph on the k
clusters with arc lengths ``S[a, b] - v_b + v_a >= 0`` is all a min-cost flow needs:

1. Dijkstra from an over-full cluster (each in turn) to the nearest under-full one (k nodes;
   a search from every over-full cluster at once would settle them all first);
2. raise the potentials by ``min(distance, D)`` (they stay dual-feasible: every arc keeps a
   non-negative reduced cost, and the path becomes tight);
3. move one point along every arc of the path (sizes change only at its ends), update the
   slack matrix of the clusters that lost or gained a point, and repeat.

Each augmentation removes one unit of imbalance, so the loop ends, with an exact optimum (the
potentials certify it), whatever the data and the start: separated clusters, duplicated points
(they move one at a time), any cost scale.  Its cost is the imbalance times a Dijkstra on k
nodes and a scan of one cluster's points; the potentials that start it come from a cheaper
approximation (a row sample), so the imbalance is small.

*Many points to move* (a cold start, an early Lloyd step, large k): then one search starts
from every over-full cluster at once (:func:`.dijkstra._forest`), runs on past the first deficit it
settles, and keeps a shortest path to each deficit it reaches while the paths stay
node-disjoint (the roots aside) and no point serves two of them.  The potentials raised by
``min(distance, D)``, ``D`` the last distance settled, make every kept path tight, and a point
moves along each: many augmentations for one search.  At k = 1024 on 25 000 points from a
sample's cold start (8 844 points moved), the repair took 1.05 s instead of 3.1 s.  Once a
search finds fewer than one path per ``_FOREST_PATHS`` nodes settled (few deficits left, far
apart), the searches go one source at a time again, until ``_SINGLE_PATHS`` of those have
settled more nodes a path than that search did: then every surplus at once again, while it
costs no more a path than they did.  (At k = 4096 on a band of 10^5 candidate rows, a
forest search that found few paths had ended the forest for the step: 2 858 points moved in
2 404 searches, 4.3 s; with the way back, in 1 415 searches, 1.1 s.)

*Bands.*  Only some points (the *band*: the ones closest to a cell boundary) may be held here
with their cost rows; the others are *fixed*, counted in the sizes but never moved.  The paths
then solve the band's own transport problem (the capacity left by the fixed points); whether
that is an optimum of the whole problem is for the certificate to decide, with the fixed
points' slack matrix (:mod:`ballot_dask.certificate`): any potentials satisfying every
constraint prove it, not only the ones the paths ended with.

*Candidates.*  At large k a band row is held as its few cheapest clusters
(:mod:`ballot_dask.candidates`, ``columns``): the paths then solve the restricted problem, in
which a point moves only to one of its columns, and a row's update costs its columns, not k;
from :data:`.dijkstra.MEMBER_MIN_K` clusters on, so do the arcs a search reads out of a
cluster with few band points (not its row of ``slack``: k costs, from memory at that k).

*Intervals.*  Size bounds ``lower <= size <= upper`` add a node ``R`` with arcs ``j -> R`` (the
cluster may take one point more, while below its upper bound) and ``R -> j`` (one fewer, while
above its lower bound), of reduced costs ``v_j - v_R`` and ``v_R - v_j``: the sign conditions of
the certificate (:mod:`ballot_dask.certificate`).  Equal bounds leave ``R`` without arcs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..capacities import Capacities
from ..jit import njit
from .dijkstra import MEMBER_MIN_K, _forest, _shortest_path
from .grouping import GROUPED_MOVES, by_label
from .search import imbalance
from .slack_rows import _column, _cost, _fill, _moved_lists, _rescan, _rescan_entries

DONE = 0  #: every size within its bounds: an exact optimum of the band's problem
LIMIT = 1  #: stopped at ``max_augment`` augmentations
STUCK = 2  #: no path from a surplus to a deficit (the band cannot meet the bounds)

#: candidates: a cluster's slack row is rescanned after a move (no lists) while the band holds
#: at most this many points a cluster (measured here at k = 1024: twice as fast as the lists
#: at 85 a cluster, 1.4 times slower at 330)
_RESCAN_ROWS = 128
#: the same for dense rows, k costs a point, where a departing point's entries are computed
#: again (:func:`.slack_rows._rescan_entries`; measured here on the repairs of 30-iteration
#: fits, separated clusters from random rows: 1.2-4 times faster than the lists from 25 to
#: 560 points a cluster at k = 64, 256 and 1024, 1.3 times slower at 640, k = 64) ...
_DENSE_RESCAN_ROWS = 256
#: ... with the rows grouped by label (:mod:`.grouping`, when many must move) beyond this
#: many a cluster (ungrouped, those rescans were 1.2-2.3 times slower from 95 points a
#: cluster on; fewer a cluster are not grouped, as when this bound held for the rescans)
_DENSE_GROUP_ROWS = 32
#: the arcs' lists of cheapest moves hold at most this many entries in all (32 per arc, fewer
#: for large k)
_LIST_CELLS = 1 << 22
#: one search from every surplus at once (:func:`.dijkstra._forest`) while at least this many points
#: must move ...
_FOREST_SURPLUS = 16
#: ... and each such search finds a path per this many nodes it settles, at least, or per
#: as many as the one-source searches settled a path when they were measured (else the
#: searches go one source at a time) ...
_FOREST_PATHS = 256
#: ... until this many one-source searches settled more nodes a path than the last search
#: from every surplus did: then every surplus at once again
_SINGLE_PATHS = 8


class PathsResult(NamedTuple):
    """What :func:`successive_shortest_paths` returns."""

    potentials: np.ndarray  #: (k,) the final potentials, relative to ``R``
    status: int  #: :data:`DONE`, :data:`LIMIT` or :data:`STUCK`
    augmentations: int  #: points moved along shortest paths (path length counted once)
    slack: np.ndarray  #: (k, k) slack matrix of the band's points under their final labels
    settled: int = 0  #: nodes settled by the Dijkstra searches, in all (the work done)
    searches: int = 0  #: Dijkstra searches (fewer than the augmentations: forest searches)
    forests: int = 0  #: of which from every surplus at once (:func:`.dijkstra._forest`)


@njit(inline="always")
def _unlink(i, x, head, nxt, prv):  # pragma: no cover - compiled
    """Entry ``i`` off cluster ``x``'s doubly linked member list."""
    p = prv[i]
    q = nxt[i]
    if p >= 0:
        nxt[p] = q
    else:
        head[x] = q
    if q >= 0:
        prv[q] = p


@njit(inline="always")
def _push(i, y, head, nxt, prv):  # pragma: no cover - compiled
    """Entry ``i`` at the head of cluster ``y``'s member list."""
    nxt[i] = head[y]
    prv[i] = -1
    if head[y] >= 0:
        prv[head[y]] = i
    head[y] = i


@njit()
def _move(
    costs,
    columns,
    labels,
    i,
    x,
    y,
    head,
    nxt,
    prv,
    counts,
    labcost,
    rescan,
    slack,
    where,
    vals,
    rows,
    start,
    end,
    bound,
):  # pragma: no cover - compiled
    """Point ``i`` moves from cluster ``x`` to ``y``: the member lists, the counts, its cost
    and the slack matrix's rows of ``x`` and ``y`` follow."""
    _unlink(i, x, head, nxt, prv)
    labels[i] = y
    _push(i, y, head, nxt, prv)
    counts[x] -= 1
    counts[y] += 1
    cy = _cost(costs, columns, i, y)
    labcost[i] = cy
    width = costs.shape[1]
    if not rescan:
        _moved_lists(
            costs, columns, labels, i, x, y, cy, head, nxt, slack, where,
            vals, rows, start, end, bound,
        )  # fmt: skip
        return
    if columns is None:  # the arcs out of x whose cheapest move was i
        _rescan_entries(costs, labcost, x, i, head, nxt, slack, where)
    else:
        for t in range(width):
            if where[x, _column(columns, i, t)] == i:
                _rescan(costs, columns, labcost, x, head, nxt, slack, where)
                break
    for t in range(width):  # arcs out of y: i may be their cheapest move now
        b = _column(columns, i, t)
        r = costs[i, t] - cy
        if b != y and r < slack[y, b]:
            slack[y, b] = r
            where[y, b] = i


@njit()
def _paths(
    costs, columns, k, labels, lower, upper, fixed_counts, v_in, max_augment, L, rescan, forest,
    forest_paths,
):  # fmt: skip  # pragma: no cover - compiled
    m = costs.shape[0]
    R = k
    v = np.zeros(k + 1)
    v[:k] = v_in
    # band members of every cluster, as doubly linked lists (O(1) moves)
    head = -np.ones(k, np.int64)
    nxt = -np.ones(m, np.int64)
    prv = -np.ones(m, np.int64)
    counts = fixed_counts.copy()
    for i in range(m - 1, -1, -1):
        a = labels[i]
        nxt[i] = head[a]
        if head[a] >= 0:
            prv[head[a]] = i
        head[a] = i
        counts[a] += 1
    # slack[x, b]: the cheapest band move x -> b, where[x, b] its point.  With many points a
    # cluster, every arc also keeps a sorted list of its L cheapest moves, so that moving
    # points along one arc does not rescan the cluster (k costs a point) each time
    slack = np.full((k, k), np.inf)
    where = -np.ones((k, k), np.int64)
    labcost = np.empty(m)  # C_ia at the point's current label a
    _fill(costs, columns, labels, labcost, slack, where)
    # the lists are built on first use (their pages are touched then); until then an arc's
    # cheapest move is ``slack``/``where`` alone, and ``bound = -inf`` says "not built".
    # With ``rescan`` (few points a cluster) there are no lists: a cluster's row of ``slack``
    # is rescanned instead
    lists = 1 if rescan else k
    vals = np.empty((lists, lists, L))
    rows = np.empty((lists, lists, L), np.int64)
    start = np.zeros((lists, lists), np.int64)
    end = np.zeros((lists, lists), np.int64)
    bound = np.full((lists, lists), -np.inf)
    if not rescan:
        for a in range(k):
            for b in range(k):
                if a == b or head[a] < 0 or slack[a, b] == np.inf:
                    bound[a, b] = np.inf  # no band point to move (none that may take b)
    # flow through R: every cluster's share of the sizes, chosen so that the arcs to and from
    # R start dual-feasible (a cluster with v_j > v_R sits at its lower bound, and so on)
    target = np.empty(k, np.int64)
    excess = np.zeros(k + 1, np.int64)
    for j in range(k):
        if v[j] > 0.0:
            target[j] = lower[j]
        elif v[j] < 0.0:
            target[j] = upper[j]
        else:
            target[j] = min(max(counts[j], lower[j]), upper[j])
        excess[j] = counts[j] - target[j]
        excess[R] += target[j]
    excess[R] -= counts.sum()
    dist = np.empty(k + 1)
    key = np.empty(k + 1)
    pred = np.empty(k + 1, np.int64)
    augmentations = 0
    work = 0  # nodes settled by Dijkstra, in all
    searches = 0
    status = DONE
    source = 0
    # a forest search's bookkeeping (see _forest): nodes and points on its accepted paths
    left = np.zeros(k + 1, np.int64)
    used = np.zeros(k + 1, np.bool_)
    taken = np.zeros(m, np.bool_)
    path_row = -np.ones(k + 1, np.int64)
    sinks = np.empty(k + 1, np.int64)
    # at large k with candidates, a cluster's arcs are read from its few band points where
    # that reads fewer costs than a row of slack (.dijkstra._relax_members)
    by_members = columns is not None and k >= MEMBER_MIN_K
    # what a path cost, in nodes settled: the last forest search's, and the one-source
    # searches' since then (their average, once measured, is the bar the forest must meet)
    forest_cost = np.inf
    single_cost = float(forest_paths)  # (``_FOREST_PATHS``)
    forests = 0
    single_work = 0
    single_paths = 0
    forest_allowed = forest
    if columns is None:  # (not used then; typed as with columns)
        members = (costs, np.empty((0, 0), np.int32), labcost, head, nxt, counts, fixed_counts)
    else:
        members = (costs, columns, labcost, head, nxt, counts, fixed_counts)
    while True:
        surplus = 0
        for x in range(k + 1):
            surplus += excess[x] if excess[x] > 0 else 0
        if surplus == 0:
            break
        if augmentations >= max_augment:
            status = LIMIT
            break
        if forest and surplus >= _FOREST_SURPLUS:
            # many points to move: one search from every surplus at once, and a point moved
            # along each of its node-disjoint shortest paths
            most = min(surplus, max_augment - augmentations)
            if by_members:
                found, D, settled_now = _forest(
                    slack, where, v, excess, target, lower, upper, dist, key, pred, left, used,
                    taken, path_row, sinks, most, members,
                )  # fmt: skip
            else:
                found, D, settled_now = _forest(
                    slack, where, v, excess, target, lower, upper, dist, key, pred, left, used,
                    taken, path_row, sinks, most,
                )  # fmt: skip
            work += settled_now
            searches += 1
            forests += 1
            if found * single_cost < settled_now:
                # too few paths a search: one source at a time (until they cost more a path)
                forest = False
                forest_cost = settled_now / found if found else np.inf
                single_work = 0
                single_paths = 0
            if found:
                for x in range(k + 1):
                    v[x] += dist[x] if dist[x] < D else D
                for f in range(found):
                    sink = sinks[f]
                    y = sink
                    while pred[y] >= 0:
                        x = pred[y]
                        if x < k and y < k:
                            i = path_row[y]
                            taken[i] = False
                            _move(
                                costs, columns, labels, i, x, y, head, nxt, prv, counts,
                                labcost, rescan, slack, where, vals, rows, start, end, bound,
                            )  # fmt: skip
                        elif y == R:
                            target[x] += 1
                        else:
                            target[y] -= 1
                        used[y] = False
                        y = x
                    excess[y] -= 1
                    excess[sink] += 1
                    augmentations += 1
                continue
        # one source at a time, in turn: a search from every surplus at once would settle
        # them all (k arcs each) before reaching any deficit
        for step in range(k + 1):
            if excess[(source + step) % (k + 1)] > 0:
                source = (source + step) % (k + 1)
                break
        if by_members:
            sink, D, settled_now = _shortest_path(
                slack, v, excess, target, lower, upper, source, 0.0, dist, key, pred, members
            )
        else:
            sink, D, settled_now = _shortest_path(
                slack, v, excess, target, lower, upper, source, 0.0, dist, key, pred
            )
        work += settled_now
        searches += 1
        if sink < 0:
            status = STUCK
            break
        single_work += settled_now
        single_paths += 1
        if (
            forest_allowed
            and single_paths >= _SINGLE_PATHS
            and single_work > forest_cost * single_paths
        ):
            # the searches from one source cost more a path than the last from every
            # surplus did (its deficits were far, then nearer): every surplus at once again,
            # while a path costs it no more than one of these
            forest = True
            single_cost = single_work / single_paths
        # dual update: every arc keeps a non-negative reduced cost, the path becomes tight
        for x in range(k + 1):
            v[x] += dist[x] if dist[x] < D else D
        y = sink
        while pred[y] >= 0:
            x = pred[y]
            if x < k and y < k:
                _move(
                    costs, columns, labels, where[x, y], x, y, head, nxt, prv, counts, labcost,
                    rescan, slack, where, vals, rows, start, end, bound,
                )  # fmt: skip
            elif y == R:
                target[x] += 1
            else:
                target[y] -= 1
            y = x
        excess[y] -= 1
        excess[sink] += 1
        augmentations += 1
    out = np.empty(k)
    for j in range(k):
        out[j] = v[j] - v[R]
    return out, status, augmentations, slack, work, searches, forests


def successive_shortest_paths(
    costs: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    potentials: np.ndarray,
    *,
    fixed_counts: np.ndarray | None = None,
    max_augment: int | None = None,
    columns: np.ndarray | None = None,
    n_clusters: int | None = None,
    forest: bool = True,
) -> PathsResult:
    """Exact labels of the band's points, moving them along shortest paths until every size
    is within its bounds.

    Parameters
    ----------
    costs : ndarray of shape (m, k), or (m, w) with ``columns``
        Cost rows of the band's points (float64).
    labels : ndarray of shape (m,), int64
        Their labels, each a minimiser of ``costs[i] - potentials``; updated in place.
    lower, upper : ndarray of shape (k,), int64
        Bounds on the sizes, counting the fixed points.
    potentials : ndarray of shape (k,)
        Dual potentials under which the band's labels are minimisers.
    fixed_counts : ndarray of shape (k,), default=None
        Points per cluster outside the band (they do not move).
    max_augment : int, default=None
        Stop (with :data:`LIMIT`) after this many augmentations.
    columns : ndarray of shape (m, w), default=None
        Candidates (:mod:`ballot_dask.candidates`): ``costs[i, t]`` is the cost of cluster
        ``columns[i, t]``, and a point may move only to its columns (the restricted problem;
        the slack matrix returned is over those moves only).  ``None``: dense cost rows.
    n_clusters : int, default=None
        ``k``, required with ``columns``.
    forest : bool, default=True
        While many points must move, search from every surplus at once and move a point
        along each of the node-disjoint shortest paths found (:func:`.dijkstra._forest`), while
        that costs fewer nodes settled a path than searches from one source do (see the
        module docstring); ``False``: one source and one path a search throughout.  The
        optimum is the same.

    Returns
    -------
    PathsResult
    """
    if columns is None:
        k = costs.shape[1]
    elif n_clusters is None:
        raise ValueError("n_clusters is required with columns")
    else:
        k = int(n_clusters)
    if fixed_counts is None:
        fixed_counts = np.zeros(k, dtype=np.int64)
    costs = np.ascontiguousarray(costs, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.int64)
    upper = np.asarray(upper, dtype=np.int64)
    fixed_counts = np.asarray(fixed_counts, dtype=np.int64)
    rescan = labels.shape[0] <= (_RESCAN_ROWS if columns is not None else _DENSE_RESCAN_ROWS) * k
    held = labels
    order = None
    if columns is not None:
        order, costs, columns, held = by_label(
            costs, np.ascontiguousarray(columns, dtype=np.int32), labels, k
        )
    elif (
        labels.shape[0] > _DENSE_GROUP_ROWS * k
        and imbalance(fixed_counts + np.bincount(labels, minlength=k), Capacities(lower, upper))
        >= GROUPED_MOVES
    ):
        # (no columns: an empty array of them rides along)
        order, costs, _, held = by_label(
            costs, np.empty((costs.shape[0], 0), dtype=np.int32), labels, k
        )
    v, status, augmentations, slack, work, searches, forests = _paths(
        costs,
        columns,
        k,
        held,
        lower,
        upper,
        fixed_counts,
        np.asarray(potentials, dtype=np.float64),
        np.iinfo(np.int64).max if max_augment is None else int(max_augment),
        int(max(4, min(32, _LIST_CELLS // (k * k)))),
        rescan,
        bool(forest),
        _FOREST_PATHS,
    )
    if order is not None:
        labels[order] = held
    return PathsResult(
        v, int(status), int(augmentations), slack, int(work), int(searches), int(forests)
    )
