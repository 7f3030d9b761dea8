"""The paper's thresholds and bounds, as functions (Luo & Mixon, BalLOT, arXiv:2512.05926).

The extracted text of the paper lost its mathematical symbols. The constants below are
re-derived from the proofs that survive (Lemma 20, the proofs of Theorems 8, 11 and 15); each
function says how. Notation: ``delta`` is the separation (the least distance between two ball
centres, the paper's Delta), ``r`` the largest distance from an initial centre to its ball
centre, ``rho`` the cosine similarity between ``mu_1 - mu_2`` and ``gamma_1 - gamma_2``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "THEOREM_15A_SEPARATION",
    "coupon_radius",
    "coupon_sample_size",
    "coupon_variance_bound",
    "lemma20_recovers",
    "theorem8_radius",
    "theorem11_exponential",
]

#: Theorem 15(a): two unit balls whose centres are the cluster centroids, at distance more than
#: this, are recovered in one step from a diameter pair. Each endpoint lies within 1 of its
#: centre, and Theorem 8 (k = 2) needs ``1 < sqrt(delta**2 / 4 - 1)``, i.e. ``delta > 2 sqrt 2``.
THEOREM_15A_SEPARATION = 2.0 * math.sqrt(2.0)


def theorem8_radius(delta: ArrayLike, k: int) -> np.ndarray:
    """Theorem 8: the radius ``r`` such that any start within ``r`` of the ``k`` centres
    (least distance ``delta``) gives one-step recovery of unit-ball clusters.

    - ``k >= 3``: ``delta / 2 - 1``. A misclustered point ``x = gamma_a + e`` (cyclical
      monotonicity of the step's optimal plan) is nearer ``mu_b`` than ``mu_a``; with
      ``mu_a = gamma_a + p``, ``mu_b = gamma_b + q``, ``|p|, |q| <= r`` this forces
      ``1 >= |e| >= (|D + q|^2 - |p|^2) / (2 |D + q - p|) >= (delta - 2 r) / 2``
      (``D = gamma_b - gamma_a``), impossible when ``r < delta / 2 - 1``.
    - ``k = 2``: ``sqrt(delta**2 / 4 - 1)``. By Lemma 20 it suffices that ``rho > 2 / delta``;
      moving each centre by at most ``r`` turns ``gamma_1 - gamma_2`` by an angle whose sine
      is at most ``2 r / delta``, so ``rho >= sqrt(1 - 4 r**2 / delta**2) > 2 / delta``.

    Zero where ``delta <= 2`` (touching or overlapping balls: no guarantee).
    """
    delta = np.asarray(delta, dtype=np.float64)
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    with np.errstate(invalid="ignore"):
        radius = np.sqrt(delta**2 / 4.0 - 1.0) if k == 2 else delta / 2.0 - 1.0
    return np.where(delta > 2.0, radius, 0.0)


def lemma20_recovers(rho: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Lemma 20 and Theorem 11(a) (k = 2): one-step recovery whenever ``rho * delta > 2``.

    The balanced step sorts the points by their projection on ``u = (mu_1 - mu_2) / |.|``;
    the two clusters' projections are ``rho * delta`` apart and each spreads at most 1 either
    side, so they cannot interleave when ``rho * delta > 2``.
    """
    return np.asarray(rho, dtype=np.float64) * np.asarray(delta, dtype=np.float64) > 2.0


def theorem11_exponential(d: ArrayLike, rho: float, delta: float) -> np.ndarray:
    """Theorem 11(b)'s exponential term: ``exp(-d rho**2 delta**2 / 16)``.

    In the proof, every pair (point of cluster 1 sent to 2, point of cluster 2 sent to 1)
    satisfies ``<r_j - r_i, u> >= rho * delta``, an event of probability
    ``p <= P(<theta, u> >= rho delta / 2) <= exp(-d rho**2 delta**2 / 8)`` (``|r| <= 1`` and
    concentration on the sphere). The number of such pairs is the square of the number of
    misclustered points, so the misclustering rate is at most about ``sqrt(p)``: hence the
    denominator 16 ("because of the square root outside the exponential").
    """
    return np.exp(-np.asarray(d, dtype=np.float64) * rho**2 * delta**2 / 16.0)


def coupon_sample_size(k: int, failure: float) -> int:
    """Theorem 15(b): ``m = ceil(k ln(2k / failure))`` proto-means, so that some planted
    cluster goes unsampled with probability at most ``k (1 - 1/k)^m <= failure / 2``."""
    if not 0.0 < failure < 1.0:
        raise ValueError(f"failure must lie in (0, 1), got {failure}")
    return math.ceil(k * math.log(2.0 * k / failure))


def coupon_radius(delta: float, k: int) -> float:
    """Theorem 15(b)'s radius ``eps``: the proto-means within ``eps`` of their centres form
    ``k`` cliques under the adjacency "distance at most ``2 eps``" when ``2 eps < delta - 2 eps``,
    and are a Theorem 8 start when ``eps`` is below :func:`theorem8_radius`:
    ``eps = min(theorem8_radius(delta, k), delta / 4)``."""
    return min(float(theorem8_radius(delta, k)), delta / 4.0)


def coupon_variance_bound(delta: float, k: int, failure: float) -> float:
    """Theorem 15(b)'s bound on ``E |r|^2``: ``failure * eps**2 / (2 m)``, so that by Markov's
    inequality one of the ``m`` proto-means lies farther than ``eps`` from its centre with
    probability at most ``failure / 2``."""
    eps = coupon_radius(delta, k)
    return failure * eps**2 / (2.0 * coupon_sample_size(k, failure))
