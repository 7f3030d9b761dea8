"""E-BalLOT fits at small regularisations: time and passes against the exact fit and scikit-learn.

``BalancedKMeans(k, method="sinkhorn", reg=r)`` on a Gaussian mixture (means
``separation * N(0, I)``, unit clusters, equal weights; by default separated, k = 64 and
n = 200 000, which k does not divide: the entropic column targets ``n / k`` are fractional),
from the estimator's k-means++ start, ``max_iter`` iterations at its default ``tol``.  Each
fit runs on the NumPy array and on a Dask array of the same rows (four row chunks, the
threaded scheduler): a Dask fit's passes are the scheduler rounds a cluster pays, and both
engines must end on the same objective.  The peers, measured in the same run from the same
start: the exact method's fit (``BalancedKMeans(k)``; issue target: an E-BalLOT fit within
2x of it) and scikit-learn's ``KMeans`` (lloyd, unbalanced).  Columns: fit seconds (median
of ``--repeats``), iterations, passes over X and rounds, passes over the row sample, the
final k-means objective of the labels, and the ratios.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from _common import (
    base_parser,
    kmeans_objective,
    machine_info,
    parse_with_small,
    print_header,
    table,
    time_call,
    warm_up,
    write_results,
)
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans

NAME = "bench_entropic_fit"
RATIO_TARGET = 2.0  # E-BalLOT fit / exact fit


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="points")
    parser.add_argument("--k", type=int, default=64, help="clusters")
    parser.add_argument("--d", type=int, default=16, help="features")
    parser.add_argument("--separation", type=float, default=6.0, help="means' scale")
    parser.add_argument("--reg", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4])
    parser.add_argument("--max-iter", type=int, default=20, help="Lloyd iterations at most")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask array fits")
    return parse_with_small(parser, n=20_000, k=16, reg=[1e-3], max_iter=5)


def _data(args: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    means = args.separation * rng.standard_normal((args.k, args.d))
    X = means[rng.integers(0, args.k, args.n)] + rng.standard_normal((args.n, args.d))
    init, _ = kmeans_plusplus(X, args.k, random_state=args.seed)
    return X, init


def _fit(X: Any, init: np.ndarray, args: Any, **options: Any) -> tuple[float, Any]:
    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fit at max_iter warns; its figures are kept
            return BalancedKMeans(
                args.k, init=init, max_iter=args.max_iter, random_state=args.seed, **options
            ).fit(X)

    seconds, _, model = time_call(run, args.repeats)
    return seconds, model


def _row(name: str, seconds: float, model: Any, X: np.ndarray, k: int) -> dict[str, Any]:
    passes = dict(model.n_passes_)
    return {
        "fit": name,
        "seconds": seconds,
        "iterations": int(model.n_iter_),
        "passes": int(passes.get("x", 0)),
        "rounds": int(passes.get("rounds", 0)),
        "sample_passes": int(passes.get("sample", 0)),
        "objective": kmeans_objective(X, np.asarray(model.labels_), k),
    }


def main() -> None:
    """Run the fits and print the table."""
    import dask
    import dask.array as da

    args = parse_args()
    info = machine_info()
    print_header(NAME, info, args)
    X, init = _data(args)
    info["warm_up_seconds"] = warm_up(args.d, args.k)
    Xd = da.from_array(X, chunks=(-(-args.n // 4), args.d))
    engines = {"NumPy": X} if args.no_dask else {"NumPy": X, "Dask": Xd}
    rows: list[dict[str, Any]] = []
    exact_seconds = {}
    with dask.config.set(scheduler="threads"):
        for engine, data in engines.items():
            seconds, model = _fit(data, init, args)
            exact_seconds[engine] = seconds
            rows.append(_row(f"exact, {engine}", seconds, model, X, args.k))
            print(f"exact {engine}: {seconds:.2f} s", flush=True)
        sk_seconds, _, sk = time_call(
            lambda: KMeans(args.k, init=init, n_init=1, max_iter=args.max_iter).fit(X),
            args.repeats,
        )
        rows.append(
            {
                "fit": "scikit-learn KMeans",
                "seconds": sk_seconds,
                "iterations": int(sk.n_iter_),
                "objective": kmeans_objective(X, sk.labels_, args.k),
                "largest": int(np.bincount(sk.labels_, minlength=args.k).max()),
            }
        )
        for reg in args.reg:
            for engine, data in engines.items():
                seconds, model = _fit(data, init, args, method="sinkhorn", reg=reg)
                row = _row(f"sinkhorn reg={reg:g}, {engine}", seconds, model, X, args.k)
                row["reg"], row["engine"] = reg, engine
                row["vs_exact"] = seconds / exact_seconds[engine]
                row["vs_sklearn"] = seconds / sk_seconds
                row["target_met"] = bool(row["vs_exact"] <= RATIO_TARGET)
                rows.append(row)
                print(f"{row['fit']}: {seconds:.2f} s, {row['passes']} passes", flush=True)
    columns = [
        ("fit", lambda r: r["fit"]),
        ("s", lambda r: r["seconds"]),
        ("iters", lambda r: r["iterations"]),
        ("X passes", lambda r: r.get("passes", "")),
        ("rounds", lambda r: r.get("rounds", "")),
        ("sample passes", lambda r: r.get("sample_passes", "")),
        ("objective", lambda r: r["objective"]),
        ("/ exact", lambda r: r.get("vs_exact", "")),
        ("/ sklearn", lambda r: r.get("vs_sklearn", "")),
    ]
    print(table(columns, rows))
    fits = [r for r in rows if "vs_exact" in r]
    met = sum(r["target_met"] for r in fits)
    print(f"target (E-BalLOT fit <= {RATIO_TARGET:g}x the exact fit): met on {met}/{len(fits)}")
    if not args.no_dask:
        for reg in args.reg:
            pair = [r["objective"] for r in fits if r["reg"] == reg]
            print(f"reg={reg:g}: NumPy and Dask objectives differ by {abs(pair[0] - pair[1]):.3g}")
    path = write_results(NAME, args, info, {"rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
