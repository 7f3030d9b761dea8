"""Exact fits of hard data streamed from Zarr on a 2-process Dask cluster, against in memory.

The data: ``bench_scaling.py``'s Zarr store of separated Gaussian blobs (``--n`` rows, d = 16
float32, k = 16 blobs whose means are ``--separation`` within-blob standard deviations apart;
written by the workers, reused when it exists).  For every start in ``--starts`` (k data rows
drawn at random with that seed: several centers in one blob, blobs with none, the hard start
of a balanced Lloyd fit), ``BalancedKMeans(k, init=rows, max_iter=--iters, tol=0)`` is fitted:

- in memory, on the NumPy array (the reference: its labels, centers, passes);
- on the cluster, X streamed from the store on every pass (``ballot.persist: false``: the
  path of data larger than the cluster's memory), timed.

Each row prints the streamed fit's time, its passes over X (and the recentring passes over
the costs, ``cost``), its rounds, whether its labels and centers equal the in-memory fit's,
and its certificate; a fit that stops (the band error: the band it needs exceeds
``ballot.band-memory``) is reported with its message.
"""

from __future__ import annotations

import time
from typing import Any

import dask
import dask.array as da
import numpy as np
from _common import (
    add_data_args,
    base_parser,
    certificate_summary,
    format_table,
    parse_with_small,
    print_header,
    write_results,
)
from _dask_common import (
    apply_engine_config,
    dask_machine_info,
    local_cluster,
    warm_up_cluster,
    worker_report,
)
from bench_scaling import add_store_args, ensure_store, generator_spec, parse_size

from ballot_dask import BalancedKMeans

NAME = "bench_hard_stream"


def parse_args() -> Any:
    """Command-line options (the store's are ``bench_scaling.py``'s)."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=parse_size, default=10**7, help="points (1e7 notation)")
    parser.add_argument("--k", type=int, default=16, help="clusters (and blobs)")
    parser.add_argument("--d", type=int, default=16, help="features")
    parser.add_argument("--iters", type=int, default=5, help="Lloyd iterations (max_iter)")
    parser.add_argument(
        "--starts", type=int, nargs="+", default=[1, 2, 3], help="seeds of the random starts"
    )
    add_store_args(parser)
    add_data_args(parser, data="blobs", separation=17.0)
    args = parse_with_small(parser, n=400_000, chunk_rows=50_000, starts=[1])
    args.repeats = 1  # (one fit per start: the starts are the repeats)
    return args


def fit(X: Any, init: np.ndarray, args: Any) -> tuple[BalancedKMeans | None, float, str]:
    """The fit from ``init``, its seconds, and the band error's message if it stopped."""
    start = time.perf_counter()
    try:
        km = BalancedKMeans(args.k, init=init, max_iter=args.iters, tol=0, random_state=0).fit(X)
    except RuntimeError as error:
        return None, time.perf_counter() - start, str(error)
    return km, time.perf_counter() - start, ""


def measure(seed: int, Xd: da.Array, X: np.ndarray, args: Any) -> dict[str, Any]:
    """Both fits from the start of ``seed``."""
    rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], args.k, replace=False))
    init = X[rows].astype(np.float64)
    ref, t_ref, error_ref = fit(X, init, args)
    with dask.config.set({"ballot.persist": False}):
        km, t_dask, error = fit(Xd, init, args)
    row: dict[str, Any] = {"start": seed, "time_numpy": t_ref, "time_streamed": t_dask}
    row["error_numpy"], row["error_streamed"] = error_ref, error
    if ref is not None:
        row["numpy_passes"] = dict(ref.n_passes_)
        row["numpy_iterations"] = int(ref.n_iter_)
    if km is not None:
        row["passes"] = dict(km.n_passes_)
        row["iterations"] = int(km.n_iter_)
        row["certificate"] = certificate_summary(km.certificate_)
        sizes = np.bincount(np.asarray(km.labels_), minlength=args.k)
        row["sizes"] = [int(sizes.min()), int(sizes.max())]
        if ref is not None:
            row["same_labels"] = bool(np.array_equal(np.asarray(km.labels_), ref.labels_))
            row["center_diff"] = float(np.abs(km.cluster_centers_ - ref.cluster_centers_).max())
    return row


def report(rows: list[dict[str, Any]]) -> None:
    """The table, and each fit that stopped."""
    out = []
    for r in rows:
        p = r.get("passes", {})
        out.append(
            [
                r["start"],
                f"{r['time_numpy']:.2f}",
                f"{r['time_streamed']:.2f}" if "passes" in r else "stopped",
                r.get("iterations", ""),
                f"{p.get('x', '')}/{p.get('cost', '')}/{p.get('rounds', '')}",
                r.get("same_labels", ""),
                r.get("center_diff", ""),
                (r.get("certificate") or {}).get("optimal", ""),
                r.get("sizes", ""),
            ]
        )
    headers = [
        "start",
        "numpy fit [s]",
        "streamed fit [s]",
        "n_iter",
        "passes x/cost/rounds",
        "same labels",
        "max center diff",
        "certified",
        "sizes",
    ]
    print(format_table(headers, out))
    for r in rows:
        for key in ("error_numpy", "error_streamed"):
            if r[key]:
                print(f"start {r['start']}: {key.split('_')[1]} fit stopped: {r[key]}")


def main() -> None:
    """Write or reuse the store, run the fits, print the table, write the JSON."""
    args = parse_args()
    args.sizes = [args.n]
    info = dask_machine_info(extra=(("zarr", "zarr"),))
    print_header(f"{NAME}: exact fits of hard data streamed from Zarr", info, args)
    spec = generator_spec(args)
    apply_engine_config(args)
    rows: list[dict[str, Any]] = []
    with local_cluster(args.workers, args.memory_limit) as client:
        workers = worker_report(client)
        path, action, seconds = ensure_store(client, args, args.n, spec)
        print(f"store   : {path} {action}" + (f" in {seconds:.1f} s" if seconds else ""))
        warmed = warm_up_cluster(client, args.d, args.k, 0)
        print(f"warm-up (numba compilation, per worker): {warmed}")
        Xd = da.from_zarr(str(path))
        X = Xd.compute()
        print(
            f"data    : n={args.n} d={args.d} k={args.k} float32 blobs, separation "
            f"{args.separation:g}; starts: {args.k} random data rows, seeds {args.starts}"
        )
        BalancedKMeans(args.k, init=X[: args.k].astype(np.float64), max_iter=2).fit(X[:50_000])
        print()
        for seed in args.starts:
            row = measure(seed, Xd, X, args)
            rows.append(row)
            print(f"  start {seed}: streamed fit {row['time_streamed']:.1f} s", flush=True)
        print()
        report(rows)
    print("cluster closed")
    out = write_results(NAME, args, info, {"rows": rows, "cluster": {"workers": workers}})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
