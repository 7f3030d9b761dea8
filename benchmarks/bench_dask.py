"""Balanced k-means on a 2-process Dask cluster vs the in-process NumPy path (and dask-ml, sklearn).

The same float32 blobs (n = 10^6, d = 16, k = 16 by default) and the same k-means++ centers
``C0`` (computed once, untimed; ``--init random``: random data rows, which on separated blobs,
``--separation 17``, split some blobs and leave others without a center) for four fits of
``max_iter=T``, ``tol=0`` iterations:

- ``ballot_dask numpy``: ``BalancedKMeans(k, init=C0, tol=0, max_iter=T).fit(X)`` on the NumPy
  array, in this process (numba on every core);
- ``ballot_dask dask``: the same estimator on ``X`` as a dask array whose row chunks were
  scattered onto a ``distributed.LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` beforehand (round-robin, so each worker holds half), so that no graph
  embeds the data; the fit includes waiting for its persisted ``labels_``;
- ``dask-ml KMeans``: ``dask_ml.cluster.KMeans(k, init=C0, tol=0, max_iter=T)`` (unbalanced
  Lloyd, the distributed reference) on the same dask array and cluster;
- ``sklearn KMeans``: ``KMeans(k, init=C0, n_init=1, tol=0, max_iter=T, algorithm="lloyd")``
  in this process, the unbalanced in-memory reference.

Time per iteration is fit time / ``n_iter_``; "warm" excludes the first iteration and the
fixed costs of a fit: from the timestamps of the per-iteration log messages for ours (logger
``ballot_dask``) and dask-ml (logger ``dask_ml.cluster.k_means``), and as
``(t(T) - t(1)) / (n_iter(T) - n_iter(1))`` for scikit-learn.  Objectives are the true
k-means objectives of the final labels, computed by this script in float64.  Target: Dask /
NumPy wall time ``<= 1.3``.  A second table repeats the comparison with ``tol=1e-4`` (relative
to the mean feature variance, as scikit-learn; dask-ml's ``tol`` is absolute, so it gets
``1e-4 * mean variance``) and ``max_iter=300``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
from _common import (
    add_data_args,
    base_parser,
    certificate_summary,
    kmeans_objective,
    make_data,
    parse_with_small,
    print_header,
    random_rows,
    size_stats,
    table,
    time_call,
    warm_up,
    write_results,
)
from _dask_common import (
    LogClock,
    _warm_worker,
    add_cluster_args,
    add_quick_flag,
    apply_engine_config,
    ballot_clock,
    dask_machine_info,
    local_cluster,
    median_of,
    scatter_rows,
    timed_fits,
    warm_up_cluster,
    worker_report,
)
from sklearn.base import clone
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans

NAME = "bench_dask"
RATIO_TARGET = 1.3
NUMPY = "ballot_dask numpy"
DASK = "ballot_dask dask"
ENTROPIC = "ballot_dask dask sinkhorn"
ENTROPIC_TARGET = 2.0  # E-BalLOT's fit on the cluster <= 2x the exact fit's
DASKML = "dask-ml KMeans"
SKLEARN = "sklearn KMeans"


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    add_quick_flag(parser)
    parser.add_argument("--n", type=int, default=1_000_000, help="points")
    parser.add_argument("--k", type=int, default=16, help="clusters")
    parser.add_argument("--d", type=int, default=16, help="features")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations T (max_iter)")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="rows per dask chunk")
    add_cluster_args(parser)
    parser.add_argument(
        "--tol", type=float, default=1e-4, help="tol of the second comparison (0: skip it)"
    )
    parser.add_argument("--tol-max-iter", type=int, default=300, help="max_iter with --tol")
    parser.add_argument("--no-dask-ml", action="store_true", help="skip the dask-ml peer")
    parser.add_argument("--no-sinkhorn", action="store_true", help="skip the E-BalLOT row")
    add_data_args(parser, data="blobs", separation=4.0)
    parser.add_argument(
        "--init",
        choices=("k-means++", "random"),
        default="k-means++",
        help="the fits' initial centers (random: data rows; hard with a large --separation)",
    )
    args = parse_with_small(parser, n=100_000, chunk_rows=25_000, iters=5)
    if args.iters < 2:
        raise SystemExit("--iters must be at least 2")
    return args


def factories(
    args: Any, init: np.ndarray, max_iter: int, tol: float, mean_var: float
) -> dict[str, tuple[Callable[[], Any], bool]]:
    """Estimator factories (no arguments) per method, and whether the method gets dask data."""
    k, seed = args.k, args.seed

    def ours() -> BalancedKMeans:
        return BalancedKMeans(k, init=init, max_iter=max_iter, tol=tol, random_state=seed)

    def entropic() -> BalancedKMeans:
        return BalancedKMeans(
            k, method="sinkhorn", init=init, max_iter=max_iter, tol=tol, random_state=seed
        )

    out: dict[str, tuple[Callable[[], Any], bool]] = {NUMPY: (ours, False), DASK: (ours, True)}
    if not args.no_sinkhorn:
        out[ENTROPIC] = (entropic, True)
    if not args.no_dask_ml:
        from dask_ml.cluster import KMeans as DaskKMeans

        out[DASKML] = (
            lambda: DaskKMeans(
                n_clusters=k,
                init=np.array(init),
                max_iter=max_iter,
                tol=tol * mean_var,  # dask-ml's tol is absolute on the squared center shift
                random_state=seed,
            ),
            True,
        )
    out[SKLEARN] = (
        lambda: KMeans(
            k, init=init, n_init=1, max_iter=max_iter, tol=tol, algorithm="lloyd", random_state=seed
        ),
        False,
    )
    return out


def describe(X: np.ndarray, est: Any, k: int) -> dict[str, Any]:
    """Figures of a fitted estimator computed by this script from its labels and centers."""
    labels = np.asarray(est.labels_.compute() if hasattr(est.labels_, "compute") else est.labels_)
    centers = np.asarray(est.cluster_centers_, dtype=np.float64)
    diff_sq = 0.0
    step = 1 << 18
    for s in range(0, X.shape[0], step):
        diff = X[s : s + step].astype(np.float64) - centers[labels[s : s + step]]
        diff_sq += float(np.einsum("ij,ij->", diff, diff))
    return {
        "labels": labels,
        "centers": centers,
        "objective": kmeans_objective(X, labels, k),
        "cost_at_centers": diff_sq,
        "inertia_reported": float(est.inertia_),
        "size_stats": size_stats(labels, k),
        "n_iter": int(est.n_iter_),
    }


def measure(
    name: str,
    factory: Callable[[], Any],
    data: Any,
    X: np.ndarray,
    args: Any,
    *,
    with_warm: bool,
) -> dict[str, Any]:
    """Time the fits of one method; the row of the table (labels/centers kept under ``_``)."""
    clock = None
    if name in (NUMPY, DASK, ENTROPIC):
        clock = ballot_clock()
    elif name == DASKML:
        clock = LogClock("dask_ml.cluster.k_means", r"^Finished Lloyd loop\s*(\d+)\.")
    if clock is not None:
        with clock.installed():
            t, times, est, summaries = timed_fits(factory, data, args.repeats, clock)
    else:
        t, times, est, summaries = timed_fits(factory, data, args.repeats)
    figures = describe(X, est, args.k)
    row: dict[str, Any] = {
        "method": name,
        "time_fit": t,
        "times_fit": times,
        "n_iter": figures["n_iter"],
        "time_per_iter": t / figures["n_iter"],
        "objective": figures["objective"],
        "cost_at_centers": figures["cost_at_centers"],
        "inertia_reported": figures["inertia_reported"],
        "size_stats": figures["size_stats"],
        "log_clock": summaries,
        "_labels": figures["labels"],
        "_centers": figures["centers"],
    }
    warm = float("nan")
    if summaries:
        warm = median_of([s.get("per_iter_warm", float("nan")) for s in summaries])
        row["time_to_first_iter"] = median_of([s.get("to_first", float("nan")) for s in summaries])
        row["time_after_last_iter"] = median_of(
            [s.get("after_last", float("nan")) for s in summaries]
        )
    elif with_warm and name == SKLEARN:
        # scikit-learn logs nothing: t(T) - t(1) over n_iter(T) - n_iter(1), as bench_iteration
        one = clone(est).set_params(max_iter=1)
        t1, times1, est1 = time_call(lambda: clone(one).fit(data), args.repeats)
        if figures["n_iter"] > est1.n_iter_:
            warm = (t - t1) / (figures["n_iter"] - est1.n_iter_)
        row["time_fit_1"], row["times_fit_1"] = t1, times1
    row["time_per_iter_warm"] = warm
    if isinstance(est, BalancedKMeans):
        row["n_passes"] = dict(est.n_passes_)
        row["passes_per_iter"] = {key: v / est.n_iter_ for key, v in est.n_passes_.items()}
        warm_passes = [s["passes_per_iter_warm"] for s in summaries if "passes_per_iter_warm" in s]
        row["passes_per_iter_warm"] = warm_passes[-1] if warm_passes else None
        row["certificate"] = certificate_summary(est.certificate_)
        row["sizes_exact"] = bool(
            np.array_equal(np.sort(est.sizes_), np.sort(row["size_stats"]["sizes"]))
            and row["size_stats"]["spread"] <= 1
        )
        row["converged"] = bool(est.converged_)
    del est
    gc.collect()
    return row


def run_comparison(
    title: str,
    args: Any,
    X: np.ndarray,
    Xd: da.Array,
    init: np.ndarray,
    max_iter: int,
    tol: float,
    mean_var: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fit every method, print the table and the headline figures; return both."""
    print(f"## {title}")
    rows = []
    for name, (factory, dask_input) in factories(args, init, max_iter, tol, mean_var).items():
        start = time.perf_counter()
        row = measure(name, factory, Xd if dask_input else X, X, args, with_warm=tol == 0)
        rows.append(row)
        print(f"  {name}: {args.repeats} fits in {time.perf_counter() - start:.1f} s")
    print()
    headline = report(rows)
    return rows, headline


