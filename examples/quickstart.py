"""Balanced k-means from Python on an embedded Dask LocalCluster (the ``ballot-dask demo``
command does the same from the shell).

Starts a local cluster (2 worker processes by default), draws a balanced Gaussian mixture whose
components overlap (unit variance, means ``--delta`` apart) chunk by chunk as a Dask array,
fits ``BalancedKMeans`` with the exact method on the cluster and prints what a user checks:
sizes, objective, the optimality certificate of the last assignment step, passes over the data
and the time, next to scikit-learn's unbalanced ``KMeans`` from the same start.

    python examples/quickstart.py [--n 1000000] [--k 8] [--d 2] [--chunk-rows 250000]
                                  [--workers 2] [--delta 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from distributed import Client, LocalCluster
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans
from ballot_dask.datasets import gaussian_mixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--delta", type=float, default=3.0, help="distance between means")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        # generated on the workers and kept there (as one would persist a loaded dataset)
        X, _, _ = gaussian_mixture(
            args.n, args.d, args.k, delta=args.delta, chunks=args.chunk_rows, seed=args.seed
        )
        X = X.persist()
        print(
            f"cluster: {len(client.scheduler_info()['workers'])} workers "
            f"(dashboard {client.dashboard_link})\n"
            f"data: n={args.n} d={args.d} k={args.k}, balanced Gaussian mixture, "
            f"{X.numblocks[0]} chunks of {args.chunk_rows} rows"
        )
        # the same start for both fits: k-means++ on a sample (what init="k-means++" does on
        # a Dask array)
        sample = X[:: max(1, args.n // 65536)].compute()
        init, _ = kmeans_plusplus(sample, args.k, random_state=args.seed)
        start = time.perf_counter()
        km = BalancedKMeans(args.k, init=init).fit(X)
        sizes = np.bincount(km.labels_.compute(), minlength=args.k)
        elapsed = time.perf_counter() - start
        cert = km.certificate_
        print(
            f"BalancedKMeans (exact, on the cluster): {elapsed:.2f} s, {km.n_iter_} iterations, "
            f"objective {km.inertia_:.6g}\n"
            f"  sizes        {np.sort(sizes).tolist()}\n"
            f"  certificate  optimal={cert.optimal} duality_gap={cert.duality_gap:.2g} "
            f"violations={cert.violations}\n"
            f"  passes       {km.n_passes_}"
        )
        Xm = X.compute()

    start = time.perf_counter()
    ref = KMeans(args.k, init=init, n_init=1, algorithm="lloyd").fit(Xm)
    elapsed = time.perf_counter() - start
    sizes = np.bincount(ref.labels_, minlength=args.k)
    print(
        f"KMeans (unbalanced, in memory, same start): {elapsed:.2f} s, {ref.n_iter_} "
        f"iterations, objective {ref.inertia_:.6g}\n"
        f"  sizes        {np.sort(sizes).tolist()}"
    )


if __name__ == "__main__":
    main()
