"""Labels of new data from a fitted model: the rules of ``BalancedKMeans.predict`` and the
temperature of its soft memberships (``predict_proba``).

Three rules label a batch of new points with the fitted centers ``mu`` and potentials ``v``:

- ``power``: the fitted power diagram, ``argmin_j ||x - mu_j||^2 - v_j``, point by point.  It
  keeps the fitted proportions on data from the training distribution, up to sampling error.
- ``nearest``: the nearest center, point by point; the sizes are not controlled.
- ``balanced``: the batch's own balanced transport problem, solved exactly by the assignment
  step of the fit (:func:`~ballot_dask.balanced_assign`, ``method="exact"``).  The sizes are
  exact: equal shares of the batch, or the fitted proportions scaled to it
  (:func:`batch_capacities`).  A point's label then depends on the rest of the batch.

The training size constraints never apply to a batch: ``power`` and ``nearest`` have none, and
``balanced`` takes sizes of the batch's own, feasible for any batch of at least one point.
"""

from __future__ import annotations

from typing import Any, Literal

import dask.array as da
import numpy as np
from dask.base import is_dask_collection
from numpy.typing import ArrayLike

from ._validation import check_choice, check_positive
from .assign import AssignmentResult, balanced_assign
from .capacities import Capacities, apportion
from .costs import cost_block
from .dask_maps import map_chosen_costs, map_costs, map_labels, map_plan_rows
from .kernels import reduced_cost_labels
from .plan_kernels import plan_rows
from .weights import check_sample_weight

#: the rules of ``predict(method=...)`` and ``score(method=...)``
PREDICT_RULES = ("power", "nearest", "balanced")
#: the named size requests of ``predict(method="balanced", proportions=...)``
PROPORTIONS = ("equal", "fitted")

PredictRule = Literal["power", "nearest", "balanced"]
Proportions = Literal["equal", "fitted"] | ArrayLike


def batch_capacities(
    n_samples: int,
    n_clusters: int,
    proportions: Proportions = "equal",
    fitted_sizes: np.ndarray | None = None,
) -> Capacities:
    """The sizes a batch of ``n_samples`` points is given by the ``balanced`` rule.

    Parameters
    ----------
    n_samples : int
        Points in the batch, at least 1.
    n_clusters : int
        Number of clusters ``k``.
    proportions : {"equal", "fitted"} or array-like of shape (n_clusters,), default="equal"
        ``"equal"``: ``floor(n / k)`` or ``ceil(n / k)`` points each, the transport problem
        choosing which clusters get the extra points (as the fit's default); with fewer points
        than clusters, every cluster takes 0 or 1 point.  ``"fitted"``: ``fitted_sizes``
        scaled to the batch.  An array: these weights (non-negative, positive sum) scaled to
        the batch.  Scaled weights are rounded by largest remainders
        (:func:`~ballot_dask.capacities.apportion`), so the sizes sum to ``n_samples``.
    fitted_sizes : ndarray of shape (n_clusters,), default=None
        The fit's ``sizes_``, for ``proportions="fitted"``.

    Returns
    -------
    Capacities
        Bounds ``lower <= size <= upper`` (equal for scaled weights), feasible for the batch.

    Examples
    --------
    >>> from ballot_dask.prediction import batch_capacities
    >>> cap = batch_capacities(10, 4)
    >>> cap.lower.tolist(), cap.upper.tolist()
    ([2, 2, 2, 2], [3, 3, 3, 3])
    >>> batch_capacities(10, 3, "fitted", fitted_sizes=[500, 300, 200]).lower.tolist()
    [5, 3, 2]
    """
    n, k = int(n_samples), int(n_clusters)
    if n < 1:
        raise ValueError(f"n_samples must be at least 1, got {n}")
    weights = _proportion_weights(k, proportions, fitted_sizes)
    if weights is None:
        q, r = divmod(n, k)
        return Capacities(np.full(k, q, np.int64), np.full(k, q + (r > 0), np.int64))
    sizes = apportion(weights, n)
    return Capacities(sizes, sizes.copy())


def batch_shares(
    n_clusters: int, proportions: Proportions, fitted_sizes: np.ndarray | None = None
) -> np.ndarray | None:
    """The shares of a weighted batch's total weight each cluster takes under
    ``proportions`` (summing to 1), or ``None`` for ``"equal"`` (the default masses)."""
    weights = _proportion_weights(int(n_clusters), proportions, fitted_sizes)
    return None if weights is None else weights / weights.sum()


def _proportion_weights(
    k: int, proportions: Proportions, fitted_sizes: np.ndarray | None
) -> np.ndarray | None:
    """The checked weights ``proportions`` asks for (``None`` for ``"equal"``)."""
    if isinstance(proportions, str):
        check_choice(proportions, "proportions", PROPORTIONS)
        if proportions == "equal":
            return None
        if fitted_sizes is None:
            raise ValueError(
                "proportions='fitted' needs the fitted sizes_ (a model fitted by fit())"
            )
        return _weights(fitted_sizes, k, "sizes_")
    return _weights(proportions, k, "proportions")


