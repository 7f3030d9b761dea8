"""Input checks shared by the public entry points."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from .sparse import as_csr, is_sparse

METHODS = ("exact", "sinkhorn", "emd")
ROUNDINGS = ("argmax", "exact")
SINKHORN_ALGORITHMS = ("newton", "sinkhorn")


def check_data(X: Any, name: str = "X") -> Any:
    """A 2-D, finite, C-contiguous float32/float64 array (other dtypes become float64), or a
    ``scipy.sparse`` matrix as CSR without duplicate entries (other formats are converted)."""
    check_sparse_kind(X, name)
    try:
        arr = check_array(
            X,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            order="C",
            ensure_all_finite=True,
            input_name=name,
        )
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    return as_csr(arr) if sp.issparse(arr) else arr


def check_sparse_kind(X: Any, name: str = "X") -> None:
    """A ``TypeError`` for sparse data that are not ``scipy.sparse`` (e.g. the ``sparse``
    package's arrays), which scikit-learn's checks would try to densify."""
    if not sp.issparse(X) and hasattr(X, "todense") and not isinstance(X, np.ndarray):
        raise TypeError(
            f"{name} is a {type(X).__module__}.{type(X).__name__}, a sparse type that is not "
            f"supported: pass a scipy.sparse matrix ({name}.tocsr()) or a NumPy array"
        )


def check_centers(centers: Any, n_features: int, name: str = "centers") -> np.ndarray:
    """Centers as a finite float64 array of shape (k, n_features) (sparse ones densified)."""
    if sp.issparse(centers):
        centers = centers.toarray()
    try:
        arr = np.array(centers, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array of shape (k, {n_features})") from exc
    if arr.ndim != 2 or arr.shape[1] != n_features or arr.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (n_clusters, {n_features}) to match X, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return np.ascontiguousarray(arr)


def check_choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False):
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a {'whole' if integer else 'real'} number, got {value!r}")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def validated_input(estimator: Any, X: Any, reset: bool) -> Any:
    """X checked as scikit-learn does (``reset``: record its number of features): a finite
    float32/float64 array, or a scipy.sparse matrix as CSR without duplicate entries."""
    check_sparse_kind(X)
    Xv = validate_data(
        estimator, X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C", reset=reset
    )
    return as_csr(Xv) if is_sparse(Xv) else Xv


def dense_centers(centers: Any) -> np.ndarray:
    """Explicit centers as an array (sparse ones densified: they are k x d)."""
    return np.asarray(centers.toarray() if is_sparse(centers) else centers)
