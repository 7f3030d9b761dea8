"""Time per balanced Lloyd iteration vs n on a 2-process Dask cluster, data read from Zarr.

For every n in ``--sizes`` (default 10^5, 10^6, 10^7, 10^8), d = 16 float32, k = 16: the data
are a Zarr array on disk (``--store DIR``), written chunk by chunk by the cluster's workers
(each chunk generated from seeded per-unit random generators, so the whole array is never in
memory and the first rows are the same for every n), stored uncompressed (``compressors=None``:
Gaussian float32 does not compress), and opened with ``dask.array.from_zarr``.  An existing
store of the right shape, dtype, chunks and generator parameters (recorded in its attributes,
with a ``complete`` flag set after the last chunk) is reused.

Each fit is ``BalancedKMeans(k, init=C0, tol=0, max_iter=M)`` (M = 5) on a
``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``, with the same
k-means++ centers ``C0`` for every n (computed once from the generator's first rows).  The
whole fit is timed (reading X, persisting it when it fits, the iterations, the final
assignment step, the labels); per iteration = fit time / ``n_iter_``; "warm" per iteration =
time between the log messages "iteration 1" and "iteration M" of the ``ballot_dask`` logger
over M - 1.  Whether X and the cost blocks are kept in the cluster's memory ("persisted") or
rebuilt from X on every pass ("streamed") is read off ``ballot_dask.dask_blocks.DaskBlocks``'s
own rule (``n*k*4`` bytes vs ``ballot.memory-fraction`` of the workers' memory limits).
Beside each row, the read floor: ``da.from_zarr(path).sum().compute()`` on the same cluster (the
least a pass over the store costs; best of two reads, taken just before the fits, so the page
cache is as the fits find it), and a warm iteration's time over it (target for a streamed X:
<= 1.5).  Headline: the least-squares slope of log(time per iteration) vs log(n) (target
<= 1.1).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from _common import (
    add_data_args,
    base_parser,
    certificate_summary,
    format_table,
    parse_with_small,
    print_header,
    warm_up,
    write_results,
)
from _dask_common import (
    _warm_worker,
    add_cluster_args,
    add_quick_flag,
    apply_engine_config,
    ballot_clock,
    dask_machine_info,
    local_cluster,
    median_of,
    timed_fits,
    warm_up_cluster,
    worker_report,
)
from distributed import Client
from sklearn.cluster import kmeans_plusplus

from ballot_dask import BalancedKMeans
from ballot_dask.dask_blocks import DaskBlocks

NAME = "bench_scaling"
SLOPE_TARGET = 1.1
FLOOR_TARGET = 1.5  # a streamed warm iteration over one plain read of the store
FLOOR_READS = 2
UNIT_ROWS = 10_000  # rows drawn from one seeded generator (independent of the chunking)
STORE_FORMAT = 1  # bump when the generator changes, so old stores are rewritten


def parse_size(text: str) -> int:
    """``1e6`` or ``1000000`` as an int."""
    value = float(text)
    if value < 1 or value != int(value):
        raise ValueError(f"not a positive whole number: {text}")
    return int(value)


def add_store_args(parser: Any) -> None:
    """The options of the Zarr stores (their chunks and folder) and of the cluster."""
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per chunk, at most")
    parser.add_argument(
        "--min-chunks", type=int, default=4, help="chunks per array, at least (parallelism)"
    )
    add_cluster_args(parser)
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("/tmp/ballot_dask_bench_store"),
        help="folder of the Zarr stores (one per n)",
    )
    parser.add_argument("--rewrite", action="store_true", help="rewrite existing stores")


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    add_quick_flag(parser)
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[10**5, 10**6, 10**7, 10**8],
        help="numbers of points n (1e6 notation accepted)",
    )
    parser.add_argument("--k", type=int, default=16, help="clusters")
    parser.add_argument("--d", type=int, default=16, help="features")
    parser.add_argument("--iters", type=int, default=5, help="Lloyd iterations M (max_iter)")
    add_store_args(parser)
    parser.add_argument(
        "--init-sample", type=int, default=65_536, help="rows the k-means++ init is drawn from"
    )
    add_data_args(parser, data="blobs", separation=4.0)
    args = parse_with_small(parser, sizes=[10**5, 3 * 10**5, 10**6])
    if args.iters < 2:
        raise SystemExit("--iters must be at least 2")
    args.sizes = sorted(set(args.sizes))
    return args


# --------------------------------------------------------------------------- data on disk


def generator_spec(args: Any) -> dict[str, Any]:
    """Everything the data depend on (stored in the Zarr attributes)."""
    spec = {
        "format": STORE_FORMAT,
        "kind": args.data,
        "n_features": args.d,
        "n_clusters": args.k,
        "seed": args.seed,
        "unit_rows": UNIT_ROWS,
        "dtype": "float32",
    }
    if args.data == "blobs":
        spec["separation"] = float(args.separation)
    return spec


def generate_rows(start: int, stop: int, spec: dict[str, Any]) -> np.ndarray:
    """Rows ``start:stop`` of the data set, float32: unit ``u`` (rows ``u*UNIT_ROWS`` to
    ``(u+1)*UNIT_ROWS``) comes from ``default_rng([seed, u])``; the blob means from
    ``default_rng(seed)`` (as ``_common.make_data``: unit-variance blobs, equal weights)."""
    d, k, seed, unit = spec["n_features"], spec["n_clusters"], spec["seed"], spec["unit_rows"]
    means = None
    if spec["kind"] == "blobs":
        scale = spec["separation"] / math.sqrt(2.0 * d)
        means = np.random.default_rng(seed).normal(scale=scale, size=(k, d)).astype(np.float32)
    out = np.empty((stop - start, d), dtype=np.float32)
    for u in range(start // unit, -(-stop // unit)):
        rng = np.random.default_rng([seed, u])
        if means is None:
            block = rng.random((unit, d), dtype=np.float32)
        else:
            component = rng.integers(k, size=unit)
            block = rng.standard_normal((unit, d), dtype=np.float32)
            block += means[component]
        lo, hi = max(start, u * unit), min(stop, (u + 1) * unit)
        out[lo - start : hi - start] = block[lo - u * unit : hi - u * unit]
    return out


def chunk_rows_for(n: int, args: Any) -> int:
    """Rows per chunk: at most ``--chunk-rows``, at least ``--min-chunks`` chunks."""
    chunks = max(args.min_chunks, -(-n // args.chunk_rows))
    return max(1, -(-n // chunks))


def store_path(args: Any, n: int) -> Path:
    """The Zarr store of size ``n``."""
    name = f"{args.data}-n{n}-d{args.d}-k{args.k}-seed{args.seed}"
    if args.data == "blobs":
        name += f"-sep{args.separation:g}"
    return args.store / f"{name}.zarr"


def store_mismatch(path: Path, n: int, rows: int, spec: dict[str, Any]) -> str | None:
    """Why the store at ``path`` cannot be reused (``None``: it can)."""
    if not path.exists():
        return "missing"
    try:
        arr = zarr.open_array(str(path), mode="r")
    except Exception as exc:  # not a Zarr array
        return f"unreadable ({type(exc).__name__}: {exc})"
    wanted = {"shape": (n, spec["n_features"]), "dtype": np.dtype(np.float32)}
    wanted["chunks"] = (rows, spec["n_features"])
    found = {"shape": tuple(arr.shape), "dtype": np.dtype(arr.dtype), "chunks": tuple(arr.chunks)}
    for key, value in wanted.items():
        if found[key] != value:
            return f"{key} {found[key]} != {value}"
    attrs = dict(arr.attrs)
    if attrs.get("generator") != spec:
        return f"generator {attrs.get('generator')} != {spec}"
    if attrs.get("complete") is not True:
        return "incomplete (an earlier write did not finish)"
    return None


def _write_chunk(index: int, path: str, rows: int, n: int, spec: dict[str, Any]) -> int:
    """Generate and write chunk ``index`` (runs on a worker; chunk-aligned, so writes of
    different chunks never touch the same Zarr chunk)."""
    start, stop = index * rows, min(n, (index + 1) * rows)
    arr = zarr.open_array(path, mode="r+")
    arr[start:stop] = generate_rows(start, stop, spec)
    return stop - start


def ensure_store(
    client: Client, args: Any, n: int, spec: dict[str, Any]
) -> tuple[Path, str, float]:
    """The store of size ``n``: reused when it matches, else written by the workers.
    Returns (path, what was done, seconds spent writing)."""
    rows = chunk_rows_for(n, args)
    path = store_path(args, n)
    reason = "--rewrite" if args.rewrite else store_mismatch(path, n, rows, spec)
    if reason is None:
        return path, "reused", 0.0
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    zarr.create_array(
        store=str(path),
        shape=(n, args.d),
        chunks=(rows, args.d),
        dtype="float32",
        compressors=None,
        fill_value=0.0,
        overwrite=True,
        attributes={"generator": spec, "complete": False},
    )
    chunks = -(-n // rows)
    futures = client.map(
        _write_chunk, range(chunks), path=str(path), rows=rows, n=n, spec=spec, pure=False
    )
    written = sum(client.gather(futures))
    if written != n:
        raise RuntimeError(f"wrote {written} rows to {path}, expected {n}")
    zarr.open_array(str(path), mode="r+").attrs.update({"complete": True})
    return path, f"written ({reason})", time.perf_counter() - start


# --------------------------------------------------------------------------- measurement


def storage_mode(Xd: da.Array, k: int) -> dict[str, Any]:
    """What the Dask engine will keep in the cluster's memory for this X (its own rule)."""
    rules = DaskBlocks(Xd, k)
    n, d = Xd.shape
    if rules.persist_x and rules.persist_costs:
        mode = "persisted"
    elif rules.persist_costs:
        mode = "costs persisted, X streamed"
    else:
        mode = "streamed"
    return {
        "mode": mode,
        "persist_x": bool(rules.persist_x),
        "persist_costs": bool(rules.persist_costs),
        "cost_bytes": int(rules.cost_bytes),
        "x_bytes": int(n * d * Xd.dtype.itemsize),
        "budget_bytes": float(rules.budget),
        "memory_fraction": float(dask.config.get("ballot.memory-fraction")),
    }


