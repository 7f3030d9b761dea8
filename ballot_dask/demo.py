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
    from sklearn.metrics import adjusted_rand_score

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
    labels = km.labels_.compute()
    elapsed = time.perf_counter() - start
    sizes = np.bincount(labels, minlength=k)
    truth_local = truth.compute()
    cert = km.certificate_
    figures = {
        "seconds": elapsed,
        "n_iter": km.n_iter_,
        "objective": km.inertia_,
        "sizes": sizes,
        "optimal": bool(cert.optimal),
        "ari": adjusted_rand_score(truth_local, labels),
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
    local = X.compute()
    start = time.perf_counter()
    ref = KMeans(k, init=km.cluster_centers_, n_init=1).fit(local)
    ref_sizes = np.bincount(ref.labels_, minlength=k)
    figures["kmeans_sizes"] = ref_sizes
    echo(
        f"scikit-learn KMeans (unbalanced, in memory, from the same centers): "
        f"{time.perf_counter() - start:.2f} s\n"
        f"  sizes        {ref_sizes.tolist()}\n"
        f"  recovery     adjusted Rand index "
        f"{adjusted_rand_score(truth_local, ref.labels_):.4f}"
    )
    step = max(1, n // _PLOT_POINTS)
    path = plot_clustering(
        local[::step],
        labels[::step],
        km.cluster_centers_,
        plot,
        potentials=km.potentials_,
        title=f"BalancedKMeans: n={n}, k={k}, sizes {sizes.min()}..{sizes.max()}",
    )
    echo(f"plot:    {path}")
    return figures


_MODEL_NAMES = {"gmm": "balanced Gaussian mixture", "ball": "balanced stochastic ball model"}
