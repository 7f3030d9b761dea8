"""Dask helpers shared by the Dask benchmarks (``bench_dask.py``, ``bench_scaling.py``):
the local cluster, its report and warm-up, the engine settings, and timed fits."""

from __future__ import annotations

import ast
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
    machine_info,
    make_data,
    time_call,
)
from distributed import Client, LocalCluster, futures_of, wait

from ballot_dask import BalancedKMeans

_DASK_PACKAGES = (("dask", "dask"), ("distributed", "distributed"), ("dask-ml", "dask-ml"))


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
    """Compile the numba kernels (float32 and float64, exact and E-BalLOT) inside a worker
    process. E-BalLOT's kernels compile in about 17 s on a cold cache: left out, a first
    timed E-BalLOT fit paid for them (24 s in its first step)."""
    start = time.perf_counter()
    X = make_data(50 * k, d, k, "blobs", seed=seed, separation=4.0)
    for dtype in (np.float32, np.float64):
        Xt = X.astype(dtype)
        for method in ("exact", "sinkhorn"):
            BalancedKMeans(k, method=method, init=Xt[:k].copy(), max_iter=3, tol=0).fit(Xt)
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
