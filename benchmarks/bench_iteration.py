"""Time per Lloyd iteration: ``BalancedKMeans`` (exact) vs scikit-learn ``KMeans`` (lloyd).

Both start from the same k-means++ centers and run ``max_iter=T`` iterations with ``tol=0``
(each also stops early if its labels stop changing).  Per-iteration time is the fit time over
the ``n_iter_`` each reports; the "warm" per-iteration time excludes the first iteration and the
fixed costs of a fit: ``(t(max_iter=T) - t(max_iter=1)) / (n_iter_(T) - n_iter_(1))``.
Objectives are the true k-means objectives of the final labels, computed by this script.
Target: balanced / scikit-learn time per iteration ``<= 3``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import (
    add_data_args,
    base_parser,
    certificate_summary,
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
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans

NAME = "bench_iteration"
RATIO_TARGET = 3.0


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="points")
    parser.add_argument("--k", type=int, default=16, help="clusters")
    parser.add_argument("--d", type=int, default=32, help="features")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations T (max_iter)")
    add_data_args(parser, data="blobs", separation=4.0)
    args = parse_with_small(parser, n=20_000, iters=5)
    if args.iters < 2:
        raise SystemExit("--iters must be at least 2")
    return args


def make_estimators(k: int, init: np.ndarray, seed: int) -> dict[str, Any]:
    """Estimator factories ``max_iter -> estimator`` for both methods, same init, ``tol=0``."""
    return {
        "ballot_dask exact": lambda T: BalancedKMeans(
            k, method="exact", init=init, max_iter=T, tol=0, random_state=seed
        ),
        "sklearn KMeans lloyd": lambda T: KMeans(
            k, init=init, n_init=1, max_iter=T, tol=0, algorithm="lloyd", random_state=seed
        ),
    }


def measure(X: np.ndarray, factory: Any, iters: int, repeats: int) -> dict:
    """Time fits with ``max_iter=1`` and ``max_iter=iters``; per-iteration times and figures."""
    t1, times1, est1 = time_call(lambda: factory(1).fit(X), repeats)
    n1 = int(est1.n_iter_)
    del est1
    tT, timesT, est = time_call(lambda: factory(iters).fit(X), repeats)
    nT = int(est.n_iter_)
    k = est.cluster_centers_.shape[0]
    row = {
        "time_fit": tT,
        "times_fit": timesT,
        "n_iter": nT,
        "time_fit_1": t1,
        "times_fit_1": times1,
        "n_iter_1": n1,
        "time_per_iter": tT / nT,
        "time_per_iter_warm": (tT - t1) / (nT - n1) if nT > n1 else float("nan"),
        "objective": kmeans_objective(X, est.labels_, k),
        "inertia_reported": float(est.inertia_),
        "size_stats": size_stats(est.labels_, k),
    }
    if isinstance(est, BalancedKMeans):
        row["certificate"] = certificate_summary(est.certificate_)
        row["n_passes"] = est.n_passes_
    return row


def report(rows: list[dict], iters: int) -> dict:
    """Print the table and the headline ratios; return the headline figures."""
    ours, peer = rows
    columns = [
        ("method", lambda r: r["method"]),
        ("n_iter", lambda r: r["n_iter"]),
        ("fit [s]", lambda r: r["time_fit"]),
        ("s/iter", lambda r: r["time_per_iter"]),
        ("s/iter warm", lambda r: r["time_per_iter_warm"]),
        ("ratio s/iter", lambda r: r["time_per_iter"] / peer["time_per_iter"]),
        ("ratio warm", lambda r: r["time_per_iter_warm"] / peer["time_per_iter_warm"]),
        ("objective", lambda r: r["objective"]),
        ("obj ratio", lambda r: r["objective"] / peer["objective"]),
        ("size min", lambda r: r["size_stats"]["min"]),
        ("size max", lambda r: r["size_stats"]["max"]),
    ]
    print(table(columns, rows))
    headline = {
        "ratio_per_iter": ours["time_per_iter"] / peer["time_per_iter"],
        "ratio_per_iter_warm": ours["time_per_iter_warm"] / peer["time_per_iter_warm"],
        "objective_ratio": ours["objective"] / peer["objective"],
    }
    headline["target_met"] = headline["ratio_per_iter"] <= RATIO_TARGET
    print()
    print(
        f"balanced / sklearn time per iteration (T={iters}): {headline['ratio_per_iter']:.2f} "
        f"(target <= {RATIO_TARGET:g}: {'met' if headline['target_met'] else 'NOT met'})"
    )
    print(f"same, first iteration excluded           : {headline['ratio_per_iter_warm']:.2f}")
    print(
        f"cluster size spread (max - min): sklearn {peer['size_stats']['spread']}, "
        f"ours {ours['size_stats']['spread']}"
    )
    print(
        f"ours: certificate {ours['certificate']}, "
        f"inertia_ {ours['inertia_reported']:.6g}, passes {ours['n_passes']}"
    )
    return headline


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_args()
    info = machine_info()
    print_header(f"{NAME}: time per Lloyd iteration, balanced vs scikit-learn", info, args)
    X = make_data(args.n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    init, _ = kmeans_plusplus(X, args.k, random_state=args.seed)
    print(f"warm-up (numba compilation): {warm_up(args.d, args.k):.2f} s\n")

    rows = []
    for method, factory in make_estimators(args.k, init, args.seed).items():
        rows.append({"method": method, **measure(X, factory, args.iters, args.repeats)})
    headline = report(rows, args.iters)
    path = write_results(NAME, args, info, {"rows": rows, "headline": headline})
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
