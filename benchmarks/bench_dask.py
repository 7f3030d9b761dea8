"""Balanced k-means on a 2-process Dask cluster vs the in-process NumPy path (and dask-ml, sklearn).

The same float32 blobs (n = 10^6, d = 16, k = 16 by default) and the same k-means++ centers
``C0`` (computed once, untimed) for four fits of ``max_iter=T``, ``tol=0`` iterations:

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
NumPy wall time ``<= 1.5``.  A second table repeats the comparison with ``tol=1e-4`` (relative
to the mean feature variance, as scikit-learn; dask-ml's ``tol`` is absolute, so it gets
``1e-4 * mean variance``) and ``max_iter=300``.
"""

from __future__ import annotations

import ast
import gc
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import dask
import dask.array as da
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
from distributed import Client, LocalCluster, futures_of, wait
from sklearn.base import clone
from sklearn.cluster import KMeans, kmeans_plusplus

from ballot_dask import BalancedKMeans

NAME = "bench_dask"
RATIO_TARGET = 1.5
NUMPY = "ballot_dask numpy"
DASK = "ballot_dask dask"
DASKML = "dask-ml KMeans"
SKLEARN = "sklearn KMeans"
_DASK_PACKAGES = (("dask", "dask"), ("distributed", "distributed"), ("dask-ml", "dask-ml"))


# --------------------------------------------------------------------------- shared helpers
# (bench_scaling.py imports these)


def add_quick_flag(parser: Any) -> None:
    """``--quick``: the same as ``--small`` (smoke-test sizes, ``*.small.json`` output)."""
    parser.add_argument("--quick", dest="small", action="store_true", help="alias of --small")


def add_cluster_args(parser: Any) -> None:
    """Options of the ``LocalCluster``."""
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--memory-limit",
        default="auto",
        help="memory limit per worker ('auto': machine memory / workers; 'none': no limit)",
    )
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=None,
        help="set ballot.memory-fraction (share of the workers' memory the engine may persist "
        "into; default: the library's, 0.25)",
    )


def apply_engine_config(args: Any) -> None:
    """``--memory-fraction`` into ``dask.config`` (read by the engine in this process)."""
    if args.memory_fraction is not None:
        dask.config.set({"ballot.memory-fraction": args.memory_fraction})


