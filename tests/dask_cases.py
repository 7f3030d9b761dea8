"""Data, parameters and NumPy references shared by the Dask engine's tests."""

from __future__ import annotations

import functools
import re

import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from ballot_dask import BalancedKMeans

N, D, K = 6000, 3, 5

# Chunkings of the (N, D) data: rows in one chunk, even, odd (997 rows: a short last chunk),
# and split over the columns too (the engine must rechunk it by rows).
CHUNKINGS = {
    "one-chunk": (N, D),
    "even": (1500, D),
    "odd": (997, D),
    "column-chunked": (1000, 2),
}

# Sinkhorn settings with few passes (a distributed round is tens of milliseconds); Sinkhorn
# converges in every step with them (no ConvergenceWarning).
SINKHORN = {"reg": 0.1, "sinkhorn_tol": 1e-2, "max_iter": 4}


# --------------------------------------------------------------------------------------------
# data and NumPy references
# --------------------------------------------------------------------------------------------


@functools.cache
def _data(dtype: str = "float64", n: int = N) -> np.ndarray:
    X, _ = make_blobs(n, n_features=D, centers=K, cluster_std=2.0, random_state=0)
    X = X.astype(dtype)
    X.setflags(write=False)
    return X


@functools.cache
def _init() -> np.ndarray:
    """Fixed initial centers: k data points, moved a little (no cost ties)."""
    X = _data()
    rng = np.random.default_rng(1)
    init = X[rng.choice(X.shape[0], K, replace=False)] + 0.1 * rng.standard_normal((K, D))
    init.setflags(write=False)
    return init


def _exact_params() -> dict:
    return {"n_clusters": K, "init": _init(), "tol": 0, "max_iter": 30}


def _sinkhorn_params(rounding: str) -> dict:
    return {**_exact_params(), "method": "sinkhorn", "rounding": rounding, **SINKHORN}


@functools.cache
def _numpy_fit(dtype: str = "float64", method: str = "exact", rounding: str = "argmax"):
    params = _exact_params() if method == "exact" else _sinkhorn_params(rounding)
    return BalancedKMeans(**params).fit(_data(dtype))


def _dask(X: np.ndarray, chunks) -> da.Array:
    return da.from_array(X, chunks=chunks)


def _assert_same_fit(km: BalancedKMeans, ref: BalancedKMeans, labels: np.ndarray) -> None:
    """A Dask fit equals the NumPy fit from the same initial centers."""
    np.testing.assert_array_equal(labels, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-8, atol=1e-8)
    assert km.cluster_centers_.dtype == ref.cluster_centers_.dtype
    np.testing.assert_array_equal(km.sizes_, ref.sizes_)
    np.testing.assert_array_equal(np.bincount(labels, minlength=K), km.sizes_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    assert km.n_iter_ == ref.n_iter_
    assert km.converged_ == ref.converged_
    np.testing.assert_allclose(km.objective_history_, ref.objective_history_, rtol=1e-9)


#: worker log lines that say memory ran short or a worker was lost
_TROUBLE = re.compile(r"Pausing worker|Restarting|exceeded|killed|Worker process", re.I)


def worker_troubles(client) -> list[str]:
    """The workers' and nannies' log lines that report memory trouble or a lost worker."""
    logs = [
        msg
        for entries in [
            *client.get_worker_logs().values(),
            *client.get_worker_logs(nanny=True).values(),
        ]
        for _, msg in entries
    ]
    return [msg for msg in logs if _TROUBLE.search(msg)]
