"""Sample weights: their validation, and cluster capacities in units of weight.

``sample_weight`` has scikit-learn's meaning: row ``i`` counts ``w_i`` times in the objective
``sum_i w_i ||x_i - mu_{l_i}||^2`` and in the centroids (weighted means).  The cluster sizes
become masses: ``sizes``, ``size_min`` and ``size_max`` are in units of weight, and the default
is an equal share of the total weight for every cluster (with whole-number weights, the floor or
the ceiling of ``sum(w) / k``: the sizes of the same data with every row repeated ``w_i``
times).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.base import is_dask_collection
from numpy.typing import ArrayLike

from .blocks import sampled_rows
from .capacities import Capacities

#: masses that differ from the total weight by less than this share of it are equal to it
_SUM_TOLERANCE = 1e-9


class SampleWeight(NamedTuple):
    """Validated sample weights."""

    values: Any  #: float64 ndarray (NumPy X) or dask array with X's row chunks (Dask X)
    total: float  #: their sum (positive)
    integral: bool  #: every weight a whole number


def check_sample_weight(sample_weight: Any, X: Any) -> SampleWeight | None:
    """``sample_weight`` for the rows of ``X``, or a ``TypeError``/``ValueError`` naming it.

    ``None`` stays ``None`` (every row weighs 1); a number weighs every row the same; an
    array (NumPy, or dask for either kind of X) needs one finite, non-negative weight per row
    and a positive sum.  A dask array is checked in one round (its values stay on the
    workers) and takes X's row chunks.
    """
    if sample_weight is None:
        return None
    n = int(X.shape[0])
    dask_x = is_dask_collection(X)
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        value = float(sample_weight)  # type: ignore[arg-type]
        _check_values(np.array([value]), whole=False)
        w: Any = np.full(n, value)
        if dask_x:
            w = da.full(n, value, chunks=(X.chunks[0],))
        return SampleWeight(w, value * n, value == round(value))
    if is_dask_collection(sample_weight):
        w = sample_weight
        if not np.issubdtype(w.dtype, np.number) or w.dtype == bool:
            raise TypeError(f"sample_weight must hold numbers, got a dask array of dtype {w.dtype}")
        _check_shape(w.shape, n)
        w = w.astype(np.float64)
        lowest, finite, total, whole = dask.compute(
            w.min(), da.isfinite(w).all(), w.sum(), (w == da.round(w)).all()
        )
        if not finite:
            raise ValueError("sample_weight must be finite: it holds NaN or infinite values")
        if lowest < 0:
            raise ValueError(
                f"sample_weight must be non-negative: its smallest weight is {float(lowest)}"
            )
        _check_total(float(total))
        if dask_x:
            w = w.rechunk((X.chunks[0],))
        else:
            w = np.asarray(w.compute(), dtype=np.float64)
        return SampleWeight(w, float(total), bool(whole))
    try:
        arr = np.asarray(sample_weight)
    except (TypeError, ValueError) as exc:  # pragma: no cover - ragged input
        raise TypeError("sample_weight must be a number or an array of numbers") from exc
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"sample_weight must hold numbers, got an array of dtype {arr.dtype}")
    _check_shape(arr.shape, n)
    values = np.ascontiguousarray(arr, dtype=np.float64)
    _check_values(values, whole=True)
    if dask_x:
        return SampleWeight(
            da.from_array(values, chunks=(X.chunks[0],)),
            float(values.sum()),
            bool(np.all(values == np.round(values))),
        )
    return SampleWeight(values, float(values.sum()), bool(np.all(values == np.round(values))))


def _check_shape(shape: tuple, n: int) -> None:
    if len(shape) != 1 or shape[0] != n:
        raise ValueError(
            f"sample_weight must have one weight per row of X, shape ({n},); got shape "
            f"{tuple(shape)}"
        )


def _check_values(values: np.ndarray, *, whole: bool) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(
            f"sample_weight must be finite: row {int(bad[0])} is {values[bad[0]]} "
            f"({bad.size} such rows)"
        )
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise ValueError(
            f"sample_weight must be non-negative: row {int(negative[0])} is "
            f"{values[negative[0]]} ({negative.size} such rows)"
        )
    if whole:
        _check_total(float(values.sum()))


def _check_total(total: float) -> None:
    if not total > 0:
        raise ValueError(
            "sample_weight is zero everywhere: at least one row needs a positive weight"
        )


def _as_masses(value: ArrayLike, name: str, k: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a number or a sequence of {k} numbers, got {value!r}")
    if arr.ndim == 0:
        arr = np.full(k, arr)
    if arr.shape != (k,):
        raise ValueError(
            f"{name} must be a scalar or have one entry per cluster (shape ({k},)), "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and non-negative, got {arr.tolist()}")
    return arr


def mass_capacities(
    weight: SampleWeight,
    n_clusters: int,
    *,
    sizes: ArrayLike | None = None,
    size_min: ArrayLike | None = None,
    size_max: ArrayLike | None = None,
) -> Capacities:
    """The size request in units of weight, as float :class:`Capacities` (see the module
    docstring), or a ``ValueError`` naming the argument."""
    k, total = int(n_clusters), float(weight.total)
    slack = _SUM_TOLERANCE * total
    if k < 1:
        raise ValueError(f"n_clusters must be at least 1, got {k}")
    if sizes is not None:
        if size_min is not None or size_max is not None:
            raise ValueError("give either sizes or size_min/size_max, not both")
        exact = _as_masses(sizes, "sizes", k)
        if abs(exact.sum() - total) > slack:
            raise ValueError(
                f"sizes are in units of weight with sample_weight: they must sum to the total "
                f"weight ({total:.12g}), they sum to {exact.sum():.12g}"
            )
        exact = exact * (total / exact.sum())
        return Capacities(exact, exact.copy())
    if size_min is None and size_max is None:
        if weight.integral and total < 2.0**53:
            q, r = divmod(round(total), k)
            lower = np.full(k, float(q))
            return Capacities(lower, lower + float(r > 0))
        share = np.full(k, total / k)
        return Capacities(share, share.copy())
    lower = _as_masses(0.0 if size_min is None else size_min, "size_min", k)
    upper = _as_masses(total if size_max is None else size_max, "size_max", k)
    if np.any(lower > upper):
        bad = np.flatnonzero(lower > upper).tolist()
        raise ValueError(f"size_min exceeds size_max for clusters {bad}")
    if lower.sum() > total + slack:
        raise ValueError(
            f"size_min is infeasible: the minimum masses sum to {lower.sum():.12g} > the total "
            f"sample weight {total:.12g}; lower them"
        )
    if upper.sum() < total - slack:
        raise ValueError(
            f"size_max is infeasible: the maximum masses sum to {upper.sum():.12g} < the total "
            f"sample weight {total:.12g}; raise them"
        )
    return Capacities(lower, np.minimum(upper, total))


def sampled_weights(weight: SampleWeight, stride: int, seed: int) -> np.ndarray:
    """The weights of the rows of a fit's seeded sample (:func:`~ballot_dask.blocks.sampled_rows`
    with ``stride`` and ``seed``, the rows :meth:`prepare` draws), in row order."""
    w = weight.values
    if not is_dask_collection(w):
        return w[sampled_rows(0, w.shape[0], stride, seed)]
    picked = da.map_blocks(
        _pick_sampled, w, stride, seed, dtype=np.float64, chunks=(np.nan,), meta=np.empty(0)
    )
    return np.asarray(picked.compute(), dtype=np.float64)


def _pick_sampled(wb: np.ndarray, stride: int, seed: int, block_info: Any = None) -> np.ndarray:
    offset = block_info[0]["array-location"][0][0]
    return wb[sampled_rows(offset, wb.shape[0], stride, seed)]