def dask_machine_info(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """``_common.machine_info()`` with the versions of the Dask packages added."""
    info = machine_info()
    for dist, label in (*_DASK_PACKAGES, *extra):
        try:
            info["versions"][label] = version(dist)
        except PackageNotFoundError:
            info["versions"][label] = "missing"
    return info


@contextmanager
def local_cluster(workers: int, memory_limit: str) -> Iterator[Client]:
    """A process-based ``LocalCluster`` (one thread per worker) and its client, the default
    scheduler inside the ``with`` block; closed on exit."""
    limit: Any = 0 if memory_limit.lower() in ("none", "0") else memory_limit
    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        print(
            f"cluster : {workers} worker processes x 1 thread, started in "
            f"{time.perf_counter() - start:.1f} s"
        )
        yield client


def _worker_facts() -> dict[str, Any]:
    """What a worker runs with (executed on the workers)."""
    import numba

    import ballot_dask

    return {
        "pid": os.getpid(),
        "ballot_dask_path": os.path.dirname(os.path.abspath(ballot_dask.__file__)),
        "numba_threads": numba.get_num_threads(),
        "thread_env": {
            var: os.environ[var]
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if var in os.environ
        },
    }


def worker_report(client: Client) -> dict[str, Any]:
    """Per-worker facts (memory limit, pid, thread settings, package path), printed."""
    facts = client.run(_worker_facts)
    info = client.scheduler_info(n_workers=-1)["workers"]
    report = {}
    for address, fact in sorted(facts.items()):
        limit = info.get(address, {}).get("memory_limit")
        report[address] = {**fact, "memory_limit": limit}
        print(
            f"worker  : {address} pid {fact['pid']}, memory limit "
            f"{limit / 2**30 if limit else float('nan'):.2f} GiB, numba threads "
            f"{fact['numba_threads']}, {fact['thread_env']}, ballot_dask from "
            f"{fact['ballot_dask_path']}"
        )
    return report


def _warm_worker(d: int, k: int, seed: int) -> float:
    """Compile the numba kernels (float32 and float64) inside a worker process."""
    start = time.perf_counter()
    X = make_data(50 * k, d, k, "blobs", seed=seed, separation=4.0)
    for dtype in (np.float32, np.float64):
        Xt = X.astype(dtype)
        BalancedKMeans(k, init=Xt[:k].copy(), max_iter=3, tol=0).fit(Xt)
    try:  # dask-ml's center update is a numba function compiled on first use
        from dask_ml.cluster.k_means import _centers_dense

        for dtype in (np.float32, np.float64):
            _centers_dense(X.astype(dtype), np.zeros(len(X), dtype=np.int32), k)
    except ImportError:
        pass
    return time.perf_counter() - start


def warm_up_cluster(client: Client, d: int, k: int, seed: int) -> dict[str, float]:
    """Run :func:`_warm_worker` once on every worker (as a task pinned to it)."""
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    futures = [
        client.submit(_warm_worker, d, k, seed, workers=[w], allow_other_workers=False, pure=False)
        for w in workers
    ]
    return dict(zip(workers, client.gather(futures), strict=True))


def scatter_rows(client: Client, X: np.ndarray, rows: int) -> tuple[da.Array, dict[str, int]]:
    """``X`` as a dask array whose row chunks live on the workers (scattered round-robin and
    persisted), and the number of chunks each worker holds."""
    starts = range(0, X.shape[0], rows)
    blocks = [np.ascontiguousarray(X[s : s + rows]) for s in starts]
    futures = client.scatter(blocks)
    parts = [
        da.from_delayed(f, shape=b.shape, dtype=b.dtype, meta=b[:0])
        for f, b in zip(futures, blocks, strict=True)
    ]
    Xd = da.concatenate(parts).persist()
    wait(Xd)
    del futures, parts, blocks
    placement: dict[str, int] = {}
    for holders in client.who_has(Xd).values():
        for w in holders:
            placement[w] = placement.get(w, 0) + 1
    return Xd, placement


class LogClock(logging.Handler):
    """Records ``time.perf_counter()`` at every log message matching ``pattern``, whose first
    group is the iteration number (and whose optional ``passes`` group is a dict)."""

    def __init__(self, logger_name: str, pattern: str) -> None:
        super().__init__(logging.INFO)
        self.logger_name = logger_name
        self.pattern = re.compile(pattern)
        self.marks: list[tuple[float, int, dict[str, int] | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self.pattern.match(record.getMessage())
        if match is None:
            return
        passes = None
        if "passes" in self.pattern.groupindex:
            passes = ast.literal_eval(match.group("passes"))
        self.marks.append((time.perf_counter(), int(match.group(1)), passes))

    def reset(self) -> None:
        self.marks = []

    @contextmanager
    def installed(self) -> Iterator[LogClock]:
        """Attach to the logger (at INFO level) for the duration of the block."""
        logger = logging.getLogger(self.logger_name)
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Seconds to the first message, per iteration between the first and last messages
        (the warm iterations), after the last one; passes per warm iteration."""
        out: dict[str, Any] = {"messages": len(self.marks)}
        if not self.marks:
            return out
        (t0, i0, p0), (t1, i1, p1) = self.marks[0], self.marks[-1]
        out["to_first"] = t0 - start
        out["after_last"] = end - t1
        out["iterations_logged"] = i1 - i0 + 1
        if i1 > i0:
            out["per_iter_warm"] = (t1 - t0) / (i1 - i0)
            if p0 is not None and p1 is not None:
                out["passes_per_iter_warm"] = {key: (p1[key] - p0[key]) / (i1 - i0) for key in p1}
        return out


def ballot_clock() -> LogClock:
    """Clock on ``ballot_dask``'s "iteration i: ... passes {...}" messages."""
    return LogClock("ballot_dask", r"^iteration (\d+): .*passes (?P<passes>\{.*\})\s*$")


def median_of(values: list[float]) -> float:
    """Median of the finite values (``nan`` when there are none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def timed_fits(
    factory: Callable[[], Any],
    X: Any,
    repeats: int,
    clock: LogClock | None = None,
    progress: str | None = None,
) -> tuple[float, list[float], Any, list[dict[str, Any]]]:
    """``time_call`` of ``factory().fit(X)`` (waiting for persisted dask ``labels_``), with the
    clock's summary of every repeat; with ``progress``, a line per fit."""
    summaries: list[dict[str, Any]] = []

    def run() -> Any:
        if clock is not None:
            clock.reset()
        start = time.perf_counter()
        est = factory().fit(X)
        labels = getattr(est, "labels_", None)
        if labels is not None and futures_of(labels):
            wait(futures_of(labels))
        end = time.perf_counter()
        if clock is not None:
            summaries.append(clock.summary(start, end))
        if progress is not None:
            print(f"    {progress}: fit in {end - start:.2f} s", flush=True)
        return est

    median, times, est = time_call(run, repeats)
    return median, times, est, summaries


# --------------------------------------------------------------------------- this benchmark


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
    add_data_args(parser, data="blobs", separation=4.0)
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

    out: dict[str, tuple[Callable[[], Any], bool]] = {NUMPY: (ours, False), DASK: (ours, True)}
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
    if name in (NUMPY, DASK):
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
    init, _ = kmeans_plusplus(X, args.k, random_state=args.seed)
    mean_var = float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    print(
        f"data    : n={args.n} d={args.d} k={args.k} float32 {args.data} "
        f"({X.nbytes / 2**20:.0f} MiB), init: k-means++ computed once"
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