def _fmt_passes(passes: dict[str, float] | None) -> str:
    if not passes:
        return "n/a"
    return ", ".join(f"{key} {value:.2f}" for key, value in passes.items())


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the table and the headline ratios; return the headline figures."""
    by = {r["method"]: r for r in rows}
    ref = by[SKLEARN]
    columns = [
        ("method", lambda r: r["method"]),
        ("n_iter", lambda r: r["n_iter"]),
        ("fit [s]", lambda r: r["time_fit"]),
        ("s/iter", lambda r: r["time_per_iter"]),
        ("s/iter warm", lambda r: r["time_per_iter_warm"]),
        ("vs numpy", lambda r: r["time_fit"] / by[NUMPY]["time_fit"]),
        ("objective", lambda r: r["objective"]),
        ("obj / sklearn", lambda r: r["objective"] / ref["objective"]),
        ("inertia_", lambda r: r["inertia_reported"]),
        ("size min", lambda r: r["size_stats"]["min"]),
        ("size max", lambda r: r["size_stats"]["max"]),
    ]
    print(table(columns, rows))
    ours_np, ours_dk = by[NUMPY], by[DASK]
    same = float(np.mean(ours_np["_labels"] == ours_dk["_labels"]))
    center_diff = float(np.abs(ours_np["_centers"] - ours_dk["_centers"]).max())
    center_scale = float(np.abs(ours_np["_centers"]).max())
    headline: dict[str, Any] = {
        "ratio_dask_numpy": ours_dk["time_fit"] / ours_np["time_fit"],
        "ratio_dask_numpy_per_iter": ours_dk["time_per_iter"] / ours_np["time_per_iter"],
        "ratio_dask_numpy_warm": ours_dk["time_per_iter_warm"] / ours_np["time_per_iter_warm"],
        "same_n_iter": ours_np["n_iter"] == ours_dk["n_iter"],
        "labels_equal_fraction": same,
        "centers_max_abs_diff": center_diff,
        "centers_max_abs": center_scale,
        "objective_rel_diff_dask_numpy": (ours_dk["objective"] - ours_np["objective"])
        / ours_np["objective"],
        "ratio_numpy_sklearn_per_iter": ours_np["time_per_iter"] / ref["time_per_iter"],
        "dask_passes": ours_dk["n_passes"],
        "dask_passes_per_iter": ours_dk["passes_per_iter"],
        "dask_passes_per_iter_warm": ours_dk["passes_per_iter_warm"],
        "numpy_passes": ours_np["n_passes"],
    }
    headline["target_met"] = headline["ratio_dask_numpy"] <= RATIO_TARGET
    print()
    print(
        f"dask / numpy (ballot_dask): wall {headline['ratio_dask_numpy']:.2f} "
        f"(target <= {RATIO_TARGET:g}: {'met' if headline['target_met'] else 'NOT met'}), "
        f"per iteration {headline['ratio_dask_numpy_per_iter']:.2f}, "
        f"warm per iteration {headline['ratio_dask_numpy_warm']:.2f}"
    )
    print(
        f"dask vs numpy results: iterations {ours_dk['n_iter']} vs {ours_np['n_iter']}, labels "
        f"equal {same:.6f}, centers max |diff| {center_diff:.3g} (max |center| "
        f"{center_scale:.3g}), objective rel. diff "
        f"{headline['objective_rel_diff_dask_numpy']:+.3g}"
    )
    print(
        f"dask fit passes {ours_dk['n_passes']}; per iteration: "
        f"{_fmt_passes(ours_dk['passes_per_iter'])}; per warm iteration (log): "
        f"{_fmt_passes(ours_dk['passes_per_iter_warm'])}"
    )
    print(
        f"numpy fit passes {ours_np['n_passes']}; per warm iteration (log): "
        f"{_fmt_passes(ours_np['passes_per_iter_warm'])}"
    )
    for r in (ours_np, ours_dk):
        print(
            f"{r['method']}: sizes exact {r['sizes_exact']}, certificate {r['certificate']}, "
            f"first iteration done after {r.get('time_to_first_iter', float('nan')):.3f} s, "
            f"final step + labels {r.get('time_after_last_iter', float('nan')):.3f} s"
        )
    print(f"numpy (ours) / sklearn per iteration: {headline['ratio_numpy_sklearn_per_iter']:.2f}")
    if ENTROPIC in by:
        ent = by[ENTROPIC]
        headline["ratio_sinkhorn_exact_dask"] = ent["time_fit"] / ours_dk["time_fit"]
        headline["sinkhorn_rounds_per_iter"] = ent["passes_per_iter"]["rounds"]
        print(
            f"E-BalLOT (sinkhorn, Newton) on the cluster: fit {ent['time_fit']:.2f} s, "
            f"{headline['ratio_sinkhorn_exact_dask']:.2f}x the exact fit (target <= "
            f"{ENTROPIC_TARGET:g}: "
            f"{'met' if headline['ratio_sinkhorn_exact_dask'] <= ENTROPIC_TARGET else 'NOT met'}"
            f"), {headline['sinkhorn_rounds_per_iter']:.1f} rounds per iteration, sizes "
            f"{ent['size_stats']['min']}..{ent['size_stats']['max']}"
        )
    if DASKML in by:
        dml = by[DASKML]
        headline["ratio_daskml_sklearn_per_iter"] = dml["time_per_iter"] / ref["time_per_iter"]
        headline["ratio_dask_daskml_per_iter"] = ours_dk["time_per_iter"] / dml["time_per_iter"]
        headline["ratio_dask_daskml_warm"] = (
            ours_dk["time_per_iter_warm"] / dml["time_per_iter_warm"]
        )
        headline["labels_equal_fraction_daskml_sklearn"] = float(
            np.mean(dml["_labels"] == ref["_labels"])
        )
        headline["daskml_inertia_over_objective"] = dml["inertia_reported"] / dml["cost_at_centers"]
        if abs(headline["daskml_inertia_over_objective"] - 1) > 0.01:
            print(
                f"note: dask-ml's inertia_ ({dml['inertia_reported']:.6g}) is not the sum of "
                f"squared distances to its centers ({dml['cost_at_centers']:.6g}): its final "
                "relabelling sums unsquared Euclidean distances; the objective column is ours"
            )
        print(
            f"dask-ml / sklearn per iteration: {headline['ratio_daskml_sklearn_per_iter']:.2f}; "
            f"ours (dask) / dask-ml per iteration: {headline['ratio_dask_daskml_per_iter']:.2f} "
            f"(warm {headline['ratio_dask_daskml_warm']:.2f}); dask-ml vs sklearn labels equal "
            f"{headline['labels_equal_fraction_daskml_sklearn']:.6f}"
        )
    print()
    return headline


def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the private entries (labels, centers)."""
    return [{key: v for key, v in r.items() if not key.startswith("_")} for r in rows]


