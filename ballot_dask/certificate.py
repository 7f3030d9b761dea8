"""Optimality certificate for a hard balanced assignment.

Labels ``l`` are an optimum of the balanced transport LP exactly when there are potentials
``v`` (one per cluster) such that

1. every point's label minimises its reduced cost: ``C_{i,l_i} - v_{l_i} <= C_ij - v_j``;
2. every column meets its capacity and the potentials have the right sign where a column is
   not at a bound: ``v_j <= 0`` if ``size_j > lower_j`` and ``v_j >= 0`` if ``size_j < upper_j``.

Condition 1 only involves, for each pair of clusters, the smallest ``C_ij - C_ia`` over the
points labelled ``a``: the k x k *slack matrix* ``W`` that one pass over the data reduces.  The
conditions are then difference constraints ``v_j - v_a <= W[a, j]`` on k + 1 nodes (one extra
node pinned at 0 for the signs), feasible exactly when the constraint graph has no negative
cycle: the cyclical monotonicity the paper's proofs rest on.  Bellman-Ford finds ``v`` or the
cycle in O(k^3) at worst; with such ``v`` the primal and dual objectives coincide, so the
duality gap is zero and the labels are an exact LP optimum, however they were obtained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .capacities import Capacities
from .jit import njit


@dataclass(frozen=True)
class Certificate:
    """Proof (or disproof) that labels are an optimum of the assignment LP.

    Attributes
    ----------
    optimal : bool
        True when potentials exist that satisfy complementary slackness (within
        ``tolerance`` per constraint) and the sizes are feasible.
    duality_gap : float
        Upper bound on ``primal - dual(potentials)``, from the slack matrix; 0 proves optimality.
    max_violation : float
        Largest amount by which any point's reduced cost exceeds its best column's under the
        returned potentials, or by which a potential has the wrong sign (0 when none).
    violations : int
        Number of violated complementary-slackness conditions: cluster pairs ``(a, j)`` whose
        constraint ``v_j - v_a <= W[a, j]`` fails by more than ``tolerance``, plus columns with
        a wrong-signed potential, plus columns outside their capacity.
    tolerance : float
        Round-off allowance per constraint used in the check (absolute, in cost units).
    gap_tolerance : float
        Largest ``duality_gap`` accepted as zero: ``1e-9 * max(objective, scale)`` when the
        objective is known (``scale``: the largest slack plus the mean cost), else
        ``tolerance``.
    """

    optimal: bool
    duality_gap: float
    max_violation: float
    violations: int
    tolerance: float
    gap_tolerance: float = 0.0


def _bellman_ford(weights: np.ndarray) -> tuple[np.ndarray, bool]:
    """Shortest distances from a virtual source joined to every node by a 0 edge.

    Returns ``(dist, ok)``; ``ok`` is False when a negative cycle exists.
    """
    n = weights.shape[0]
    dist = np.zeros(n)
    for _ in range(n + 1):
        new = np.minimum(dist, (dist[:, None] + weights).min(axis=0))
        if np.array_equal(new, dist):
            return dist, True
        dist = new
    return dist, False


@njit()
def _min_mean_cycle(weights):  # pragma: no cover - compiled
    """Karp's minimum mean cycle weight of a graph (``inf`` arcs absent; ``inf``: no cycle)."""
    n = weights.shape[0]
    walks = np.full((n + 1, n), np.inf)
    walks[0, :] = 0.0  # walks may start anywhere
    for s in range(1, n + 1):
        for w in range(n):
            best = np.inf
            for u in range(n):
                c = walks[s - 1, u] + weights[u, w]
                if c < best:
                    best = c
            walks[s, w] = best
    mean = np.inf
    for w in range(n):
        if walks[n, w] == np.inf:
            continue
        worst = -np.inf
        for s in range(n):
            if walks[s, w] < np.inf:
                val = (walks[n, w] - walks[s, w]) / (n - s)
                if val > worst:
                    worst = val
        if worst < mean:
            mean = worst
    return mean


#: above this many clusters, the potentials are a midpoint of the feasible ones rather than
#: the max-margin ones (Karp's algorithm is O(k^3))
_MARGIN_MAX_K = 512


