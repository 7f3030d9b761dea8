"""Synthetic balanced data, generated lazily chunk by chunk as Dask arrays.

Every model plants ``k`` clusters of sizes exactly ``floor(n/k)`` or ``ceil(n/k)`` around
centres whose nearest pairwise distance is ``delta`` (:func:`ball_centers`). The data are never
whole in memory: each row chunk is drawn on the worker that computes it, from
``np.random.default_rng([seed, chunk_index])``, and the task graph holds only the centres and a
few integers.

Planted labels: row ``i`` of chunk ``c`` belongs to cluster ``i % k`` permuted within the chunk
by a permutation drawn first from the chunk's generator. A permutation does not change the
multiset ``{i % k}`` of a chunk, so the cluster sizes are those of ``i % k`` over ``0..n-1``
(cluster ``j`` has ``ceil(n/k)`` points when ``j < n % k``, else ``floor(n/k)``) whatever the
chunking. The points and the labels are separate Dask arrays; each of their chunk tasks redraws
the chunk's permutation (cheap), so computing ``X`` never computes the labels.

>>> X, y, centers = stochastic_ball(1_000, 2, 4, chunks=300)
>>> X.chunks
((300, 300, 300, 100), (2,))
>>> np.bincount(y.compute()).tolist()
[250, 250, 250, 250]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import DTypeLike

__all__ = ["MODELS", "ball_centers", "gaussian_mixture", "make_data", "stochastic_ball"]

_Noise = Callable[[np.random.Generator, int, int], np.ndarray]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}; {fix}")
    return int(value)


def _check_delta(delta: Any) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.integer | np.floating):
        raise TypeError(f"delta must be a real number, got {delta!r}")
    if not np.isfinite(delta):
        raise ValueError(f"delta must be finite, got {delta!r}")
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    return float(delta)


def _check_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def _check_model_args(n: Any, d: Any, k: Any, chunks: Any, seed: Any) -> tuple[int, ...]:
    k = _check_int(k, "k", 1, "ask for at least one cluster")
    n = _check_int(n, "n", k, f"every one of the k={k} clusters needs a point: raise n or lower k")
    d = _check_int(d, "d", 1, "the points need at least one coordinate")
    chunks = _check_int(chunks, "chunks", 1, "give the number of rows per chunk, e.g. 100_000")
    seed = _check_int(seed, "seed", 0, "seeds are non-negative integers")
    return n, d, k, chunks, seed


# --------------------------------------------------------------------------------------------
# centres
# --------------------------------------------------------------------------------------------


def _integer_root_ceil(k: int, d: int) -> int:
    """The smallest integer ``s`` with ``s ** d >= k`` (``ceil(k ** (1/d))`` without rounding
    errors)."""
    s = max(1, round(k ** (1.0 / d)))
    while s**d < k:
        s += 1
    while s > 1 and (s - 1) ** d >= k:
        s -= 1
    return s


def ball_centers(k: int, d: int, delta: float) -> np.ndarray:
    """Centres of ``k`` clusters in ``R^d`` whose nearest pairwise distance is ``delta``.

    Parameters
    ----------
    k : int
        Number of centres, ``>= 1``.
    d : int
        Dimension, ``>= 1``.
    delta : float
        Nearest pairwise distance, ``> 0``.

    Returns
    -------
    ndarray of shape (k, d), float64
        When ``k <= d``, ``delta / sqrt(2) * e_j`` for ``j < k``: a regular simplex, every
        pairwise distance equal to ``delta``. Otherwise the first ``k`` points, in row-major
        order, of the cubic grid ``delta * {0, ..., s - 1}^d`` with ``s = ceil(k ** (1/d))``.
        Either way shifted so that the centres have mean zero.

    Examples
    --------
    >>> ball_centers(3, 1, 2.0).ravel().tolist()
    [-2.0, 0.0, 2.0]
    """
    k = _check_int(k, "k", 1, "ask for at least one centre")
    d = _check_int(d, "d", 1, "the centres need at least one coordinate")
    delta = _check_delta(delta)
    if k <= d:
        centers = np.zeros((k, d))
        centers[np.arange(k), np.arange(k)] = delta / math.sqrt(2.0)
    else:
        side = _integer_root_ceil(k, d)
        index = np.arange(k)
        grid = np.empty((k, d), dtype=np.int64)
        for axis in range(d - 1, -1, -1):  # last coordinate varies fastest (row-major)
            grid[:, axis] = index % side
            index = index // side
        centers = delta * grid.astype(np.float64)
    return centers - centers.mean(axis=0)


# --------------------------------------------------------------------------------------------
# chunk kernels (run on the workers)
# --------------------------------------------------------------------------------------------


def _chunk_labels(
    start: int, stop: int, k: int, seed: int, index: int
) -> tuple[np.ndarray, np.random.Generator]:
    """Planted labels of rows ``[start, stop)`` (chunk ``index``) and the chunk's generator,
    advanced past the permutation."""
    rng = np.random.default_rng([seed, index])
    labels = (np.arange(start, stop, dtype=np.int64) % k)[rng.permutation(stop - start)]
    return labels, rng


def _labels_block(k: int, seed: int, block_info: dict | None = None) -> np.ndarray:
    assert block_info is not None  # given by map_blocks
    info = block_info[None]
    ((start, stop),) = info["array-location"]
    labels, _ = _chunk_labels(start, stop, k, seed, info["chunk-location"][0])
    return labels


def _ball_noise(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """``m`` points uniform in the unit ball of ``R^d``: a gaussian direction, normalised, times
    a radius ``U ** (1/d)``."""
    direction = rng.standard_normal((m, d))
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 0)
    radius = rng.random((m, 1)) ** (1.0 / d)
    return direction * radius


def _gaussian_noise(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    return rng.standard_normal((m, d))


def _points_block(
    centers: np.ndarray,
    seed: int,
    noise: _Noise,
    dtype: np.dtype,
    block_info: dict | None = None,
) -> np.ndarray:
    assert block_info is not None  # given by map_blocks
    info = block_info[None]
    (start, stop), _ = info["array-location"]
    labels, rng = _chunk_labels(start, stop, centers.shape[0], seed, info["chunk-location"][0])
    points = centers[labels] + noise(rng, stop - start, centers.shape[1])
    return points.astype(dtype, copy=False)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def _planted(
    model: str,
    noise: _Noise,
    n: int,
    d: int,
    k: int,
    delta: float,
    chunks: int,
    seed: int,
    dtype: DTypeLike,
) -> tuple[da.Array, da.Array, np.ndarray]:
    n, d, k, chunks, seed = _check_model_args(n, d, k, chunks, seed)
    dtype = _check_dtype(dtype)
    centers = ball_centers(k, d, delta)
    rows = da.core.normalize_chunks((chunks,), (n,))[0]
    X = da.map_blocks(
        _points_block,
        centers,
        seed,
        noise,
        dtype,
        chunks=(rows, (d,)),
        dtype=dtype,
        meta=np.empty((0, d), dtype=dtype),
        token=model,
    )
    labels = da.map_blocks(
        _labels_block,
        k,
        seed,
        chunks=(rows,),
        dtype=np.int64,
        meta=np.empty((0,), dtype=np.int64),
        token=f"{model}-labels",
    )
    return X, labels, centers


def stochastic_ball(
    n: int,
    d: int,
    k: int,
    *,
    delta: float = 3.0,
    chunks: int = 100_000,
    seed: int = 0,
    dtype: DTypeLike = np.float64,
) -> tuple[da.Array, da.Array, np.ndarray]:
    """The balanced stochastic ball model (Luo & Mixon, BalLOT, Definition 1), as Dask arrays.

    Each point is the centre of its planted cluster plus a point drawn uniformly from the unit
    ball of ``R^d``. With ``delta > 2`` the balls are disjoint.

    Parameters
    ----------
    n : int
        Number of points, ``>= k``.
    d : int
        Dimension, ``>= 1``.
    k : int
        Number of clusters, ``>= 1``.
    delta : float, default=3.0
        Nearest distance between two centres (:func:`ball_centers`).
    chunks : int, default=100_000
        Rows per chunk (the last chunk may be shorter).
    seed : int, default=0
        Chunk ``c`` is drawn from ``np.random.default_rng([seed, c])``.
    dtype : float32 or float64, default=float64
        Dtype of the points.

    Returns
    -------
    X : dask array of shape (n, d), chunks ``(chunks, d)``
        The points.
    labels_true : dask array of shape (n,), int64, with X's row chunks
        Planted cluster of each point; exactly ``floor(n/k)`` or ``ceil(n/k)`` per cluster.
    centers : ndarray of shape (k, d), float64
        The centres.

    Examples
    --------
    >>> X, y, centers = stochastic_ball(500, 3, 5, chunks=128, seed=1)
    >>> x, y = X.compute(), y.compute()
    >>> bool(np.all(np.linalg.norm(x - centers[y], axis=1) <= 1))
    True
    """
    return _planted("stochastic-ball", _ball_noise, n, d, k, delta, chunks, seed, dtype)


def gaussian_mixture(
    n: int,
    d: int,
    k: int,
    *,
    delta: float = 3.0,
    chunks: int = 100_000,
    seed: int = 0,
    dtype: DTypeLike = np.float64,
) -> tuple[da.Array, da.Array, np.ndarray]:
    """A balanced mixture of ``k`` isotropic unit-variance gaussians, as Dask arrays.

    Each point is the centre of its planted cluster plus standard normal noise (identity
    covariance); the centres are those of :func:`stochastic_ball`. Parameters and returns are
    those of :func:`stochastic_ball`.

    Examples
    --------
    >>> X, y, centers = gaussian_mixture(1_001, 2, 2, chunks=250)
    >>> np.bincount(y.compute()).tolist()
    [501, 500]
    """
    return _planted("gaussian-mixture", _gaussian_noise, n, d, k, delta, chunks, seed, dtype)


MODELS: dict[str, Callable[..., tuple[da.Array, da.Array, np.ndarray]]] = {
    "ball": stochastic_ball,
    "gmm": gaussian_mixture,
}


def make_data(
    model: str, n: int, d: int, k: int, **kw: Any
) -> tuple[da.Array, da.Array, np.ndarray]:
    """``MODELS[model](n, d, k, **kw)``: ``"ball"`` (:func:`stochastic_ball`) or ``"gmm"``
    (:func:`gaussian_mixture`).

    Examples
    --------
    >>> X, y, centers = make_data("gmm", 100, 2, 4, chunks=30, seed=3)
    >>> X.shape, y.chunks, centers.shape
    ((100, 2), ((30, 30, 30, 10),), (4, 2))
    """
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    return MODELS[model](n, d, k, **kw)