def main() -> None:
    """Run the benchmark, print the tables, write the JSON."""
    args = parse_args()
    info = dask_machine_info()
    print_header(f"{NAME}: balanced k-means on a Dask cluster vs in process", info, args)
    X = make_data(args.n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    X = X.astype(np.float32)
    if args.init == "random":  # random data rows: on separated blobs they split some blobs
        init = random_rows(X, args.k, seed=args.seed)
    else:
        init, _ = kmeans_plusplus(X, args.k, random_state=args.seed)
    mean_var = float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    print(
        f"data    : n={args.n} d={args.d} k={args.k} float32 {args.data} "
        f"({X.nbytes / 2**20:.0f} MiB), separation {args.separation:g}, init: {args.init} "
        "computed once"
    )
    start = time.perf_counter()
    warm_up(args.d, args.k)
    _warm_worker(args.d, args.k, args.seed)
    print(f"warm-up (numba compilation, in process): {time.perf_counter() - start:.2f} s")

    apply_engine_config(args)
    results: dict[str, Any] = {}
    with local_cluster(args.workers, args.memory_limit) as client:
        workers = worker_report(client)
        seconds = warm_up_cluster(client, args.d, args.k, args.seed)
        print(f"warm-up (numba compilation, per worker): {seconds}")
        Xd, placement = scatter_rows(client, X, args.chunk_rows)
        print(
            f"dask X  : chunks of {args.chunk_rows} rows ({len(Xd.chunks[0])} chunks), "
            f"scattered and persisted; chunks per worker {placement}"
        )
        from ballot_dask.dask_blocks import DaskBlocks

        rules = DaskBlocks(Xd, args.k)
        print(
            f"engine  : persist X {rules.persist_x}, persist costs {rules.persist_costs} "
            f"(costs {rules.cost_bytes / 2**20:.0f} MiB, budget {rules.budget / 2**30:.2f} GiB "
            f"= ballot.memory-fraction {dask.config.get('ballot.memory-fraction')} of the "
            "workers' memory limits)"
        )
        del rules
        # a first small fit of each distributed method on the cluster
        start = time.perf_counter()
        small = min(args.n, 4 * max(1000, 50 * args.k))
        Xs, _ = scatter_rows(client, X[:small], max(1, small // 4))
        BalancedKMeans(args.k, init=init, max_iter=3, tol=0).fit(Xs)
        if not args.no_dask_ml:
            from dask_ml.cluster import KMeans as DaskKMeans

            DaskKMeans(n_clusters=args.k, init=np.array(init), max_iter=2, tol=0).fit(Xs)
        KMeans(args.k, init=init, n_init=1, max_iter=2, algorithm="lloyd").fit(X[:small])
        del Xs
        print(f"warm-up (first small fits): {time.perf_counter() - start:.2f} s\n")

        rows, headline = run_comparison(
            f"max_iter={args.iters}, tol=0", args, X, Xd, init, args.iters, 0.0, mean_var
        )
        results["rows"], results["headline"] = public(rows), headline
        if args.tol > 0:
            rows_tol, headline_tol = run_comparison(
                f"max_iter={args.tol_max_iter}, tol={args.tol:g} (relative to the mean variance)",
                args,
                X,
                Xd,
                init,
                args.tol_max_iter,
                args.tol,
                mean_var,
            )
            results["rows_tol"], results["headline_tol"] = public(rows_tol), headline_tol
        results["cluster"] = {
            "workers": workers,
            "chunks_per_worker": placement,
            "chunk_rows": args.chunk_rows,
        }
        del Xd
    print("cluster closed")
    path = write_results(NAME, args, info, results)
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
