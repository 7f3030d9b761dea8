"""The clustering methods the experiments compare, each from given initial centres.

- **BalLOT**: ``BalancedKMeans(method="exact")``, run until the labels stop changing.
- **E-BalLOT** as in the paper: Sinkhorn until the plan's marginal error is below
  ``sinkhorn_tol``, the rounding of Altschuler, Weed & Rigollet (2017, Alg. 2), centroids from
  the rounded plan, labels by row argmax (``method="sinkhorn", rounding="argmax"``).
- **Lloyd**: scikit-learn's ``KMeans(algorithm="lloyd")``, unbalanced.
- **Hungarian**: Lloyd whose assignment step is a perfect matching between the points and
  ``n / k`` copies of each centre, by scipy's ``linear_sum_assignment`` on the expanded
  ``n x n`` cost matrix (the paper's reference for balanced Lloyd).
- **POT emd**: Lloyd whose assignment step is POT's network simplex ``ot.emd`` on the
  ``n x k`` transport problem.

and what the experiments measure on their output: :func:`same_partition`,
:func:`misclustering_rate`, :func:`wasserstein2`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ot
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from ballot_dask import BalancedKMeans, balanced_assign

__all__ = [
    "E_BALLOT",
    "METHODS",
    "Fit",
    "ballot",
    "e_ballot",
    "emd_lloyd",
    "hungarian_lloyd",
    "lloyd",
    "misclustering_rate",
    "one_step",
    "same_partition",
    "squared_distances",
    "wasserstein2",
]

#: E-BalLOT's settings in every experiment: entropic regularisation relative to the mean
#: squared distance, Sinkhorn until the column-marginal error (1-norm, per point) is below
#: ``sinkhorn_tol``, and a cap high enough that the cap is not what stops it.
E_BALLOT = {"reg": 1e-2, "sinkhorn_tol": 1e-3, "sinkhorn_max_iter": 100_000}

#: Lloyd iterations at most, for every method.
MAX_ITER = 300


@dataclass
class Fit:
    """A method's output: labels, centres, Lloyd iterations, and for E-BalLOT the number of
    assignment steps whose Sinkhorn loop hit its cap."""

    labels: np.ndarray
    centers: np.ndarray
    n_iter: int
    short_steps: int = 0


def squared_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``||x_i - mu_j||^2`` by direct differences (no cancellation), shape (n, k)."""
    return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)


def _means(X: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    new = centers.copy()
    for j in range(centers.shape[0]):
        members = labels == j
        if members.any():
            new[j] = X[members].mean(axis=0)
    return new


def ballot(X: np.ndarray, init: np.ndarray, *, tol: float = 0.0) -> Fit:
    """BalLOT from ``init``; ``tol=0``: until the labels stop changing (Theorem 17)."""
    km = BalancedKMeans(init.shape[0], method="exact", init=init, tol=tol, max_iter=MAX_ITER)
    km.fit(X)
    return Fit(np.asarray(km.labels_), km.cluster_centers_, km.n_iter_)


def e_ballot(X: np.ndarray, init: np.ndarray, *, tol: float = 1e-4) -> Fit:
    """E-BalLOT from ``init`` with :data:`E_BALLOT`'s settings (row-argmax labels)."""
    km = BalancedKMeans(
        init.shape[0],
        method="sinkhorn",
        rounding="argmax",
        init=init,
        tol=tol,
        max_iter=MAX_ITER,
        **E_BALLOT,  # type: ignore[arg-type]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        km.fit(X)
    short = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return Fit(np.asarray(km.labels_), km.cluster_centers_, km.n_iter_, short)


def lloyd(X: np.ndarray, init: np.ndarray, *, tol: float = 0.0) -> Fit:
    """scikit-learn's Lloyd from ``init`` (unbalanced); ``tol=0``: until the labels stop
    changing."""
    km = KMeans(init.shape[0], init=init, n_init=1, algorithm="lloyd", tol=tol, max_iter=MAX_ITER)
    km.fit(X)
    return Fit(km.labels_, km.cluster_centers_, int(km.n_iter_))


def _balanced_lloyd(
    X: np.ndarray, init: np.ndarray, assign: Callable[[np.ndarray], np.ndarray]
) -> Fit:
    """Lloyd with a balanced assignment step ``assign(costs) -> labels``, until the labels
    stop changing."""
    centers = np.array(init, dtype=np.float64)
    labels: np.ndarray | None = None
    n_iter = 0
    while n_iter < MAX_ITER:
        n_iter += 1
        new = assign(squared_distances(X, centers))
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        centers = _means(X, labels, centers)
    assert labels is not None
    return Fit(labels, centers, n_iter)


def _hungarian_step(C: np.ndarray) -> np.ndarray:
    n, k = C.shape
    copies = n // k
    if copies * k != n:
        raise ValueError(f"the Hungarian method needs k={k} to divide n={n}")
    # column j * copies + s is copy s of centre j
    rows, cols = linear_sum_assignment(np.repeat(C, copies, axis=1))
    labels = np.empty(n, dtype=np.int64)
    labels[rows] = cols // copies
    return labels


def hungarian_lloyd(X: np.ndarray, init: np.ndarray) -> Fit:
    """Balanced Lloyd by the Hungarian method on the expanded ``n x n`` matrix."""
    return _balanced_lloyd(X, init, _hungarian_step)


def _emd_step(C: np.ndarray) -> np.ndarray:
    n, k = C.shape
    plan = ot.emd(np.ones(n), np.full(k, n / k), np.ascontiguousarray(C), numItermax=10**8)
    return np.argmax(plan, axis=1)


def emd_lloyd(X: np.ndarray, init: np.ndarray) -> Fit:
    """Balanced Lloyd by POT's network simplex on the ``n x k`` transport problem."""
    return _balanced_lloyd(X, init, _emd_step)


def one_step(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The labels of BalLOT's first assignment step from ``centers`` (an exact LP optimum)."""
    return np.asarray(balanced_assign(X, centers).labels)


#: name -> method, in the order of the paper's legends
METHODS: dict[str, Callable[[np.ndarray, np.ndarray], Fit]] = {
    "BalLOT": ballot,
    "E-BalLOT": e_ballot,
    "Lloyd": lloyd,
    "Hungarian": hungarian_lloyd,
    "POT emd": emd_lloyd,
}


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labellings define the same partition (equal up to renaming the labels)."""
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == np.unique(a).size == np.unique(b).size


def misclustering_rate(labels: np.ndarray, planted: np.ndarray) -> float:
    """Share of points outside their planted cluster, under the best matching of labels to
    clusters."""
    k = int(max(labels.max(), planted.max())) + 1
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, planted), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return 1.0 - confusion[rows, cols].sum() / labels.size


def wasserstein2(centers: np.ndarray, means: np.ndarray) -> float:
    """2-Wasserstein distance between the uniform measures on two sets of ``k`` points."""
    C = squared_distances(centers, means)
    rows, cols = linear_sum_assignment(C)
    return float(np.sqrt(C[rows, cols].mean()))