def read_floor(Xd: da.Array) -> list[float]:
    """Seconds of ``FLOOR_READS`` plain reads of the store, ``Xd.sum()`` on the active cluster
    (``Xd = da.from_zarr(path)``: each read decodes every chunk and sums it on a worker)."""
    times = []
    for _ in range(FLOOR_READS):
        start = time.perf_counter()
        Xd.sum().compute()
        times.append(time.perf_counter() - start)
    return times


def measure(n: int, path: Path, init: np.ndarray, args: Any) -> dict[str, Any]:
    """Time the read floor, then ``--repeats`` fits, on the store of size ``n``."""
    Xd = da.from_zarr(str(path))
    storage = storage_mode(Xd, args.k)
    floor_times = read_floor(Xd)
    clock = ballot_clock()

    def factory() -> BalancedKMeans:
        return BalancedKMeans(args.k, init=init, max_iter=args.iters, tol=0, random_state=args.seed)

    with clock.installed():
        t, times, est, summaries = timed_fits(
            factory, Xd, args.repeats, clock, progress=f"n={n} ({storage['mode']})"
        )
    n_iter = int(est.n_iter_)
    warm_passes = [s["passes_per_iter_warm"] for s in summaries if "passes_per_iter_warm" in s]
    sizes = np.asarray(est.sizes_)
    warm = median_of([s.get("per_iter_warm", math.nan) for s in summaries])
    row = {
        "n": n,
        "chunks": len(Xd.chunks[0]),
        "chunk_rows": int(Xd.chunks[0][0]),
        "storage": storage,
        "time_fit": t,
        "times_fit": times,
        "n_iter": n_iter,
        "time_per_iter": t / n_iter,
        "time_per_iter_warm": warm,
        "time_to_first_iter": median_of([s.get("to_first", math.nan) for s in summaries]),
        "time_after_last_iter": median_of([s.get("after_last", math.nan) for s in summaries]),
        "read_floor": min(floor_times),
        "read_floor_times": floor_times,
        "warm_over_floor": warm / min(floor_times),
        "n_passes": dict(est.n_passes_),
        "passes_per_iter": {key: v / n_iter for key, v in est.n_passes_.items()},
        "passes_per_iter_warm": warm_passes[-1] if warm_passes else None,
        "log_clock": summaries,
        "inertia_reported": float(est.inertia_),
        "objective_history": [float(v) for v in est.objective_history_],
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "certificate": certificate_summary(est.certificate_),
    }
    del est
    return row


