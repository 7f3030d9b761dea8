"""Maps of a fitted model over a row-chunked Dask array: costs, labels, memberships (lazy).

The per-chunk kernels of prediction, scoring and ``transform`` on Dask input; the engine that
fits (:mod:`.dask_blocks`) keeps its own passes.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .costs import cost_block
from .dask_tasks import kernel_threads, require_finite
from .plan_kernels import plan_rows


def _costs_block(xb: Any, centers: np.ndarray, block_info: Any = None) -> np.ndarray:
    offset = block_info[0]["array-location"][0][0] if block_info else 0
    with kernel_threads():
        require_finite(xb, offset)
        return cost_block(xb, centers)


def map_costs(X: da.Array, centers: np.ndarray) -> da.Array:
    """The cost blocks ``||x_i - mu_j||^2`` of a row-chunked dask array (lazy)."""
    k = centers.shape[0]
    mu = np.ascontiguousarray(centers, dtype=X.dtype)
    return da.map_blocks(
        _costs_block,
        X,
        mu,
        chunks=(X.chunks[0], (k,)),
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
    )


def _power_labels(C: np.ndarray, v: np.ndarray) -> np.ndarray:
    from .kernels import reduced_cost_labels

    with kernel_threads():
        return reduced_cost_labels(C, v)[0]


def map_labels(costs: da.Array, v: np.ndarray) -> da.Array:
    """``argmin_j (C_ij - v_j)`` per chunk (lazy), with the rows' chunks."""
    return da.map_blocks(_power_labels, costs, v, drop_axis=1, dtype=np.int64)


def _chosen_costs(C: np.ndarray, v: np.ndarray) -> np.ndarray:
    labels = _power_labels(C, v)
    return np.take_along_axis(C, labels[:, None], axis=1)[:, 0].astype(np.float64)


def map_chosen_costs(costs: da.Array, v: np.ndarray) -> da.Array:
    """Each row's cost ``C_i,l_i`` under the labels ``argmin_j (C_ij - v_j)`` (lazy)."""
    return da.map_blocks(_chosen_costs, costs, v, drop_axis=1, dtype=np.float64)


def map_plan_rows(costs: da.Array, v: np.ndarray, eps: float) -> da.Array:
    """:func:`~ballot_dask.plan_kernels.plan_rows` per chunk (lazy), with the rows' chunks."""
    return da.map_blocks(plan_rows, costs, v, eps, dtype=np.float64)


def label_array(parts: list[Any], lengths: list[int]) -> da.Array:
    """The int64 labels of the row chunks ``parts`` (delayed, ``lengths`` rows each) as one
    dask array."""
    blocks = [
        da.from_delayed(part, shape=(length,), dtype=np.int64, meta=np.zeros(0, dtype=np.int64))
        for part, length in zip(parts, lengths, strict=True)
    ]
    return da.concatenate(blocks) if len(blocks) > 1 else blocks[0]
