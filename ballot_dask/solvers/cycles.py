"""Cycle cancelling: from the candidates' optimum to the band's, on its dense rows.

A band solved on its candidates (:mod:`ballot_dask.candidates`: each row may move only to its
few cheapest clusters) ends at the restricted problem's optimum.  Its certificate fails when
the band's true optimum needs a row to move to a cluster outside its columns; then the same
band is solved again on dense rows.  That optimum is mostly the candidates' own: at k = 1024
on separated clusters from random rows, 1 to 243 of 10^5 rows end elsewhere, while the
shortest paths (:mod:`.paths`), which start again from the pass's potentials, move thousands
of points (0.06-1.24 s a repair).

Labels that meet the size bounds are an optimum exactly when the graph on the k clusters with
arc lengths ``slack[a, b]`` (the cheapest move of a band point from ``a`` to ``b``) has no
negative cycle, with a node ``R`` for the size ranges (arcs ``j -> R`` of length 0 where
cluster ``j`` may take one point more, ``R -> j`` where it may give one up): the certificate's
graph (:mod:`ballot_dask.certificate`).  A negative cycle is a better labelling at hand: the
cheapest point of each arc moves along it (one point leaves and one joins every cluster on
it, so the sizes stay within their bounds), and the objective falls by the cycle's weight.
Label correcting from the candidates' potentials finds a cycle (or proves there is none:
the distances are then potentials that certify the labels); after each move only the rows
of the clusters on the cycle change.  On the bands above: 1 to 122 cycles, 0.03-0.19 s.

Cancelling arbitrary negative cycles has no polynomial bound in general, so the search stops
after a budget of scans (:data:`LIMIT`), and the caller falls back to the shortest paths.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..certificate import ACYCLIC, RELATIVE_TOLERANCE, _largest_finite, label_correcting
from ..jit import njit
from .paths import _move, _push
from .slack_rows import _fill

SETTLED = 0  #: no cycle lighter than ``-tolerance`` is left: the certificate decides
LIMIT = 1  #: the scan budget ran out (or the search gave up): not settled

#: the label-correcting scans allowed per node (each relaxes one node's ``k + 1`` arcs): at
#: k = 1024 about a second in all, against the 0.2 million scans the longest cancelling above took
SCANS_PER_NODE = 1024


class CyclesResult(NamedTuple):
    """What :func:`cancel_cycles` returns."""

    status: int  #: :data:`SETTLED` or :data:`LIMIT`
    potentials: np.ndarray  #: (k,) the last label-correcting distances, relative to ``R``
    slack: np.ndarray  #: (k, k) the band's slack matrix under its final labels
    cycles: int  #: negative cycles cancelled
    moved: int  #: points moved, in all


@njit()
def _cancel(
    costs, labels, sizes, lower, upper, dist, tolerance, max_scans
):  # pragma: no cover - compiled
    m, k = costs.shape
    R = k
    # the band's points of each cluster, as doubly linked lists (O(1) moves, .paths)
    head = -np.ones(k, np.int64)
    nxt = -np.ones(m, np.int64)
    prv = -np.ones(m, np.int64)
    for i in range(m - 1, -1, -1):
        _push(i, labels[i], head, nxt, prv)
    labcost = np.empty(m)
    # the certificate's graph: the slack matrix, and the arcs to and from R
    weights = np.full((k + 1, k + 1), np.inf)
    slack = weights[:k, :k]
    where = -np.ones((k, k), np.int64)
    _fill(costs, None, labels, labcost, slack, where)
    if tolerance < 0.0:  # relative to the certificate's cost scale: the largest slack and
        # the mean cost (one pass over the slack matrix, not over the m x k costs)
        tolerance = RELATIVE_TOLERANCE * (_largest_finite(slack) + labcost.sum() / max(m, 1))
    # (no per-arc lists: a row's entries are rescanned, see .paths._move)
    vals, rows = np.empty((1, 1, 1)), np.empty((1, 1, 1), np.int64)
    start, end, bound = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64), np.zeros((1, 1))
    parent = np.empty(k + 1, np.int64)
    mark = np.zeros(k + 1, np.int64)
    cycle = np.empty(k + 1, np.int64)
    points = np.empty(k + 1, np.int64)
    stamp = 0
    cycles = 0
    moved = 0
    scans = 0
    while True:
        for j in range(k):
            weights[j, R] = 0.0 if sizes[j] < upper[j] else np.inf
            weights[R, j] = 0.0 if sizes[j] > lower[j] else np.inf
        if scans > max_scans:
            return LIMIT, cycles, moved, slack.copy()
        node, after = label_correcting(weights, dist, parent, mark, stamp)
        scans += (after - stamp + 1) * (k + 1)  # (it looks at the parents every k + 1 scans)
        stamp = after
        if node == ACYCLIC:
            return SETTLED, cycles, moved, slack.copy()
        if node < 0:
            return LIMIT, cycles, moved, slack.copy()
        # the cycle through ``node``, along the parents (arcs parent[y] -> y)
        length = 0
        total = 0.0
        y = node
        while True:
            cycle[length] = y
            length += 1
            total += weights[parent[y], y]
            y = parent[y]
            if y == node:
                break
        if total >= -tolerance:
            return SETTLED, cycles, moved, slack.copy()  # round-off: the certificate decides
        # every arc's cheapest point, before any moves (each cluster on the cycle gives one)
        for t in range(length):
            y = cycle[t]
            x = parent[y]
            points[t] = where[x, y] if x < k and y < k else -1
        for t in range(length):
            i = points[t]
            if i >= 0:  # as the shortest paths move a point (dense rows, rows rescanned)
                x, y = parent[cycle[t]], cycle[t]
                _move(
                    costs, None, labels, i, x, y, head, nxt, prv, sizes, labcost, True,
                    slack, where, vals, rows, start, end, bound,
                )  # fmt: skip
                moved += 1
        cycles += 1


def cancel_cycles(
    costs: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    potentials: np.ndarray,
    *,
    fixed_counts: np.ndarray | None = None,
    tolerance: float | None = None,
    max_scans: int | None = None,
) -> CyclesResult:
    """Cancel the negative cycles of the band's slack graph: the band's optimum on dense rows,
    from labels that already meet the size bounds.

    Parameters
    ----------
    costs : ndarray of shape (m, k)
        Dense cost rows of the band's points (float64).
    labels : ndarray of shape (m,), int64
        Their labels, whose sizes (with ``fixed_counts``) are within ``lower`` and
        ``upper``; updated in place.
    lower, upper : ndarray of shape (k,), int64
        Bounds on the sizes, counting the fixed points.
    potentials : ndarray of shape (k,)
        Where the label-correcting search starts (any; the nearer a certifying solution,
        the fewer scans: a solver's potentials for nearby labels).
    fixed_counts : ndarray of shape (k,), default=None
        Points per cluster outside the band (they do not move).
    tolerance : float, default=None
        A cycle no lighter than ``-tolerance`` is round-off: the search stops there.
        ``None``: the certificate's allowance, :data:`~ballot_dask.certificate.RELATIVE_TOLERANCE`
        of the cost scale (the largest slack plus the mean cost).
    max_scans : int, default=None
        Label-correcting scans at most (:data:`SCANS_PER_NODE` per node by default).

    Returns
    -------
    CyclesResult
    """
    k = costs.shape[1]
    fixed = np.zeros(k, np.int64) if fixed_counts is None else np.asarray(fixed_counts, np.int64)
    sizes = fixed + np.bincount(labels, minlength=k)
    lower = np.asarray(lower, dtype=np.int64)
    upper = np.asarray(upper, dtype=np.int64)
    if np.any(sizes < lower) or np.any(sizes > upper):
        raise ValueError("labels must meet the size bounds before their cycles are cancelled")
    dist = np.append(np.asarray(potentials, dtype=np.float64), 0.0)
    status, cycles, moved, slack = _cancel(
        np.ascontiguousarray(costs, dtype=np.float64),
        labels,
        sizes,
        lower,
        upper,
        dist,
        -1.0 if tolerance is None else float(tolerance),
        SCANS_PER_NODE * (k + 1) if max_scans is None else int(max_scans),
    )
    return CyclesResult(int(status), dist[:k] - dist[k], slack, int(cycles), int(moved))


__all__ = ["LIMIT", "SCANS_PER_NODE", "SETTLED", "CyclesResult", "cancel_cycles"]
