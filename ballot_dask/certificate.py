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
cycle: the cyclical monotonicity the paper's proofs rest on.  A label-correcting search
(Bellman-Ford with a queue) finds ``v`` or the cycle in O(k^3) at worst, far less from a
solver's own potentials; with such ``v`` the primal and dual objectives coincide, so the
duality gap is zero and the labels are an exact LP optimum, however they were obtained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .buffers import full_buffer
from .capacities import Capacities
from .costs import cost_block
from .jit import njit
from .kernels import assignment_terms


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


def _bellman_ford(weights: np.ndarray, start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Shortest distances from a virtual source joined to every node ``j`` by an edge of
    length ``start[j]`` (0 by default): the largest solution of the difference constraints
    ``dist_b - dist_a <= weights[a, b]`` that is at most ``start``.

    Returns ``(dist, ok)``; ``ok`` is False when a negative cycle exists.
    """
    n = weights.shape[0]
    dist = np.zeros(n) if start is None else np.array(start, dtype=np.float64)
    ok = _label_correcting(np.ascontiguousarray(weights, dtype=np.float64), dist)
    return dist, bool(ok)


#: what :func:`label_correcting` returns for a fixed point reached (no negative cycle) ...
ACYCLIC = -1
#: ... and for a search given up after ``n (n + 1)`` scans (a cycle, most likely)
GAVE_UP = -2


@njit()
def _label_correcting(weights, dist):  # pragma: no cover - compiled
    """Whether the difference constraints have a solution at most ``dist`` (found in place):
    :func:`label_correcting` reached a fixed point."""
    n = weights.shape[0]
    parent = np.empty(n, dtype=np.int64)
    return label_correcting(weights, dist, parent, np.zeros(n, dtype=np.int64), 0)[0] == ACYCLIC


@njit()
def label_correcting(weights, dist, parent, mark, stamp):  # pragma: no cover - compiled
    """Label correcting in place with a first-in first-out queue of the nodes whose distance
    fell (every node at first): a node leaving the queue relaxes its out-arcs ``weights[a,
    :]``, and a head whose distance falls joins the queue unless it is in it.  Returns
    ``(node, stamp)``: ``node`` is :data:`ACYCLIC` when the queue empties (the distances are
    then the largest fixed point below the start, as from Bellman-Ford's sweeps); a node of
    a cycle of negative weight when the nodes' parents (``parent[b]``: the tail of ``b``'s
    last improvement), looked at after every ``n`` scans, close one; :data:`GAVE_UP` after
    ``n (n + 1)`` scans (as many as ``n + 1`` sweeps).  Only the nodes whose distance fell
    are scanned again: from a solver's potentials, which few constraints contradict, 1 000
    to 5 000 scans of a row at k = 1024 instead of 6 to 27 sweeps over all ``k^2`` arcs
    (10x faster).  ``mark`` is the parent walks' scratch (zeros, or from an earlier call
    with the ``stamp`` it returned)."""
    n = weights.shape[0]
    parent[:] = -1
    queued = np.ones(n, dtype=np.bool_)
    queue = np.arange(n)  # a ring: every node is in it at most once
    head, size = 0, n
    scans, looks = 0, 0
    while size > 0:
        a = queue[head]
        head = head + 1 if head + 1 < n else 0
        size -= 1
        queued[a] = False
        da = dist[a]
        for b in range(n):
            c = da + weights[a, b]
            if c < dist[b]:
                dist[b] = c
                parent[b] = a
                if not queued[b]:
                    queued[b] = True
                    tail = head + size
                    queue[tail - n if tail >= n else tail] = b
                    size += 1
        scans += 1
        if scans % n == 0:
            looks += 1
            node = _parent_cycle(parent, weights, mark, stamp + looks)
            if node >= 0:
                return node, stamp + looks
            if looks > n:
                return GAVE_UP, stamp + looks
    return ACYCLIC, stamp + looks


@njit()
def _parent_cycle(parent, weights, mark, stamp):  # pragma: no cover - compiled
    """A node of a cycle of the parent pointers whose weight (summed) is negative, or -1.
    Every arc of a parent cycle was tight or better when it was set and the distances only
    fall, so such a cycle is negative; the sum confirms it against round-off.  ``mark`` is
    scratch (``stamp`` tells this look's marks from earlier ones)."""
    n = parent.shape[0]
    base = stamp * (n + 1)
    for origin in range(n):
        if mark[origin] >= base:
            continue
        x = origin
        while x >= 0 and mark[x] < base:
            mark[x] = base + 1 + origin  # on this walk
            x = parent[x]
        if x >= 0 and mark[x] == base + 1 + origin:  # the walk closed a cycle through x
            total = 0.0
            y = x
            while True:
                total += weights[parent[y], y]
                y = parent[y]
                if y == x:
                    break
            if total < 0.0:
                return x
    return -1


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


@njit()
def _excess(slack, v, limit):  # pragma: no cover - compiled
    """Each cluster's largest violation ``max(0, max_b (v_b - v_a - slack[a, b]))`` over its
    finite constraints (``b != a``), and how many exceed ``limit``: one pass over the k x k
    matrix (numpy's temporaries took a quarter of a second a certificate at k = 4096)."""
    k = slack.shape[0]
    row_excess = np.zeros(k)
    over = 0
    for a in range(k):
        va = v[a]
        best = 0.0
        for b in range(k):
            p = v[b] - va - slack[a, b]
            if b != a and np.isfinite(p):
                best = p if p > best else best
                over += p > limit
        row_excess[a] = best
    return row_excess, over


@njit()
def _largest_finite(slack):  # pragma: no cover - compiled
    """The largest ``|slack[a, b]|`` over the finite entries (0 if none; a NaN is left
    out).  A row in four chains, branch-free (one branchy chain: 56 ms at k = 4096, 29 ms
    so)."""
    best = 0.0
    k = slack.shape[1]
    for a in range(slack.shape[0]):
        b0 = b1 = b2 = b3 = 0.0
        b = 0
        while b + 4 <= k:
            b0 = max(b0, _finite_abs(slack[a, b]))
            b1 = max(b1, _finite_abs(slack[a, b + 1]))
            b2 = max(b2, _finite_abs(slack[a, b + 2]))
            b3 = max(b3, _finite_abs(slack[a, b + 3]))
            b += 4
        while b < k:
            b0 = max(b0, _finite_abs(slack[a, b]))
            b += 1
        best = max(best, max(max(b0, b1), max(b2, b3)))
    return best


@njit(inline="always")
def _finite_abs(x):  # pragma: no cover - compiled
    """``|x|``, or 0 where it is not finite."""
    y = abs(x)
    return y if y < np.inf else 0.0


#: above this many clusters, the potentials are a midpoint of the feasible ones rather than
#: the max-margin ones (Karp's algorithm is O(k^3))
_MARGIN_MAX_K = 512


def certify_slack(
    slack: np.ndarray,
    counts: np.ndarray,
    capacities: Capacities,
    tolerance: float,
    *,
    objective: float | None = None,
    interior: bool = False,
    near: np.ndarray | None = None,
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
    interior : bool, default=False
        Return the max-margin potentials (every constraint slack by half the minimum mean
        cycle weight: no labelled point on a boundary of their power diagram), for k up to
        512 (Karp's algorithm, O(k^3)); otherwise the midpoint of the largest and smallest
        feasible potentials.
    near : ndarray of shape (k,), default=None
        Instead, the largest feasible potentials at most ``near`` (relative to the pinned
        node): the certified potentials closest to a solver's own, the best warm start for
        the next step (a midpoint can lie far from where the next optimum will be).

    Returns
    -------
    potentials : ndarray of shape (k,)
    certificate : Certificate
    """
    k = slack.shape[0]
    lower, upper = capacities.lower, capacities.upper
    above, below = counts > lower, counts < upper
    # the search starts from ``near`` when given: whether a negative cycle exists does not
    # depend on the start, and the largest solution below ``near`` is then the result itself
    # (a second search from 0 took two thirds of the certificate's time at k = 1024)
    start = None
    if near is not None and np.isfinite(near).all():
        start = np.append(np.asarray(near, dtype=np.float64), 0.0)
    # exact constraints first; round-off can make a tie look like a tiny negative cycle, so
    # allow ``tolerance`` per edge only if they fail
    for allowance in (0.0, tolerance):
        weights = full_buffer((k + 1, k + 1), np.inf)
        np.add(slack, allowance, out=weights[:k, :k])
        weights[k, :k][above] = allowance  # v_j <= 0 where the column is above its lower bound
        weights[:k, k][below] = allowance  # v_j >= 0 where it is below its upper bound
        np.fill_diagonal(weights, np.inf)
        dist, acyclic = _bellman_ford(weights, start)
        if acyclic:
            break
    v = dist[:k] - dist[k]
    margin = 0.0
    if interior and acyclic and allowance == 0.0 and k <= _MARGIN_MAX_K:
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
    if acyclic and margin == 0.0 and start is None:
        # (from ``near``, v is already the largest feasible solution at most ``near``)
        # the largest solution (above) and the smallest one (from the reversed graph) bound the
        # feasible potentials; their midpoint leaves slack wherever any is possible
        low, _ = _bellman_ford(weights.T)
        v = 0.5 * (v - (low[:k] - low[k]))
    if not (above | below).any():
        v = v - v.mean()  # pure equality columns: potentials are defined up to a shift

    limit = tolerance * (k + 1)  # a path of at most k + 1 edges, each allowed ``tolerance``
    row_excess, over = _excess(np.ascontiguousarray(slack, dtype=np.float64), v, limit)
    sign = np.concatenate([np.maximum(v[above], 0.0), np.maximum(-v[below], 0.0)])
    infeasible = int(np.count_nonzero((counts < lower) | (counts > upper)))
    max_violation = float(max(row_excess.max(initial=0.0), sign.max(initial=0.0)))
    gap = float(
        (counts * row_excess).sum()
        + (counts * v).sum()
        - capacities.dual_term(v)
        + (np.inf if infeasible else 0.0)
    )
    violations = int(over + np.count_nonzero(sign > limit))
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


#: round-off allowance per constraint, relative to the cost scale: float64 costs carry about
#: 1e-16 of it (d roundings through BLAS), and the network simplex of the ``emd`` reference
#: (on costs rescaled to [0, 1]) settles exact ties to about 1e-12
RELATIVE_TOLERANCE = 1e-12


def certify_labels(
    slack: np.ndarray,
    sizes: np.ndarray,
    capacities: Capacities,
    objective: float,
    n: int,
    *,
    interior: bool = False,
    near: np.ndarray | None = None,
) -> tuple[np.ndarray, Certificate]:
    """Potentials and certificate of a labelling from its slack matrix, sizes and objective
    (the allowance is :data:`RELATIVE_TOLERANCE` of the cost scale: the largest slack plus
    the mean cost)."""
    scale = _largest_finite(np.ascontiguousarray(slack, dtype=np.float64)) + objective / max(n, 1)
    tolerance = RELATIVE_TOLERANCE * max(scale, 1e-300)
    return certify_slack(
        slack, sizes, capacities, tolerance, objective=objective, interior=interior, near=near
    )


def certify(
    X: ArrayLike,
    centers: ArrayLike,
    labels: ArrayLike,
    *,
    sizes: ArrayLike | None = None,
    size_min: ArrayLike | None = None,
    size_max: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> Certificate:
    """Prove (or disprove) that ``labels`` solve the balanced assignment LP for ``centers``.

    Checks any labelling, however it was obtained (this package, another tool, by hand):
    one pass over X computes the sizes, the objective ``sum_i ||x_i - mu_{l_i}||^2`` and the
    k x k slack matrix in float64 (float32 input values are exact in float64), then a
    negative-cycle test on k + 1 nodes decides whether potentials exist under which every
    point's label minimises its reduced cost and every size meets its bound.

    Parameters
    ----------
    X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
        The points: dense, scipy.sparse (used as CSR, never densified), or a dask array of
        NumPy or CSR chunks.
    centers : array-like of shape (n_clusters, n_features)
        The cluster centers ``mu`` (rounded to X's dtype, as the fitted centers are).
    labels : array-like or dask array of shape (n_samples,)
        The cluster of each point, integers in ``[0, n_clusters)``.
    sizes, size_min, size_max :
        The size request, as for :class:`~ballot_dask.BalancedKMeans` (default: equal sizes).
    sample_weight : array-like or dask array of shape (n_samples,), default=None
        Weights of the points: the sizes are then masses in units of weight (as for
        ``BalancedKMeans.fit``), the objective weighted, and rows of weight 0 constrain
        nothing.  Hard labels meet fractional equal masses only by chance (an optimum may
        split points): check such labels against ``size_min``/``size_max``.

    Returns
    -------
    Certificate
        ``optimal`` is True when the labels are an exact optimum of the LP (to round-off:
        ``tolerance`` per constraint, ``gap_tolerance`` on the duality gap).

    Examples
    --------
    >>> import numpy as np
    >>> from ballot_dask import certify
    >>> X = np.array([[0.0], [1.0], [9.0], [10.0]])
    >>> certify(X, [[0.5], [9.5]], [0, 0, 1, 1]).optimal
    True
    >>> certify(X, [[0.5], [9.5]], [0, 1, 0, 1]).optimal
    False
    """
    from dask.base import is_dask_collection

    from ._validation import check_centers, check_data
    from .capacities import resolve_capacities
    from .solvers.weighted import MASS_TOLERANCE, snap_to_bounds
    from .weights import check_sample_weight, mass_capacities

    data: Any = X
    if is_dask_collection(data):
        from .dask_input import as_dask_data

        data = as_dask_data(data)
    else:
        data = check_data(data)
    mu = check_centers(centers, data.shape[1])
    n, k = int(data.shape[0]), mu.shape[0]
    weight = check_sample_weight(sample_weight, data)
    if weight is None:
        capacities = resolve_capacities(n, k, sizes=sizes, size_min=size_min, size_max=size_max)
    else:
        capacities = mass_capacities(weight, k, sizes=sizes, size_min=size_min, size_max=size_max)
    w = None if weight is None else weight.values
    labels_arr = _check_labels(labels, n, k)
    if is_dask_collection(data):
        counts, _, slack, objective = _dask_terms(data, mu, labels_arr, w)
    else:
        counts, _, slack, objective = _chunk_terms(data, labels_arr, mu, w)
    if weight is not None:
        counts = snap_to_bounds(counts, capacities, MASS_TOLERANCE * weight.total)
    return certify_labels(slack, counts, capacities, objective, n)[1]


def _check_labels(labels: Any, n: int, k: int) -> Any:
    """Labels as int64 of shape (n,) in ``[0, k)`` (a dask array stays lazy)."""
    from dask.base import is_dask_collection

    if is_dask_collection(labels):
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(f"labels must have shape ({n},) to match X, got {labels.shape}")
        return labels.astype(np.int64)
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match X, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise TypeError(f"labels must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(
            f"labels must lie in [0, {k}) for {k} centers, got values in [{arr.min()}, {arr.max()}]"
        )
    return arr


def _chunk_terms(
    xb: np.ndarray, lb: np.ndarray, mu: np.ndarray, wb: np.ndarray | None = None
) -> tuple:
    """Sizes, centroid sums, slack matrix and objective of a block's labels (with weights
    ``wb``: masses, no sums, the slack over the rows of positive weight, weighted costs)."""
    k = mu.shape[0]
    lb = np.asarray(lb, dtype=np.int64)
    if lb.size and (lb.min() < 0 or lb.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}) for {k} centers")
    costs = cost_block(xb, mu)
    if wb is None:
        return assignment_terms(xb, costs, lb)
    wb = np.asarray(wb, dtype=np.float64)
    chosen = costs[np.arange(lb.shape[0]), lb]
    slack = np.full((k, k), np.inf)
    held = wb > 0
    np.minimum.at(slack, lb[held], costs[held] - chosen[held, None])
    np.fill_diagonal(slack, np.inf)
    return np.bincount(lb, wb, minlength=k), None, slack, float(np.dot(wb, chosen))


def _combine_terms(parts: list[tuple]) -> tuple:
    counts = np.sum([p[0] for p in parts], axis=0)
    sums = None if parts[0][1] is None else np.sum([p[1] for p in parts], axis=0)
    slack = np.min([p[2] for p in parts], axis=0)
    return counts, sums, slack, float(sum(p[3] for p in parts))


def _dask_terms(X: Any, mu: np.ndarray, labels: Any, weights: Any = None) -> tuple:
    """:func:`_chunk_terms` over the chunks of a dask array: one pass, one round."""
    import dask
    import dask.array as da
    from dask import delayed

    if not isinstance(labels, da.Array):
        labels = da.from_array(np.asarray(labels), chunks=(X.chunks[0],))
    labels = labels.rechunk((X.chunks[0],))
    chunks = X.to_delayed(optimize_graph=False).ravel()
    if weights is None:
        weight_parts: list[Any] = [None] * len(chunks)
    else:
        weights = da.asarray(weights).rechunk((X.chunks[0],))
        weight_parts = list(weights.to_delayed(optimize_graph=False).ravel())
    parts = [
        delayed(_chunk_terms)(xb, lb, mu, wb)
        for xb, lb, wb in zip(
            chunks,
            labels.to_delayed(optimize_graph=False).ravel(),
            weight_parts,
            strict=True,
        )
    ]
    (results,) = dask.compute(parts)
    return _combine_terms(list(results))
