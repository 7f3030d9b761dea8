"""A PNG of a 2-D view of a clustering, optionally over the power diagram of the potentials.

matplotlib is imported when :func:`plot_clustering` is called (``import ballot_dask`` does not
load it) and only through its object API: a :class:`matplotlib.figure.Figure` saved with
``Figure.savefig``, never pyplot, so the global backend and pyplot's figure registry are left
alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["plot_clustering"]

_GRID = 300  # power-diagram shading resolution, per axis
_CELL_ALPHA = 0.2
_MARGIN = 0.05  # fraction of the data range added on each side of the axes


def _check_inputs(
    X: ArrayLike, labels: ArrayLike, centers: ArrayLike, potentials: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    centers = np.asarray(centers, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have shape (n_samples, n_features) with both >= 1, got {X.shape}")
    n, d = X.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match X {X.shape}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if centers.ndim != 2 or centers.shape[1] != d or centers.shape[0] < 1:
        raise ValueError(
            f"centers must have shape (n_clusters, {d}) to match X, got {centers.shape}"
        )
    k = centers.shape[0]
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"labels must lie in [0, {k}) for {k} centers, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    if potentials is not None:
        potentials = np.asarray(potentials, dtype=np.float64)
        if potentials.shape != (k,):
            raise ValueError(
                f"potentials must have shape ({k},) to match centers {centers.shape}, "
                f"got {potentials.shape}"
            )
    return X, labels.astype(np.int64, copy=False), centers, potentials


def _limits(values: np.ndarray) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    pad = _MARGIN * (high - low) if high > low else 1.0
    return low - pad, high + pad


def _power_cells(
    centers: np.ndarray,
    potentials: np.ndarray,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
) -> np.ndarray:
    """Index of the power cell ``argmin_j ||g - mu_j||^2 - v_j`` of the centre of each cell of
    a ``_GRID x _GRID`` grid over the axes (rows follow y, columns follow x)."""
    step_x = (xlim[1] - xlim[0]) / _GRID
    step_y = (ylim[1] - ylim[0]) / _GRID
    gx = xlim[0] + step_x * (np.arange(_GRID) + 0.5)
    gy = ylim[0] + step_y * (np.arange(_GRID) + 0.5)
    offset = np.einsum("ij,ij->i", centers, centers) - potentials  # ||mu_j||^2 - v_j
    cells = np.empty((_GRID, _GRID), dtype=np.int64)
    for row, y in enumerate(gy):  # one grid row at a time: O(GRID * k) memory
        # ||g - mu_j||^2 - v_j = ||g||^2 - 2 <g, mu_j> + ||mu_j||^2 - v_j; ||g||^2 is common
        cost = offset - 2.0 * (gx[:, None] * centers[:, 0] + y * centers[:, 1])
        cells[row] = np.argmin(cost, axis=1)
    return cells


def plot_clustering(
    X: ArrayLike,
    labels: ArrayLike,
    centers: ArrayLike,
    path: str | os.PathLike[str],
    *,
    potentials: ArrayLike | None = None,
    title: str | None = None,
    max_points: int = 20_000,
    seed: int = 0,
) -> Path:
    """Write a PNG of the clustering's view on its first two coordinates.

    Points are coloured by label (tab10 up to 10 clusters, else tab20, colours repeating
    beyond 20) and the centres drawn as black crosses. When ``d == 1`` the points are drawn at
    height zero (``(x_0, 0)``); when ``d > 2`` the other coordinates are ignored.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        The points, in memory (for a Dask array, compute a sample first).
    labels : int array of shape (n_samples,)
        Cluster of each point, in ``[0, n_clusters)``.
    centers : array of shape (n_clusters, n_features)
    path : str or path-like
        The PNG to write; its directory must exist. Written atomically: a temporary ``.png``
        in the same directory, renamed onto ``path`` once complete.
    potentials : array of shape (n_clusters,), optional
        Dual potentials ``v``. When given and ``n_features == 2``, the power-diagram cells
        ``argmin_j ||x - mu_j||^2 - v_j`` are shaded (on a 300x300 grid over the axes) under
        the points. Ignored for other dimensions, where the view does not determine the cell.
    title : str, optional
        Axes title; by default the number of points and clusters.
    max_points : int, default=20_000
        At most this many points are drawn, a uniform sample without replacement.
    seed : int, default=0
        Seed of the sample.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the shapes of ``X``, ``labels``, ``centers`` and ``potentials`` disagree, a label is
        out of range, or ``max_points < 1``.
    """
    X, labels, centers, potentials = _check_inputs(X, labels, centers, potentials)
    if isinstance(max_points, bool) or not isinstance(max_points, int | np.integer):
        raise TypeError(f"max_points must be an integer, got {max_points!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points!r}")
    path = Path(path)

    from matplotlib import colormaps
    from matplotlib.figure import Figure

    n, d = X.shape
    k = centers.shape[0]
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        X, labels = X[keep], labels[keep]
    xs = X[:, 0]
    ys = X[:, 1] if d >= 2 else np.zeros_like(xs)
    cx = centers[:, 0]
    cy = centers[:, 1] if d >= 2 else np.zeros_like(cx)

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    fig = Figure(figsize=(7.0, 6.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    xlim = _limits(np.concatenate([xs, cx]))
    ylim = _limits(np.concatenate([ys, cy]))
    if potentials is not None and d == 2:
        cells = _power_cells(centers, potentials, xlim, ylim)
        ax.imshow(
            cmap(cells % cmap.N),
            extent=(*xlim, *ylim),
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            alpha=_CELL_ALPHA,
            zorder=0,
        )
    size = 4.0 if len(xs) > 2_000 else 12.0
    ax.scatter(xs, ys, c=cmap(labels % cmap.N), s=size, linewidths=0, zorder=1)
    ax.scatter(cx, cy, marker="x", c="black", s=80, linewidths=2, zorder=2)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]" if d >= 2 else "0 (d = 1)")
    if d >= 2:
        ax.set_aspect("equal", adjustable="box")
    else:
        ax.set_yticks([0.0])
    if title is None:
        shown = f"{len(xs)} of {n}" if len(xs) < n else f"{n}"
        title = f"{shown} points, k={k}" + (" (first 2 coordinates)" if d > 2 else "")
    ax.set_title(title)

    directory = path.parent if str(path.parent) else Path(".")
    with tempfile.NamedTemporaryFile(
        dir=directory, prefix=f".{path.name}.", suffix=".png", delete=False
    ) as handle:
        tmp = Path(handle.name)
    try:
        fig.savefig(tmp, format="png")
        os.chmod(tmp, 0o644)  # NamedTemporaryFile creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path
