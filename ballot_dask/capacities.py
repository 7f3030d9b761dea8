"""Cluster capacities: how many points each cluster must receive.

Every request becomes an interval ``lower[j] <= size_j <= upper[j]`` per cluster:

- equal sizes (the default): ``n / k`` each; when ``k`` does not divide ``n``, every size is
  ``floor(n / k)`` or ``ceil(n / k)`` and the transport LP chooses which clusters get the extra
  point (it is not fixed in advance);
- explicit ``sizes``: ``lower = upper = sizes``;
- ``size_min`` / ``size_max`` (scalars or per-cluster): the interval itself.

In the dual, an interval column adds the concave term ``min(lower_j v_j, upper_j v_j)``: an
equality column is the special case ``lower_j == upper_j``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Capacities:
    """Per-cluster size bounds, ``lower <= size <= upper`` (int64 arrays of length k)."""

    lower: np.ndarray
    upper: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.lower.shape[0])

    @property
    def is_equal_shares(self) -> bool:
        """True for the default request: every size ``floor(n / k)`` or ``ceil(n / k)`` (the
        entropic problem then takes ``n / k`` for every column, fractional)."""
        lo, hi = self.lower, self.upper
        return bool(np.all(lo == lo[0]) and np.all(hi == hi[0]) and hi[0] - lo[0] <= 1)

    @property
    def is_equality(self) -> bool:
        """True when every size is fixed (``lower == upper``)."""
        return bool(np.array_equal(self.lower, self.upper))

    def dual_term(self, v: np.ndarray) -> float:
        """``sum_j min(lower_j v_j, upper_j v_j)``: the capacity part of the dual objective."""
        return float(np.minimum(self.lower * v, self.upper * v).sum())

    def scaled(self, ratio: float) -> Capacities:
        """The bounds of the same request on a share of the points (a row sample).

        Parameters
        ----------
        ratio : float
            Rows of the sample over rows of the data, in ``(0, 1]``.

        Returns
        -------
        Capacities
            ``floor(lower * ratio) <= size <= ceil(upper * ratio)``: feasible for a sample of
            ``ratio * n`` points whenever these bounds are for ``n``.
        """
        lower = np.floor(self.lower * ratio + 1e-9).astype(np.int64)
        upper = np.ceil(self.upper * ratio - 1e-9).astype(np.int64)
        return Capacities(lower, np.maximum(upper, lower))

    def target(self, counts: np.ndarray) -> np.ndarray:
        """The sizes (float) inside the bounds closest to ``counts``, summing to ``n``.

        The Euclidean projection of ``counts`` on ``{lower <= c <= upper, sum c = n}``; used as
        the column target of the smooth solvers, which need one number per column.
        """
        if self.is_equality:
            return self.lower.astype(np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        n = float(counts.sum())
        lo, hi = self.lower.astype(np.float64), self.upper.astype(np.float64)
        a, b = float((counts - hi).min()), float((counts - lo).max())
        for _ in range(200):  # bisection on the shift; the sum is monotone in it
            mid = 0.5 * (a + b)
            if np.clip(counts - mid, lo, hi).sum() > n:
                a = mid
            else:
                b = mid
        c = np.clip(counts - 0.5 * (a + b), lo, hi)
        return c * (n / c.sum()) if c.sum() > 0 else c


def _as_sizes(value: ArrayLike, name: str, k: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be an integer or a sequence of {k} integers, got {value!r}")
    if arr.ndim == 0:
        arr = np.full(k, arr)
    if arr.shape != (k,):
        raise ValueError(
            f"{name} must be a scalar or have one entry per cluster (shape ({k},)), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold whole numbers, got {arr.tolist()}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got {arr.tolist()}")
    return arr.astype(np.int64)


def resolve_capacities(
    n_samples: int,
    n_clusters: int,
    *,
    sizes: ArrayLike | None = None,
    size_min: ArrayLike | None = None,
    size_max: ArrayLike | None = None,
) -> Capacities:
    """Turn a size request into :class:`Capacities`, or raise ``ValueError`` naming the argument.

    Parameters
    ----------
    n_samples : int
        Number of points ``n``.
    n_clusters : int
        Number of clusters ``k``, at least 1, and at most ``n`` for equal sizes (explicit
        ``sizes`` or bounds may leave clusters empty, so may have more clusters than points).
    sizes : array-like of shape (n_clusters,), default=None
        Exact cluster sizes, non-negative integers summing to ``n_samples``.
    size_min, size_max : int or array-like of shape (n_clusters,), default=None
        Bounds on the cluster sizes.  Cannot be combined with ``sizes``.

    Returns
    -------
    Capacities
    """
    n, k = int(n_samples), int(n_clusters)
    if k < 1:
        raise ValueError(f"n_clusters must be at least 1, got {k}")
    if sizes is not None:
        if size_min is not None or size_max is not None:
            raise ValueError("give either sizes or size_min/size_max, not both")
        exact = _as_sizes(sizes, "sizes", k)
        if exact.sum() != n:
            raise ValueError(
                f"sizes must sum to the number of samples ({n}), they sum to {int(exact.sum())}"
            )
        return Capacities(exact, exact.copy())
    if size_min is None and size_max is None:
        if k > n:
            raise ValueError(
                f"n_clusters={k} is larger than the number of samples n_samples={n}: equal "
                "sizes would leave clusters empty; give sizes or size_min/size_max to allow it"
            )
        q, r = divmod(n, k)
        return Capacities(np.full(k, q, np.int64), np.full(k, q + (r > 0), np.int64))
    lower = _as_sizes(0 if size_min is None else size_min, "size_min", k)
    upper = _as_sizes(n if size_max is None else size_max, "size_max", k)
    if np.any(lower > upper):
        bad = np.flatnonzero(lower > upper).tolist()
        raise ValueError(f"size_min exceeds size_max for clusters {bad}")
    if lower.sum() > n:
        raise ValueError(
            f"size_min is infeasible: the minimum sizes sum to {int(lower.sum())} "
            f"> n_samples={n}; lower them"
        )
    if upper.sum() < n:
        raise ValueError(
            f"size_max is infeasible: the maximum sizes sum to {int(upper.sum())} "
            f"< n_samples={n}; raise them"
        )
    return Capacities(lower, np.minimum(upper, n))


def apportion(weights: ArrayLike, n_samples: int) -> np.ndarray:
    """Whole sizes proportional to ``weights`` that sum to ``n_samples`` (largest remainders).

    Each cluster first gets the floor of its quota ``n_samples * w_j / sum(w)``; the points
    left over go one each to the clusters with the largest fractional parts (Hamilton's
    method), the lowest index first among equal parts.  The quotas are computed in exact
    rational arithmetic, so integer weights (such as fitted sizes) are scaled without
    rounding error.

    Parameters
    ----------
    weights : array-like of shape (n_clusters,)
        Non-negative, finite numbers with a positive sum (counts, or proportions).
    n_samples : int
        Total of the sizes, ``>= 0``.

    Returns
    -------
    sizes : ndarray of shape (n_clusters,), int64
        ``floor(quota_j)`` or ``ceil(quota_j)`` each, summing to ``n_samples``.

    Examples
    --------
    >>> from ballot_dask.capacities import apportion
    >>> apportion([500, 300, 200], 7).tolist()
    [4, 2, 1]
    """
    parts = [Fraction(w) for w in np.asarray(weights).tolist()]
    total = sum(parts, Fraction(0))
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    quotas = [w * n_samples / total for w in parts]
    sizes = np.array([q.numerator // q.denominator for q in quotas], dtype=np.int64)
    left = int(n_samples - sizes.sum())
    by_remainder = sorted(range(len(quotas)), key=lambda j: (int(sizes[j]) - quotas[j], j))
    sizes[by_remainder[:left]] += 1
    return sizes
