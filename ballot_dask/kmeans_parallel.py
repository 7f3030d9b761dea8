"""k-means|| (Bahmani, Moseley, Vattani, Kumar & Vassilvitskii 2012): initial centers from a few
passes over data of any size.

Start from one point of the fit's row sample; in each of a few rounds, one pass over X samples
every row independently with probability ``l * d^2(x, C) / psi`` (``C`` the candidates so far,
``psi`` their cost, ``l = 2k``); a last pass counts the rows nearest to each candidate, and a
weighted k-means++ on the (few hundred to few thousand) candidates picks the k centers.

Every row's random draw is a hash of the seed, the round and the row's index: the result does
not depend on how X is chunked, nor on the engine (in memory or Dask).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .blocks import Blocks
from .sparse import as_csr, dense_rows, is_sparse

__all__ = ["kmeans_parallel"]

ROUNDS = 5  #: sampling rounds (Bahmani et al.: a few suffice in practice)
OVERSAMPLING = 2.0  #: rows sampled per round, in units of k (their l = 2k)


def _uniform(rows: np.ndarray, seed: int, round_: int) -> np.ndarray:
    """A uniform draw in [0, 1) for every global row index (splitmix64 of seed, round, row)."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z += np.uint64(round_ + 1) * np.uint64(0xD1B54A32D192ED03)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _nearest(xb: Any, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared distance to the nearest candidate, memory-bounded (a sparse
    block stays sparse)."""
    from sklearn.metrics import pairwise_distances_argmin_min

    rows = as_csr(xb).astype(np.float64) if is_sparse(xb) else np.asarray(xb, dtype=np.float64)
    index, dist = pairwise_distances_argmin_min(rows, candidates, metric="euclidean")
    return index, dist**2


def _rows(X: Any, rows: np.ndarray) -> np.ndarray:
    """Rows of X as a float64 array (k-means|| keeps its candidates dense)."""
    return dense_rows(X, rows) if is_sparse(X) else np.asarray(X[rows], dtype=np.float64)


def _round_kernel(
    xb: np.ndarray, candidates: np.ndarray, factor: float, seed: int, round_: int, offset: int
) -> tuple[float, np.ndarray]:
    """A block's cost to the candidates and its rows sampled with probability
    ``factor * d^2`` (none when ``factor`` is 0)."""
    _, d2 = _nearest(xb, candidates)
    picked = np.zeros((0, xb.shape[1]))
    if factor > 0:
        draw = _uniform(np.arange(offset, offset + xb.shape[0]), seed, round_)
        chosen = np.flatnonzero(draw < factor * d2)
        picked = _rows(xb, chosen)
    return float(d2.sum()), picked


def _combine_round(parts: list[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    return float(sum(p[0] for p in parts)), np.concatenate([p[1] for p in parts])


def _weight_kernel(xb: np.ndarray, candidates: np.ndarray, offset: int) -> np.ndarray:
    index, _ = _nearest(xb, candidates)
    return np.bincount(index, minlength=candidates.shape[0]).astype(np.float64)


def _combine_weights(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0)


def kmeans_parallel(
    blocks: Blocks,
    sample: np.ndarray,
    n_clusters: int,
    random_state: np.random.RandomState,
    *,
    rounds: int = ROUNDS,
    oversampling: float = OVERSAMPLING,
) -> np.ndarray:
    """k-means|| centers of the engine's data (``rounds + 2`` passes over X).

    Parameters
    ----------
    blocks : Blocks
        The engine holding X (in memory or Dask).
    sample : ndarray or scipy.sparse CSR matrix of shape (m, n_features)
        The fit's row sample; the first candidate is one of its rows.
    n_clusters : int
        k.
    random_state : numpy.random.RandomState
        Seeds the first candidate, every row's draws and the final k-means++.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    """
    from sklearn.cluster import kmeans_plusplus

    k = int(n_clusters)
    seed = int(random_state.randint(np.iinfo(np.int32).max))
    candidates = _rows(sample, np.array([random_state.randint(sample.shape[0])]))
    psi, _ = blocks.reduce_x(_round_kernel, _combine_round, candidates, 0.0, seed, -1)
    for r in range(rounds):
        if not psi > 0:
            break  # every row coincides with a candidate
        # psi is the cost to the previous candidates: at most the current one, so slightly
        # fewer rows than l are drawn (no second pass per round)
        psi_next, picked = blocks.reduce_x(
            _round_kernel, _combine_round, candidates, oversampling * k / psi, seed, r
        )
        candidates = np.concatenate([candidates, picked])
        psi = psi_next
    candidates = np.unique(candidates, axis=0)
    if candidates.shape[0] < k:  # degenerate data: top up from the sample
        extra = _rows(sample, random_state.choice(sample.shape[0], k, replace=False))
        candidates = np.unique(np.concatenate([candidates, extra]), axis=0)
    weights = blocks.reduce_x(_weight_kernel, _combine_weights, candidates)
    if np.count_nonzero(weights) < k:
        weights = weights + 1e-12  # unweighted candidates may still be chosen
    centers, _ = kmeans_plusplus(
        candidates, k, sample_weight=weights, random_state=int(random_state.randint(2**31 - 1))
    )
    return np.ascontiguousarray(centers, dtype=np.float64)