def slope(ns: list[int], times: list[float]) -> float:
    """Least-squares slope of log(time) vs log(n) (``nan`` with fewer than two points)."""
    pts = [(n, t) for n, t in zip(ns, times, strict=True) if math.isfinite(t) and t > 0]
    if len(pts) < 2:
        return math.nan
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def _passes(p: dict[str, float] | None) -> str:
    return "n/a" if not p else f"{p['x']:.2f}/{p['cost']:.2f}/{p['rounds']:.2f}"


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the table and the slopes; return the headline figures."""
    headers = [
        "n",
        "chunks",
        "X + costs",
        "fit [s]",
        "n_iter",
        "s/iter",
        "s/iter warm",
        "read floor [s]",
        "warm / floor",
        "ns/row/iter",
        "local slope",
        "passes/iter x/cost/rounds",
        "warm passes/iter",
        "sizes",
    ]
    table_rows = []
    previous = None
    for r in rows:
        local = math.nan
        if previous is not None:
            local = math.log(r["time_per_iter"] / previous["time_per_iter"]) / math.log(
                r["n"] / previous["n"]
            )
        table_rows.append(
            [
                r["n"],
                f"{r['chunks']} x {r['chunk_rows']}",
                r["storage"]["mode"],
                r["time_fit"],
                r["n_iter"],
                r["time_per_iter"],
                r["time_per_iter_warm"],
                r["read_floor"],
                r["warm_over_floor"],
                1e9 * r["time_per_iter"] / r["n"],
                local,
                _passes(r["passes_per_iter"]),
                _passes(r["passes_per_iter_warm"]),
                f"{r['size_min']}..{r['size_max']}",
            ]
        )
        r["local_slope"] = local
        previous = r
    print(format_table(headers, table_rows))
    ns = [r["n"] for r in rows]
    headline = {
        "slope_per_iter": slope(ns, [r["time_per_iter"] for r in rows]),
        "slope_per_iter_warm": slope(ns, [r["time_per_iter_warm"] for r in rows]),
        "sizes": ns,
        "modes": [r["storage"]["mode"] for r in rows],
    }
    headline["target_met"] = bool(headline["slope_per_iter"] <= SLOPE_TARGET)
    streamed = [r for r in rows if r["storage"]["mode"] != "persisted"]
    headline["warm_over_floor"] = {str(r["n"]): r["warm_over_floor"] for r in rows}
    headline["streamed_floor_target_met"] = (
        bool(all(r["warm_over_floor"] <= FLOOR_TARGET for r in streamed)) if streamed else None
    )
    print()
    print(
        f"log-log slope of time per iteration vs n over {ns}: "
        f"{headline['slope_per_iter']:.3f} (target <= {SLOPE_TARGET:g}: "
        f"{'met' if headline['target_met'] else 'NOT met'}); warm iterations only: "
        f"{headline['slope_per_iter_warm']:.3f}"
    )
    if streamed:
        met = headline["streamed_floor_target_met"]
        print(
            "streamed warm iteration over one plain read of the store: "
            + ", ".join(f"n={r['n']}: {r['warm_over_floor']:.2f}x" for r in streamed)
            + f" (target <= {FLOOR_TARGET:g}: {'met' if met else 'NOT met'})"
        )
    for r in rows:
        cert = r["certificate"] or {}
        s = r["storage"]
        print(
            f"n={r['n']}: {s['mode']} (costs {s['cost_bytes'] / 2**20:.0f} MiB + X "
            f"{s['x_bytes'] / 2**20:.0f} MiB vs budget {s['budget_bytes'] / 2**30:.2f} GiB = "
            f"{s['memory_fraction']:g} x memory limits), "
            f"first iteration done after {r['time_to_first_iter']:.3f} s, final step + labels "
            f"{r['time_after_last_iter']:.3f} s, plain reads "
            f"{[round(t, 3) for t in r['read_floor_times']]} s, passes {r['n_passes']}, "
            f"certificate optimal {cert.get('optimal')}, "
            f"times {[round(t, 3) for t in r['times_fit']]}"
        )
    return headline


def main() -> None:
    """Write or reuse the stores, run the fits, print the table, write the JSON."""
    args = parse_args()
    info = dask_machine_info(extra=(("zarr", "zarr"),))
    print_header(f"{NAME}: time per balanced Lloyd iteration vs n, Dask + Zarr", info, args)
    spec = generator_spec(args)
    sample = generate_rows(0, args.init_sample, spec)
    init, _ = kmeans_plusplus(sample, args.k, random_state=args.seed)
    print(
        f"data    : d={args.d} k={args.k} float32 {args.data}, Zarr stores under {args.store} "
        f"(uncompressed); init: k-means++ on the first {args.init_sample} rows (shared by all n)"
    )
    start = time.perf_counter()
    warm_up(args.d, args.k)
    _warm_worker(args.d, args.k, args.seed)
    print(f"warm-up (numba compilation, in process): {time.perf_counter() - start:.2f} s")

    apply_engine_config(args)
    rows: list[dict[str, Any]] = []
    stores: dict[int, dict[str, Any]] = {}
    with local_cluster(args.workers, args.memory_limit) as client:
        workers = worker_report(client)
        for n in args.sizes:
            path, action, seconds = ensure_store(client, args, n, spec)
            stores[n] = {"path": str(path), "action": action, "write_seconds": seconds}
            print(f"store   : n={n}: {path} {action}" + (f" in {seconds:.1f} s" if seconds else ""))
        seconds_w = warm_up_cluster(client, args.d, args.k, args.seed)
        print(f"warm-up (numba compilation, per worker): {seconds_w}")
        start = time.perf_counter()
        BalancedKMeans(args.k, init=init, max_iter=2, tol=0).fit(
            da.from_zarr(stores[args.sizes[0]]["path"])
        )
        print(
            f"warm-up (a first small fit, n={args.sizes[0]}): {time.perf_counter() - start:.2f} s"
        )
        print()
        for n in args.sizes:
            start = time.perf_counter()
            row = measure(n, Path(stores[n]["path"]), init, args)
            row["store"] = stores[n]
            rows.append(row)
            print(f"  n={n}: {args.repeats} fits in {time.perf_counter() - start:.1f} s")
        print()
        headline = report(rows)
    print("cluster closed")
    path = write_results(
        NAME,
        args,
        info,
        {"rows": rows, "headline": headline, "cluster": {"workers": workers}, "generator": spec},
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
