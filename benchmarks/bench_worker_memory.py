"""A worker's memory while a fit streams a compressed Zarr store: small workers, big chunks.

Writes an overlapping balanced mixture (float32) to a Zarr store with zarr's default codecs
(zstd), in chunks of ``--chunk-rows`` rows, then fits ``BalancedKMeans(k, max_iter=3)`` on a
``LocalCluster`` of two single-thread worker processes of ``--memory-limit`` bytes each,
once with ``ballot.release-compiler-pages`` on (the default) and once off.  A thread in every
worker samples its resident memory every 3 ms.  Printed per setting: the fit time, each
worker's peak while tasks ran and while idle, its resident memory after the fit, the part of
it that is the compiler library's machine code (``ballot_dask.compiler_pages``), and the
"Pausing worker" events.

A Dask nanny pauses a worker at 80 % of its limit (305 MiB for 400 MB).  How much of the
compiler library a process maps depends on the page cache: reinstall llvmlite
(``pip install --force-reinstall --no-deps llvmlite``) to measure what a fresh install gives.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from _common import base_parser, machine_info, parse_with_small, print_header, write_results

NAME = "bench_worker_memory"


def parse_args() -> Any:
    parser = base_parser(__doc__.splitlines()[0], timed=False)  # one fit, its pauses
    parser.add_argument("--n", type=int, default=4_000_000, help="rows (d = 16)")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="16 MB chunks")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--memory-limit", type=float, default=400e6, help="bytes per worker")
    parser.add_argument("--store", type=Path, default=None, help="reused when it exists")
    return parse_with_small(parser, n=1_000_000)


def write_store(path: Path, n: int, d: int, k: int, rows: int, seed: int) -> None:
    """The out-of-core test's data: means from N(0, 0.25 I), unit noise, chunk by chunk."""
    import zarr

    rng = np.random.default_rng(seed)
    means = (0.5 * rng.standard_normal((k, d))).astype(np.float32)
    store = zarr.create_array(str(path), shape=(n, d), chunks=(rows, d), dtype="float32")
    for i, start in enumerate(range(0, n, rows)):
        stop = min(start + rows, n)
        block = np.random.default_rng([seed, i]).standard_normal((stop - start, d), np.float32)
        store[start:stop] = block + means[np.arange(start, stop) % k]


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_sampler(dask_worker: Any) -> None:
    """Record the worker's largest resident memory, while tasks run and while idle."""
    record = {"busy": 0.0, "idle": 0.0}
    dask_worker._ballot_memory = record

    def loop() -> None:
        while True:
            rss = _resident_mib()
            key = "busy" if dask_worker.state.executing else "idle"
            record[key] = max(record[key], rss)
            time.sleep(0.003)

    threading.Thread(target=loop, daemon=True, name="ballot-memory-sampler").start()


def sampled(dask_worker: Any) -> dict[str, float]:
    from ballot_dask.compiler_pages import compiler_resident

    return {
        **{key: round(value, 1) for key, value in dask_worker._ballot_memory.items()},
        "after": round(_resident_mib(), 1),
        "compiler": round(compiler_resident() / 2**20, 1),
    }


def run(path: Path, k: int, limit: float, release: bool) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from ballot_dask import BalancedKMeans

    with (
        dask.config.set({"ballot.release-compiler-pages": release}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=int(limit),
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(start_sampler)
        X = da.from_zarr(str(path))
        start = time.perf_counter()
        model = BalancedKMeans(k, random_state=0, max_iter=3).fit(X)
        seconds = time.perf_counter() - start
        workers = list(client.run(sampled).values())
        logs = [m for e in client.get_worker_logs().values() for _, m in e]
        pauses = sum("Pausing worker" in m for m in logs)
    return {
        "release": release,
        "seconds": round(seconds, 1),
        "peak_busy_mib": max(w["busy"] for w in workers),
        "peak_idle_mib": max(w["idle"] for w in workers),
        "after_mib": max(w["after"] for w in workers),
        "compiler_mib": max(w["compiler"] for w in workers),
        "pauses": pauses,
        "certified": bool(model.certificate_.optimal),
    }


def main() -> None:
    args = parse_args()
    info = machine_info()
    print_header(__doc__.splitlines()[0], info, args)
    with tempfile.TemporaryDirectory(prefix="ballot-bench-") as tmp:
        path = args.store or Path(tmp) / "X.zarr"
        if not path.exists():
            write_store(path, args.n, 16, args.k, args.chunk_rows, args.seed)
        rows = []
        for release in (True, False):
            row = run(path, args.k, args.memory_limit, release)
            print(row, flush=True)
            rows.append(row)
    pause_at = 0.8 * args.memory_limit / 2**20
    on, off = rows
    print(
        f"\npause threshold {pause_at:.0f} MiB; peak with the release {on['peak_busy_mib']:.0f} "
        f"MiB, without {off['peak_busy_mib']:.0f} MiB; the compiler's machine code held "
        f"after the fit: {on['compiler_mib']:.0f} vs {off['compiler_mib']:.0f} MiB"
    )
    headline = {
        "pause_threshold_mib": round(pause_at, 1),
        "peak_mib_release_on": on["peak_busy_mib"],
        "peak_mib_release_off": off["peak_busy_mib"],
        "compiler_mib_on": on["compiler_mib"],
        "compiler_mib_off": off["compiler_mib"],
    }
    write_results(NAME, args, info, {"rows": rows, "headline": headline})


if __name__ == "__main__":
    main()
