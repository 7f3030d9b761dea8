"""Full balanced k-means fit: ``BalancedKMeans`` (exact) vs k-means-constrained.

``k_means_constrained.KMeansConstrained`` with ``size_min = floor(n/k)``, ``size_max =
ceil(n/k)`` (equal sizes when k divides n), ``n_init=1``; scikit-learn ``KMeans`` (unbalanced)
as a reference.  ``BalancedKMeans`` and ``KMeans`` start from the same k-means++ centers
(computed once, untimed); k-means-constrained gets them too with ``--kmc-init shared`` (the
default) or runs its own k-means++ (timed, inside its fit) with ``--kmc-init own``.
All objectives are the true k-means objective of the final labels, computed by this script:
``sum_i ||x_i - centroid(label_i)||^2`` (the libraries' ``inertia_`` are not used).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import (
    add_data_args,
    base_parser,
    certificate_summary,
    equal_sizes,
    kmeans_objective,
    machine_info,
    make_data,
    parse_with_small,
    print_header,
    size_stats,
    table,
    time_call,
    warm_up,
    write_results,
)
from k_means_constrained import KMeansConstrained
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans

NAME = "bench_kmc"
OURS = "ballot_dask exact"
KMC = "k-means-constrained"


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="points")
    parser.add_argument("--k", type=int, default=10, help="clusters")
    parser.add_argument("--d", type=int, default=2, help="features")
    parser.add_argument("--max-iter", type=int, default=300, help="max_iter of every method")
    parser.add_argument("--tol", type=float, default=1e-4, help="tol of every method")
    parser.add_argument(
        "--kmc-init",
        choices=("shared", "own"),
        default="shared",
        help="k-means-constrained: the shared k-means++ centers, or its own k-means++",
    )
    add_data_args(parser, data="blobs", separation=4.0)
    return parse_with_small(parser, n=5_000)


def make_estimators(args: Any, init: np.ndarray) -> dict[str, Any]:
    """Estimator factories (no arguments) for the three methods."""
    k, seed = args.k, args.seed
    sizes = equal_sizes(args.n, k)
    kmc_init = init if args.kmc_init == "shared" else "k-means++"
    return {
        OURS: lambda: BalancedKMeans(
            k, method="exact", init=init, max_iter=args.max_iter, tol=args.tol, random_state=seed
        ),
        KMC: lambda: KMeansConstrained(
            n_clusters=k,
            size_min=int(sizes.min()),
            size_max=int(sizes.max()),
            init=kmc_init,
            n_init=1,
            max_iter=args.max_iter,
            tol=args.tol,
            random_state=seed,
        ),
        "sklearn KMeans (unbalanced)": lambda: KMeans(
            k,
            init=init,
            n_init=1,
            max_iter=args.max_iter,
            tol=args.tol,
            algorithm="lloyd",
            random_state=seed,
        ),
    }


def measure(X: np.ndarray, factory: Any, k: int, repeats: int) -> dict:
    """Time ``factory().fit(X)``; the true objective and the sizes of the final labels."""
    t, times, est = time_call(lambda: factory().fit(X), repeats)
    labels = np.asarray(est.labels_)
    row = {
        "time_fit": t,
        "times_fit": times,
        "n_iter": int(getattr(est, "n_iter_", -1)),
        "objective": kmeans_objective(X, labels, k),
        "inertia_reported": float(est.inertia_) if hasattr(est, "inertia_") else None,
        "size_stats": size_stats(labels, k),
    }
    if isinstance(est, BalancedKMeans):
        row["certificate"] = certificate_summary(est.certificate_)
        row["converged"] = bool(est.converged_)
    return row


def report(rows: list[dict], sizes: np.ndarray) -> dict:
    """Print the table and the ours-vs-k-means-constrained ratios; return them."""
    by_name = {r["method"]: r for r in rows}
    ours, kmc = by_name[OURS], by_name[KMC]
    columns = [
        ("method", lambda r: r["method"]),
        ("fit [s]", lambda r: r["time_fit"]),
        ("time/kmc", lambda r: r["time_fit"] / kmc["time_fit"]),
        ("n_iter", lambda r: r["n_iter"]),
        ("objective", lambda r: r["objective"]),
        ("obj/kmc", lambda r: r["objective"] / kmc["objective"]),
        ("size min", lambda r: r["size_stats"]["min"]),
        ("size max", lambda r: r["size_stats"]["max"]),
        ("balanced", lambda r: r["balanced"]),
    ]
    print(table(columns, rows))
    headline = {
        "time_ratio": ours["time_fit"] / kmc["time_fit"],
        "objective_ratio": ours["objective"] / kmc["objective"],
        "ours_balanced": ours["balanced"],
        "kmc_balanced": kmc["balanced"],
    }
    print()
    print(
        f"ours / k-means-constrained: time {headline['time_ratio']:.3f} "
        f"(speed-up {1 / headline['time_ratio']:.1f}x), objective "
        f"{headline['objective_ratio']:.6f} ({100 * (headline['objective_ratio'] - 1):+.3f} %)"
    )
    print(
        f"required sizes {int(sizes.min())}..{int(sizes.max())}; "
        f"ours: certificate {ours['certificate']}, converged {ours['converged']}"
    )
    return headline


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_args()
    info = machine_info()
    print_header(f"{NAME}: full balanced k-means fit vs k-means-constrained", info, args)
    X = make_data(args.n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    init, _ = kmeans_plusplus(X, args.k, random_state=args.seed)
    sizes = equal_sizes(args.n, args.k)
    print(f"warm-up (numba compilation): {warm_up(args.d, args.k):.2f} s\n")

    rows = []
    for method, factory in make_estimators(args, init).items():
        row = {"method": method, **measure(X, factory, args.k, args.repeats)}
        stats = row["size_stats"]
        row["balanced"] = stats["min"] >= sizes.min() and stats["max"] <= sizes.max()
        rows.append(row)
    headline = report(rows, sizes)
    path = write_results(NAME, args, info, {"rows": rows, "headline": headline})
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
