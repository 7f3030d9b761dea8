"""Initial centers for Lloyd-type balanced k-means (BalLOT).

Each named strategy maps ``(X, n_clusters, random_state)`` to a float64 array of shape
``(n_clusters, n_features)``; :func:`initial_centers` dispatches on ``init``. The "diameter"
and "coupon" strategies are the initialisations analysed in Theorem 15 of Luo & Mixon,
"BalLOT" (arXiv:2512.05926).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import cut_tree, fcluster, linkage
from sklearn.cluster import kmeans_plusplus

from .sparse import dense_rows, is_sparse

__all__ = ["INITIALIZERS", "initial_centers"]

# Failure probability targeted by the coupon-collector sample size (Theorem 15(b)).
_COUPON_FAILURE = 0.01
# Double sweeps used to get a diameter lower bound; each one costs a single O(n d) pass.
_N_SWEEPS = 4
# Cap on block_rows * n_candidates so a distance block stays around 32 MB of float64.
_BLOCK_ELEMENTS = 1 << 22
_MAX_BLOCK_ROWS = 2048


def _as_centers(X: Any, rows: np.ndarray) -> np.ndarray:
    if is_sparse(X):
        return dense_rows(X, rows)
    return np.ascontiguousarray(X[rows], dtype=np.float64)


def _kmeans_plusplus(
    X: np.ndarray, n_clusters: int, random_state: np.random.RandomState
) -> np.ndarray:
    # Delegate to scikit-learn; an int seed drawn from our RandomState keeps it reproducible.
    seed = int(random_state.randint(np.iinfo(np.int32).max))
    centers, _ = kmeans_plusplus(X, n_clusters, random_state=seed)
    return np.ascontiguousarray(centers, dtype=np.float64)


def _random(X: np.ndarray, n_clusters: int, random_state: np.random.RandomState) -> np.ndarray:
    return _as_centers(X, random_state.choice(X.shape[0], n_clusters, replace=False))


class _Dense:
    """The distances the diameter search needs, on a dense X centred at its mean (centring
    shrinks norms, hence rounding in the expansion of the Gram blocks)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self.Xc = X - X.mean(axis=0)
        self.sq = np.einsum("ij,ij->i", self.Xc, self.Xc)  # squared distances to the mean
        self.scale = float(self.sq.max())  # of the squared norms the Gram blocks expand

    def to_row(self, a: int) -> np.ndarray:
        diff = self.Xc - self.Xc[a]
        return np.einsum("ij,ij->i", diff, diff)

    def pair(self, a: int, b: int) -> float:
        return float(np.sum((self.X[a] - self.X[b]) ** 2))  # on X, like the blocks

    def gram(self, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
        return self.Xc[P] @ self.Xc[Q].T

    def pairs(self, pi: np.ndarray, qj: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.X[pi] - self.X[qj], self.X[pi] - self.X[qj])


class _Sparse:
    """:class:`_Dense`'s distances on a sparse X, never densified: centring is folded into
    the products (``(x - m).(y - m) = x.y - x.m - y.m + m.m``), so the rounding scale is that
    of the uncentred norms."""

    def __init__(self, X: Any) -> None:
        self.X = X.astype(np.float64)
        self.mean = np.asarray(self.X.mean(axis=0)).ravel()
        self.xm = np.asarray(self.X @ self.mean).ravel()
        self.xsq = np.asarray(self.X.multiply(self.X).sum(axis=1)).ravel()
        self.msq = float(self.mean @ self.mean)
        self.sq = np.maximum(self.xsq - 2.0 * self.xm + self.msq, 0.0)
        self.scale = float(self.xsq.max()) + self.msq

    def to_row(self, a: int) -> np.ndarray:
        xa = self.X[[a]].toarray().ravel()
        dot = np.asarray(self.X @ xa).ravel()
        return np.maximum(self.xsq - 2.0 * dot + float(xa @ xa), 0.0)

    def pair(self, a: int, b: int) -> float:
        return float(self.pairs(np.array([a]), np.array([b]))[0])

    def gram(self, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
        inner = np.asarray((self.X[P] @ self.X[Q].T).toarray())
        return inner - self.xm[P, None] - self.xm[None, Q] + self.msq

    def pairs(self, pi: np.ndarray, qj: np.ndarray) -> np.ndarray:
        diff = self.X[pi] - self.X[qj]
        return np.asarray(diff.multiply(diff).sum(axis=1)).ravel()


def _diameter_pair(X: Any) -> tuple[int, int]:
    """Exact farthest pair ``(i, j)``, ``i < j``; ties go to the lexicographically smallest pair.

    A lower bound ``D_lb`` comes from double sweeps. Each anchor ``a`` (the centroid and the
    sweep points) gives ``||p - q|| <= ||p - a|| + max_q ||q - a||``, so a point whose smallest
    such bound is below ``D_lb`` cannot be a diameter endpoint. Surviving candidates are brute
    forced in row blocks, in decreasing order of their bound so the loop can stop early. For
    well-separated clusters only the far caps survive; the worst case (all points on a sphere)
    keeps every point: O(n^2 d) time, O(block * n) memory with block * n <= 2**22 entries.
    A sparse X stays sparse (its Gram blocks are sparse products).
    """
    n, d = X.shape
    geometry = _Sparse(X) if is_sparse(X) else _Dense(X)
    sq = geometry.sq
    anchor_dists = [np.sqrt(sq)]
    best = (0.0, 0, 1)  # (squared distance, i, j)

    def offer(d2: float, i: int, j: int) -> None:
        nonlocal best
        i, j = min(i, j), max(i, j)
        if (-d2, i, j) < (-best[0], best[1], best[2]):
            best = (d2, i, j)

    # Sweep chain: a -> farthest b -> farthest from b ...; stops on a mutually farthest pair.
    a, prev = int(np.argmax(sq)), -1
    for _ in range(2 * _N_SWEEPS):
        da2 = geometry.to_row(a)
        anchor_dists.append(np.sqrt(da2))
        b = int(np.argmax(da2))
        offer(geometry.pair(a, b), a, b)
        if b == prev:
            break
        a, prev = b, a
    if best[0] == 0.0:
        return 0, 1  # all points coincide, every pair ties

    # Slack keeps tight triangle bounds (anchor = endpoint) alive despite rounding.
    tol = 1e-9 * (math.sqrt(best[0]) + math.sqrt(geometry.scale))
    alive = np.ones(n, dtype=bool)
    while True:  # bounds only use alive partners, so shrinking the set tightens them
        ub = np.min([da + da[alive].max() for da in anchor_dists], axis=0)
        new_alive = alive & (ub >= math.sqrt(best[0]) - tol)
        if new_alive.sum() == alive.sum():
            break
        alive = new_alive
    order = np.flatnonzero(alive)
    order = order[np.argsort(-ub[order], kind="stable")]
    neg_ub = -ub[order]
    # Bound on rounding error of ||a||^2 - 2 a.b + ||b||^2 relative to direct differences.
    tol2 = 8.0 * (d + 2) * np.finfo(np.float64).eps * geometry.scale

    start = 0
    while start < order.size:
        cut = math.sqrt(best[0]) - tol
        if -neg_ub[start] < cut:
            break  # sorted by bound: no remaining point can reach the current best
        stop = int(np.searchsorted(neg_ub, -cut, side="right"))
        rows = max(1, min(_MAX_BLOCK_ROWS, _BLOCK_ELEMENTS // max(stop - start, 1)))
        P, Q = order[start : start + rows], order[start:stop]
        # Pairs with an earlier-ranked point were already seen when that point was a row.
        approx = geometry.gram(P, Q)
        approx *= -2.0  # in place: the block is the only large temporary
        approx += sq[P, None]
        approx += sq[None, Q]
        ii, jj = np.nonzero(approx >= max(float(approx.max()), best[0]) - tol2)
        pi, qj = P[ii], Q[jj]
        keep = pi != qj
        pi, qj = np.minimum(pi[keep], qj[keep]), np.maximum(pi[keep], qj[keep])
        if pi.size:  # re-score near-maximal pairs by direct differences, as pdist would
            exact = geometry.pairs(pi, qj)
            w = np.lexsort((qj, pi, -exact))[0]
            offer(float(exact[w]), int(pi[w]), int(qj[w]))
        start += rows
    return best[1], best[2]


def _diameter(X: np.ndarray, n_clusters: int, random_state: np.random.RandomState) -> np.ndarray:
    # Theorem 15(a): started at a diameter pair, BalLOT recovers two well-separated balls
    # in one step. The pair is found exactly, so random_state is not used.
    if n_clusters != 2:
        raise ValueError(
            f"init='diameter' needs n_clusters=2, got n_clusters={n_clusters}; "
            "use init='coupon' or init='k-means++' instead."
        )
    i, j = _diameter_pair(X if is_sparse(X) else np.asarray(X, dtype=np.float64))
    return _as_centers(X, np.array([i, j]))


def _coupon(X: np.ndarray, n_clusters: int, random_state: np.random.RandomState) -> np.ndarray:
    n, k = X.shape[0], n_clusters
    # Theorem 15(b): coupon collector -- with m ~ k (ln k + ln(1/p)) uniform draws every
    # balanced planted cluster is sampled with probability about 1 - p.
    m = 1 if k == 1 else min(n, math.ceil(k * (math.log(k) + math.log(1.0 / _COUPON_FAILURE))))
    idx = random_state.choice(n, m, replace=False)
    if k == 1 or m == k:
        return _as_centers(X, idx)
    protos = _as_centers(X, idx)
    # The paper joins proto-means closer than a model-dependent threshold and keeps one per
    # clique. Under its hypothesis the cliques are the k single-linkage groups for any
    # threshold between intra- and inter-cluster distances, so no threshold is needed here.
    Z = linkage(protos, method="single")
    labels = fcluster(Z, t=k, criterion="maxclust")
    if np.unique(labels).size != k:
        # Tied merge heights stop fcluster short of k groups; cutting by merge order always
        # yields exactly k groups, deterministically.
        labels = cut_tree(Z, n_clusters=k).ravel()
    reps = []
    for label in np.unique(labels):  # sorted, so centers come out in label order
        members = np.flatnonzero(labels == label)
        dist2 = ((protos[members] - protos[members].mean(axis=0)) ** 2).sum(axis=1)
        reps.append(idx[members[np.argmin(dist2)]])
    return _as_centers(X, np.array(reps))


INITIALIZERS: dict[str, Callable[[np.ndarray, int, np.random.RandomState], np.ndarray]] = {
    "k-means++": _kmeans_plusplus,
    "random": _random,
    "diameter": _diameter,
    "coupon": _coupon,
}


def init_passes(init: str | np.ndarray, n_clusters: int) -> int:
    """Passes over the sample a strategy makes: k-means++ one per center drawn, ``random``
    none (it reads k rows), ``coupon`` one, ``diameter`` its centring and sweeps and at least
    one brute-force pass over the candidates (a lower bound: the candidates depend on the
    data); explicit centers none."""
    if not isinstance(init, str):
        return 0
    return {"k-means++": n_clusters, "random": 0, "diameter": 2 * _N_SWEEPS + 2}.get(init, 1)


def initial_centers(
    X: np.ndarray,
    n_clusters: int,
    init: str | np.ndarray,
    random_state: np.random.RandomState,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Compute initial cluster centers.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated, finite float32 or float64 data with ``n_samples >= n_clusters``.
    n_clusters : int
        Number of centers ``k >= 1``.
    init : {"k-means++", "random", "diameter", "coupon"} or ndarray of shape (k, n_features)
        Named strategy (see :data:`INITIALIZERS`) or explicit centers, which are copied.
    random_state : numpy.random.RandomState
        Source of randomness; the output is deterministic for a given seed.
    sample_weight : ndarray of shape (n_samples,), default=None
        Weights of the rows: only rows of positive weight become centers, and k-means++
        draws them with probability proportional to weight times squared distance
        (scikit-learn's weighted k-means++).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        C-contiguous float64 centers.

    Raises
    ------
    ValueError
        If ``init`` names no strategy, is "diameter" with ``n_clusters != 2``, or is an
        array of the wrong shape or with non-finite entries.
    TypeError
        If ``init`` is neither a string nor an array.
    """
    if isinstance(init, str):
        if init not in INITIALIZERS:
            raise ValueError(f"Unknown init={init!r}; expected one of {sorted(INITIALIZERS)}.")
        if sample_weight is not None:
            weighted = np.asarray(sample_weight, dtype=np.float64)
            keep = np.flatnonzero(weighted > 0)
            if keep.size < n_clusters:
                raise ValueError(
                    f"only {keep.size} rows of the initialisation's sample have a positive "
                    f"sample_weight, fewer than n_clusters={n_clusters}; give init as an array"
                )
            if keep.size < X.shape[0]:
                X, weighted = X[keep], weighted[keep]
            if init == "k-means++":
                seed = int(random_state.randint(np.iinfo(np.int32).max))
                centers, _ = kmeans_plusplus(
                    X, n_clusters, sample_weight=weighted, random_state=seed
                )
                return np.ascontiguousarray(centers, dtype=np.float64)
        return INITIALIZERS[init](X, n_clusters, random_state)
    if isinstance(init, (np.ndarray, list, tuple)):
        centers = np.array(init, dtype=np.float64, order="C", copy=True)
        expected = (n_clusters, X.shape[1])
        if centers.shape != expected:
            raise ValueError(f"init array must have shape {expected}, got {centers.shape}.")
        if not np.all(np.isfinite(centers)):
            raise ValueError("init array must contain only finite values.")
        return centers
    raise TypeError(
        f"init must be a string in {sorted(INITIALIZERS)} or an array, got {type(init).__name__}."
    )
