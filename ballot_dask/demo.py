"""``ballot-dask demo``: the main job, end to end on a cluster in a minute.

Draws a balanced synthetic dataset (:mod:`.datasets`) chunk by chunk on the cluster's workers
and keeps it there, fits :class:`~ballot_dask.BalancedKMeans` on it, prints what a user checks
(sizes, objective, the optimality certificate, passes over the data, time, recovery of the
planted clusters, and scikit-learn's unbalanced ``KMeans`` on the same data for contrast) and
writes a PNG of the clustering with its power-diagram cells.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import dask
import numpy as np

__all__ = ["run_demo"]

_PLOT_POINTS = 20_000


def run_demo(
    client: Any,
    *,
    n: int,
    k: int,
    d: int,
    model: str,
    delta: float,
    chunks: int,
    seed: int,
    plot: Path,
    display: Callable[[Any], None] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the demo on ``client``'s cluster; returns the figures it prints."""
    from sklearn.cluster import KMeans

    from .datasets import make_data
    from .estimator import BalancedKMeans
    from .plotting import plot_clustering

    plot = Path(plot)
    if not plot.parent.exists():
        raise FileNotFoundError(f"--plot {plot}: the directory {plot.parent} does not exist")
    X, truth, _ = make_data(model, n, d, k, delta=delta, chunks=chunks, seed=seed)
    X, truth = client.persist([X, truth])  # generated on the workers, kept there
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    echo = (lambda text: None) if quiet else click.echo
    echo(
        f"cluster: {workers} workers (dashboard {client.dashboard_link})\n"
        f"data:    n={n} d={d} k={k}, {_MODEL_NAMES[model]} (centres {delta:g} apart), "
        f"{X.numblocks[0]} chunks of {chunks} rows, on the workers"
    )
    start = time.perf_counter()
    km = BalancedKMeans(k, random_state=seed).fit(X, callback=display)
    labels = km.labels_
    elapsed = time.perf_counter() - start
    sizes = np.asarray(km.sizes_)
    # every summary is computed on the cluster: the client receives k-vectors, k x k tables
    # and the plotted sample, never X or the labels
    table = _contingency(truth, labels, k)
    cert = km.certificate_
    figures = {
        "seconds": elapsed,
        "n_iter": km.n_iter_,
        "objective": km.inertia_,
        "sizes": sizes,
        "optimal": bool(cert.optimal),
        "ari": adjusted_rand_index(table),
    }
    echo(
        f"BalancedKMeans (exact, on the cluster): {elapsed:.2f} s, {km.n_iter_} iterations, "
        f"objective {km.inertia_:.6g}\n"
        f"  sizes        {sizes.tolist()}\n"
        f"  certificate  optimal={cert.optimal} duality_gap={cert.duality_gap:.2g} "
        f"violations={cert.violations}\n"
        f"  passes       {km.n_passes_}\n"
        f"  recovery     adjusted Rand index {figures['ari']:.4f} against the planted clusters"
    )
    step = max(1, n // _PLOT_POINTS)
    shown, shown_labels = dask.compute(X[::step], labels[::step])
    # the unbalanced contrast: scikit-learn's KMeans from the same centers, fitted on the
    # plotted sample (in memory), its nearest-center labels of every point on the cluster
    start = time.perf_counter()
    ref = KMeans(k, init=km.cluster_centers_, n_init=1).fit(shown)
    ref_labels = X.map_blocks(
        _nearest, ref.cluster_centers_, dtype=np.intp, drop_axis=1, meta=np.empty(0, np.intp)
    )
    ref_table = _contingency(truth, ref_labels, k)
    ref_sizes = ref_table.sum(axis=0)
    figures["kmeans_sizes"] = ref_sizes
    echo(
        f"scikit-learn KMeans (unbalanced, fitted on {shown.shape[0]} sampled points from the "
        f"same centers, every point to its nearest center): "
        f"{time.perf_counter() - start:.2f} s\n"
        f"  sizes        {ref_sizes.tolist()}\n"
        f"  recovery     adjusted Rand index {adjusted_rand_index(ref_table):.4f}"
    )
    path = plot_clustering(
        shown,
        shown_labels,
        km.cluster_centers_,
        plot,
        potentials=km.potentials_,
        title=f"BalancedKMeans: n={n}, k={k}, sizes {sizes.min()}..{sizes.max()}",
    )
    echo(f"plot:    {path}")
    return figures


_MODEL_NAMES = {"gmm": "balanced Gaussian mixture", "ball": "balanced stochastic ball model"}


def _nearest(block: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Labels of the nearest center (a chunk's task)."""
    from .costs import cost_block
    from .kernels import reduced_cost_labels

    costs = cost_block(np.ascontiguousarray(block), centers.astype(block.dtype))
    return reduced_cost_labels(costs, np.zeros(centers.shape[0]))[0].astype(np.intp)


def _contingency(truth: Any, labels: Any, k: int) -> np.ndarray:
    """The k x k table of (planted cluster, label) counts, counted on the cluster."""
    import dask.array as da

    pairs = truth.astype(np.int64) * k + labels.astype(np.int64)
    return np.asarray(da.bincount(pairs, minlength=k * k).compute()).reshape(k, k)


def adjusted_rand_index(table: np.ndarray) -> float:
    """The adjusted Rand index of two labelings from their contingency table (Hubert &
    Arabie, 1985), as :func:`sklearn.metrics.adjusted_rand_score` computes it from labels."""
    table = np.asarray(table, dtype=np.float64)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    n = table.sum()
    index, rows, cols = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    total = n * (n - 1) / 2
    expected = rows * cols / total if total else 0.0
    top = 0.5 * (rows + cols)
    if top == expected:  # both labelings trivial (one cluster or all singletons)
        return 1.0
    return (index - expected) / (top - expected)
