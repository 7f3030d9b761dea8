"""Dask arrays as the engine takes them: real numbers, float32 or float64, chunked by rows.

:func:`as_dask_data` checks and converts a user's dask array (the estimator's, the
functions' and :func:`~ballot_dask.certify`'s input); :func:`row_chunked` makes its chunks
whole rows with known sizes (:class:`~ballot_dask.dask_blocks.DaskBlocks` requires it).  Both
are lazy: no chunk is read.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np

from .sparse import is_sparse

__all__ = ["as_dask_data", "row_chunked"]


def as_dask_data(X: da.Array, name: str = "X") -> da.Array:
    """A row-chunked float32/float64 dask array (other numeric dtypes become float64).

    Chunks may be NumPy arrays or ``scipy.sparse`` matrices (other formats than CSR are
    converted chunk by chunk); sparse chunks must hold whole rows (one chunk over the
    columns)."""
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got a dask array of dtype {X.dtype}")
    meta: Any = getattr(X, "_meta", None)
    if not is_sparse(meta) and hasattr(meta, "todense"):
        raise TypeError(
            f"{name} has chunks of type {type(meta).__module__}.{type(meta).__name__}, which "
            "are not supported; convert them to scipy.sparse CSR matrices "
            f"({name}.map_blocks(lambda b: b.tocsr(), dtype={name}.dtype)) or to NumPy arrays"
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if is_sparse(meta) and meta.format != "csr":
        X = da.map_blocks(_to_csr, X, dtype=X.dtype, meta=_to_csr(X._meta))
    return row_chunked(X, name)


def _to_csr(xb: Any) -> Any:
    return xb.tocsr()


def row_chunked(X: da.Array, name: str = "X") -> da.Array:
    """``X`` chunked by rows only (one chunk over the columns), with known chunk sizes."""
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got a {X.ndim}-D dask array; "
            "reshape it, e.g. X.reshape(-1, 1) for a single feature"
        )
    if any(math.isnan(c) for c in X.chunks[0]) or any(math.isnan(c) for c in X.chunks[1]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    if len(X.chunks[1]) > 1:
        if is_sparse(X._meta):
            raise ValueError(
                f"{name} has scipy.sparse chunks split along its columns "
                f"({len(X.chunks[1])} column chunks); each chunk must hold whole rows: make "
                f"it with one chunk over the columns (chunks=(rows, {X.shape[1]})), or "
                f"rechunk and persist it first ({name}.rechunk({{1: -1}}).persist())"
            )
        X = X.rechunk({1: -1})
    return X
