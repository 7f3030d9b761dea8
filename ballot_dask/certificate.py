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
        Round-off allowance used in the check.
    """

    optimal: bool
    duality_gap: float
    max_violation: float
    violations: int
    tolerance: float


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


def certify(
    slack: np.ndarray,
    counts: np.ndarray,
    capacities: Capacities,
    tolerance: float,
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
    if acyclic:
        # the largest solution (above) and the smallest one (from the reversed graph) bound the
        # feasible potentials; their midpoint leaves slack wherever any is possible, so that the
        # power diagram of the result does not sit exactly on the labelled points
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
    certificate = Certificate(
        optimal=bool(acyclic and not infeasible),
        duality_gap=max(gap, 0.0),
        max_violation=max_violation,
        violations=violations + infeasible,
        tolerance=float(tolerance),
    )
    return v, certificate