def _weights(value: Any, k: int, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be 'equal', 'fitted' or {k} non-negative weights, got {value!r}"
        ) from exc
    if arr.shape != (k,):
        raise ValueError(
            f"{name} must be 'equal', 'fitted' or one weight per cluster (shape ({k},)), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or arr.sum() <= 0:
        raise ValueError(
            f"{name} must be finite and non-negative with a positive sum, got {arr.tolist()}"
        )
    return arr  # whole numbers below 2**53 stay exact, and apportion() is exact from there


def check_proportions_unused(proportions: Any, method: str) -> None:
    """``proportions`` is for the ``balanced`` rule only: refuse a request another rule would
    ignore."""
    if not (isinstance(proportions, str) and proportions == "equal"):
        raise ValueError(
            f"proportions applies to method='balanced' only, not method={method!r} (which "
            "labels each point on its own; 'power' keeps the fitted proportions)"
        )


def fit_temperature(method: str, reg: float, reg_: float, training_cost: float) -> float:
    """The default temperature of ``predict_proba`` for a fit (``temperature_``).

    A Sinkhorn fit: its entropic regularisation ``reg_``.  An exact fit: the regularisation
    E-BalLOT would use at the fitted centers, ``reg`` times the mean squared distance between
    the training points and the centers (``training_cost``).  A function of the fit alone, so
    a point's memberships do not depend on the batch it comes in.
    """
    if method == "sinkhorn" and reg_ > 0:
        return float(reg_)
    return float(reg) * max(float(training_cost), 1e-300)


def check_temperature(temperature: Any) -> float:
    """A finite temperature ``> 0``, or ``ValueError``/``TypeError`` naming it."""
    return float(check_positive(temperature, "temperature"))


# ----------------------------------------------------------------- the rules, on either engine
# X is checked against the fit by the estimator; a Dask X gives lazy Dask results with its
# row chunks, a NumPy X NumPy results.


def costs_of(X: Any, centers: np.ndarray) -> Any:
    """Float64 costs ``||x_i - mu_j||^2`` of X against the centers."""
    if is_dask_collection(X):
        return map_costs(X, centers)
    return cost_block(X, centers)


def rule_labels(C: Any, v: np.ndarray) -> Any:
    """``argmin_j (C_ij - v_j)``, row by row (``power`` with the fitted potentials,
    ``nearest`` with zeros)."""
    if is_dask_collection(C):
        return map_labels(C, v)
    return reduced_cost_labels(C, v)[0]


def rule_objective(C: Any, v: np.ndarray, weights: np.ndarray | None) -> float:
    """``sum_i w_i C_{i, l_i}`` for the labels of :func:`rule_labels` (``w_i = 1`` without
    weights)."""
    if is_dask_collection(C):
        chosen = map_chosen_costs(C, v)
        if weights is not None:
            chosen = chosen * da.asarray(weights).rechunk((chosen.chunks[0],))
        return float(chosen.sum().compute())
    labels = reduced_cost_labels(C, v)[0]
    costs = np.take_along_axis(C, labels[:, None], axis=1)[:, 0]
    if weights is not None:
        return float(np.dot(costs, weights))
    return float(costs.sum(dtype=np.float64))


def membership_rows(C: Any, v: np.ndarray, eps: float) -> Any:
    """Rows of the entropic plan at the potentials ``v`` and temperature ``eps``."""
    if is_dask_collection(C):
        return map_plan_rows(C, v, eps)
    return plan_rows(C, v, eps)


def balanced_batch(
    X: Any,
    centers: np.ndarray,
    proportions: Proportions,
    fitted_sizes: np.ndarray | None,
    max_band: int | None,
    sample_weight: Any = None,
) -> AssignmentResult:
    """The ``balanced`` rule: the batch's balanced transport problem, solved exactly, with
    sizes from :func:`batch_capacities`; with ``sample_weight``, its masses in the
    proportions asked (:func:`batch_shares`)."""
    k = centers.shape[0]
    if sample_weight is not None:
        weight = check_sample_weight(sample_weight, X)
        shares = batch_shares(k, proportions, fitted_sizes)
        sizes = None if shares is None or weight is None else shares * weight.total
        return balanced_assign(
            X, centers, sizes=sizes, method="exact", max_band=max_band, sample_weight=sample_weight
        )
    capacities = batch_capacities(X.shape[0], k, proportions, fitted_sizes)
    return balanced_assign(
        X,
        centers,
        size_min=capacities.lower,
        size_max=capacities.upper,
        method="exact",
        max_band=max_band,
    )
