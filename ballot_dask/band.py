"""Exact transport for the few points whose label is in doubt.

Given the cost rows of m points (mass 1 each) and the capacity left in each cluster, solve the
transport LP exactly with POT's network simplex (``ot.emd``), which returns a vertex: an
integral plan, ties (duplicated points) included.

Interval capacities ``lower <= size <= upper`` are reduced to POT's equality marginals by
splitting every cluster into a *required* sink of demand ``lower`` and an *optional* sink of
demand ``upper - lower``, and adding one slack source that may fill optional sinks for free
(and required sinks only at a prohibitive cost).  With ``lower == upper`` this is the plain
problem.
"""

from __future__ import annotations

import warnings

import numpy as np


def solve_band(costs: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Optimal integral labels for ``m`` points under interval capacities.

    Parameters
    ----------
    costs : ndarray of shape (m, k)
        Cost rows of the points.
    lower, upper : ndarray of shape (k,)
        Integer bounds on how many of these points each cluster takes;
        ``sum(lower) <= m <= sum(upper)``.

    Returns
    -------
    labels : ndarray of shape (m,), int64
    """
    m, k = costs.shape
    lower = np.asarray(lower, dtype=np.int64)
    upper = np.asarray(upper, dtype=np.int64)
    if lower.sum() > m or upper.sum() < m or np.any(lower > upper) or np.any(lower < 0):
        raise ValueError("band capacities are infeasible")
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    optional = upper - lower
    sink_cluster = np.concatenate([np.arange(k), np.arange(k)])
    demand = np.concatenate([lower, optional]).astype(np.float64)
    keep = demand > 0
    # the network simplex compares reduced costs with absolute thresholds: bring the costs to
    # [0, 1] (a shift and a positive scale of every real row change no optimum)
    low, spread = float(costs.min()), float(costs.max() - costs.min())
    unit = (costs - low) / spread if spread > 0 else np.zeros_like(costs, dtype=np.float64)
    # identical rows (duplicated points) become one source carrying their number: the network
    # simplex can cycle on many identical sources (degenerate pivots)
    unit, inverse, supply = np.unique(unit, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    supply = supply.astype(np.float64)
    u = unit.shape[0]
    M = np.concatenate([unit, unit], axis=1)
    slack = float(upper.sum() - m)
    if slack > 0:
        forbid = 3.0  # dearer than any exchange with a real point (costs span at most 1)
        slack_row = np.concatenate([np.full(k, forbid), np.zeros(k)])
        M = np.vstack([M, slack_row])
        supply = np.append(supply, slack)
    M = np.ascontiguousarray(M[:, keep])
    import ot  # imported here: Dask workers never solve a band

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # numItermax reached must not pass silently
        plan = ot.emd(supply, demand[keep], M, numItermax=max(100_000, 50 * M.size))
    # a vertex of an LP with integral supplies and demands is integral: hand each group of
    # identical rows its clusters in whole units
    clusters = sink_cluster[keep]
    labels = clusters[np.argmax(plan[:u], axis=1)][inverse]
    counts = np.bincount(inverse, minlength=u)
    for g in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inverse == g)
        per = np.repeat(clusters, np.rint(plan[g]).astype(np.int64))
        if per.shape[0] != members.shape[0]:  # pragma: no cover - a non-integral vertex
            raise RuntimeError("the network simplex returned a fractional band plan")
        labels[members] = per
    return labels.astype(np.int64)