def certify(
    slack: np.ndarray,
    counts: np.ndarray,
    capacities: Capacities,
    tolerance: float,
    *,
    objective: float | None = None,
) -> tuple[np.ndarray, Certificate]:
    """Potentials for a hard assignment and the certificate that they prove it optimal.

    Parameters
    ----------
    slack : ndarray of shape (k, k)
        ``W[a, j] = min over points labelled a of (C_ij - C_ia)``; ``inf`` rows for empty
        clusters (see :func:`ballot_dask.kernels.assignment_terms`).
    counts : ndarray of shape (k,)
        Cluster sizes of the assignment.
    capacities : Capacities
        The size bounds the assignment must meet.
    tolerance : float
        Round-off allowance per constraint (absolute, in cost units).
    objective : float, default=None
        The labels' objective ``sum_i C_{i, l_i}``: the duality gap must then be within
        ``1e-9 * max(objective, tolerance / 1e-12)`` for ``optimal``.

    Returns
    -------
    potentials : ndarray of shape (k,)
    certificate : Certificate
    """
    k = slack.shape[0]
    lower, upper = capacities.lower, capacities.upper
    above, below = counts > lower, counts < upper
    # exact constraints first; round-off can make a tie look like a tiny negative cycle, so
    # allow ``tolerance`` per edge only if they fail
    for allowance in (0.0, tolerance):
        weights = np.full((k + 1, k + 1), np.inf)
        weights[:k, :k] = slack + allowance
        weights[k, :k][above] = allowance  # v_j <= 0 where the column is above its lower bound
        weights[:k, k][below] = allowance  # v_j >= 0 where it is below its upper bound
        np.fill_diagonal(weights, np.inf)
        dist, acyclic = _bellman_ford(weights)
        if acyclic:
            break
    v = dist[:k] - dist[k]
    margin = 0.0
    if acyclic and allowance == 0.0 and k <= _MARGIN_MAX_K:
        # every constraint can hold with slack up to the minimum mean cycle weight: with half
        # of it, no labelled point sits on a boundary of the power diagram of the result
        mean = _min_mean_cycle(np.where(np.isfinite(weights), weights, np.inf))
        if np.isfinite(mean) and mean > 0:
            margin = 0.5 * float(mean)
            shrunk, ok = _bellman_ford(weights - margin)
            if ok:
                v = shrunk[:k] - shrunk[k]
            else:  # pragma: no cover - round-off at the margin
                margin = 0.0
    if acyclic and margin == 0.0:
        # the largest solution (above) and the smallest one (from the reversed graph) bound the
        # feasible potentials; their midpoint leaves slack wherever any is possible
        low, _ = _bellman_ford(weights.T)
        v = 0.5 * (v - (low[:k] - low[k]))
    if not (above | below).any():
        v = v - v.mean()  # pure equality columns: potentials are defined up to a shift

    with np.errstate(invalid="ignore"):
        pair = v[None, :] - v[:, None] - slack
    pair[~np.isfinite(pair)] = -np.inf
    np.fill_diagonal(pair, -np.inf)
    row_excess = np.maximum(pair.max(axis=1), 0.0)
    sign = np.concatenate([np.maximum(v[above], 0.0), np.maximum(-v[below], 0.0)])
    infeasible = int(np.count_nonzero((counts < lower) | (counts > upper)))
    max_violation = float(max(row_excess.max(initial=0.0), sign.max(initial=0.0)))
    gap = float(
        (counts * row_excess).sum()
        + (counts * v).sum()
        - capacities.dual_term(v)
        + (np.inf if infeasible else 0.0)
    )
    limit = tolerance * (k + 1)  # a path of at most k + 1 edges, each allowed ``tolerance``
    violations = int(np.count_nonzero(pair > limit) + np.count_nonzero(sign > limit))
    gap = max(gap, 0.0)
    if objective is None:
        gap_tolerance = float(tolerance)
    else:  # relative 1e-9 of the objective, or of the cost scale behind ``tolerance``
        gap_tolerance = 1e-9 * max(abs(float(objective)), float(tolerance) / 1e-12)
    certificate = Certificate(
        optimal=bool(acyclic and not infeasible and gap <= gap_tolerance),
        duality_gap=gap,
        max_violation=max_violation,
        violations=violations + infeasible,
        tolerance=float(tolerance),
        gap_tolerance=gap_tolerance,
    )
    return v, certificate
