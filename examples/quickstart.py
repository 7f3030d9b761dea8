"""Balanced k-means on synthetic data: the main job, in memory.

Draws a balanced Gaussian mixture whose components overlap (the paper's Experiment 4: means
drawn at random, unit spread), fits ``BalancedKMeans`` with the exact method and prints what a
user checks: sizes, objective, the optimality certificate of the last assignment step and the
time, next to scikit-learn's unbalanced ``KMeans`` from the same start.

    python examples/quickstart.py [--n 200000] [--k 8] [--d 2] [--spread 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans


def gaussian_mixture(n: int, k: int, d: int, spread: float, rng: np.random.Generator):
    """``n`` points, ``n / k`` around each of ``k`` means drawn from N(0, spread^2 I)."""
    means = spread * rng.standard_normal((k, d))
    truth = np.arange(n) % k
    return means[truth] + rng.standard_normal((n, d)), truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--spread", type=float, default=3.0, help="scale of the means")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    X, _ = gaussian_mixture(args.n, args.k, args.d, args.spread, rng)
    init, _ = kmeans_plusplus(X, args.k, random_state=args.seed)
    print(f"data: n={args.n} d={args.d} k={args.k}, balanced Gaussian mixture")

    start = time.perf_counter()
    km = BalancedKMeans(args.k, init=init, random_state=args.seed).fit(X)
    elapsed = time.perf_counter() - start
    cert = km.certificate_
    print(
        f"BalancedKMeans (exact): {elapsed:.2f} s, {km.n_iter_} iterations, "
        f"objective {km.inertia_:.6g}\n"
        f"  sizes        {np.sort(km.sizes_).tolist()}\n"
        f"  certificate  optimal={cert.optimal} duality_gap={cert.duality_gap:.2g} "
        f"violations={cert.violations}\n"
        f"  passes       {km.n_passes_}"
    )

    start = time.perf_counter()
    ref = KMeans(args.k, init=init, n_init=1, algorithm="lloyd").fit(X)
    elapsed = time.perf_counter() - start
    sizes = np.bincount(ref.labels_, minlength=args.k)
    print(
        f"KMeans (unbalanced):    {elapsed:.2f} s, {ref.n_iter_} iterations, "
        f"objective {ref.inertia_:.6g}\n"
        f"  sizes        {np.sort(sizes).tolist()}"
    )


if __name__ == "__main__":
    main()
