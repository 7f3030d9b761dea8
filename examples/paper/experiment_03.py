"""Experiment 3 (Figure 2): median runtime against n, balanced stochastic ball model in R^2.

n doubles from 2^6; for each n, trials of BalLOT, E-BalLOT, Lloyd (scikit-learn), the Hungarian
method and Lloyd with POT's ``ot.emd`` assignment, each timed from its k-means++ start to
convergence in a single-threaded child process (killed past three caps), until a method's
median exceeds the time cap (or its next size would need more than ``memory_budget`` or is
predicted to take ten caps). Log-log plot with the slope of each method fitted over its largest
``fit_span`` sizes whose median is at least ``fit_floor`` seconds (below that, fixed costs
dominate). In the full setting the sizes from 2^``zarr_from`` on (up to 2^27) are written to a
Zarr store and fitted from it on a 2-process ``LocalCluster`` (BalLOT, E-BalLOT; Lloyd loads
the store into memory, untimed). The paper's claim: BalLOT, E-BalLOT and Lloyd grow
near-linearly, the matching methods super-linearly.

    python examples/paper/experiment_03.py [--quick | --tiny] [--out DIR] [--seed N]
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _figures
import _methods
import _records
import numpy as np

from ballot_dask import BalancedKMeans
from ballot_dask.datasets import stochastic_ball
from ballot_dask.initialization import initial_centers

EXPERIMENT = "experiment_03"
FIGURE = "figure_2.png"
METHODS = ("BalLOT", "E-BalLOT", "Lloyd", "Hungarian", "POT emd")
FIELDS = ("method", "log2_n", "n", "trial", "seconds", "completed", "n_iter", "source")
# bytes of one n x n float64 cost matrix per point pair (the Hungarian method's input)
_PAIR_BYTES = 8
# a size predicted to take more than this many caps is not run; an in-memory fit running
# longer than this many caps is stopped
_PREDICTED_CAPS = 10.0
_HARD_LIMIT_CAPS = 3.0


@dataclass(frozen=True)
class Parameters:
    log2_sizes: tuple[int, ...]
    trials: int
    cap: float
    fit_floor: float
    fit_span: int
    zarr_from: int | None = None
    k: int = 2
    d: int = 2
    delta: float = 3.0
    chunk_rows: int = 1 << 22
    zarr_trials: int = 3
    threads: int = 1
    memory_budget: float = 4.0 * 2**30


def range_(first: int, last: int) -> tuple[int, ...]:
    """``first..last`` inclusive."""
    return tuple(range(first, last + 1))


SETTINGS = {
    "full": Parameters(range_(6, 27), trials=5, cap=300.0, fit_floor=0.1, fit_span=8, zarr_from=22),
    "quick": Parameters(range_(6, 21), trials=3, cap=10.0, fit_floor=0.02, fit_span=6),
    "tiny": Parameters(range_(6, 19), trials=3, cap=1.0, fit_floor=0.005, fit_span=6),
}


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def time_in_memory(method: str, X: np.ndarray, k: int, seed: int) -> tuple[float, int]:
    """Seconds from the k-means++ start to convergence, and Lloyd iterations."""
    start = time.perf_counter()
    init = initial_centers(X, k, "k-means++", np.random.RandomState(seed))
    fit = _methods.METHODS[method](X, init)
    return time.perf_counter() - start, fit.n_iter


def time_on_cluster(method: str, X: Any, k: int, seed: int) -> tuple[float, int]:
    """The same on a Dask array (a Zarr store) with the active client: BalLOT and E-BalLOT fit
    it chunk by chunk; the other methods load it into memory first (not timed)."""
    if method not in ("BalLOT", "E-BalLOT"):
        return time_in_memory(method, X.compute(), k, seed)
    options: dict[str, Any] = {"method": "exact", "tol": 0.0}
    if method == "E-BalLOT":
        options = {"method": "sinkhorn", "rounding": "argmax", **_methods.E_BALLOT}
    start = time.perf_counter()
    km = BalancedKMeans(
        k, init="k-means++", random_state=seed, max_iter=_methods.MAX_ITER, **options
    )
    km.fit(X)
    return time.perf_counter() - start, km.n_iter_


# the linear-time methods are also warmed up on this many points: the package's kernels have
# parallel variants and sample-based paths that only larger inputs reach (compiled on first use)
_WARM_UP_LARGE = 1 << 16


def warm_up(params: Parameters) -> None:
    """Compile and load every method once (untimed), so no size pays a first call."""
    for n, methods in ((256, METHODS), (_WARM_UP_LARGE, ("BalLOT", "E-BalLOT", "Lloyd"))):
        X, _, _ = stochastic_ball(n, params.d, params.k, delta=params.delta, chunks=n, seed=0)
        X = X.compute()
        for method in methods:
            time_in_memory(method, X, params.k, 0)


Timer = Callable[[str, Any, int, int], "tuple[float, int] | None"]
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


@contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """Thread pools of the processes started in the body limited to ``threads``."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class IsolatedTimer:
    """:func:`time_in_memory` in a child process, killed past ``limit`` seconds.

    A network simplex or a Sinkhorn loop can take hours at the size after the last one that
    met the cap; the child is then terminated (a new one starts at the next call) and the call
    returns ``None``. The child is spawned, not forked (the parent's thread pools do not
    survive a fork), and warms every method up once.
    """

    def __init__(self, params: Parameters) -> None:
        self.params = params
        self.limit = _HARD_LIMIT_CAPS * params.cap
        self._pool: Any = None

    def __call__(self, method: str, X: Any, k: int, seed: int) -> tuple[float, int] | None:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            with _thread_limit(self.params.threads):
                self._pool = context.Pool(1)
            self._pool.apply(warm_up, (self.params,))  # not under the limit
        job = self._pool.apply_async(time_in_memory, (method, X, k, seed))
        try:
            return job.get(timeout=self.limit)
        except multiprocessing.TimeoutError:
            self.close()
            return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


# --------------------------------------------------------------------------------------------
# the schedule: which method runs at which size
# --------------------------------------------------------------------------------------------


class Schedule:
    """Methods still running, and why the others stopped."""

    def __init__(self, params: Parameters) -> None:
        self.params = params
        self.active = list(METHODS)
        self.medians: dict[str, list[tuple[int, float]]] = {m: [] for m in METHODS}
        self.stopped: dict[str, str] = {}

    def runs(self, method: str, log2_n: int) -> bool:
        """Whether ``method`` runs at ``2**log2_n`` points (stops it, with a reason, if not)."""
        if method not in self.active:
            return False
        n = 2**log2_n
        reason = None
        if method == "Hungarian" and n * n * _PAIR_BYTES > self.params.memory_budget:
            reason = f"n = 2^{log2_n}: the n x n matrix exceeds the memory budget"
        history = self.medians[method]
        if reason is None and len(history) >= 2:
            (_, before), (_, last) = history[-2:]
            growth = min(max(last / max(before, 1e-9), 2.0), 8.0)  # between O(n) and O(n^3)
            if last * growth > _PREDICTED_CAPS * self.params.cap:
                reason = f"n = 2^{log2_n}: predicted {last * growth:.0f} s"
        if reason is not None:
            self.stop(method, reason)
            return False
        return True

    def close_size(self, log2_n: int, rows: Sequence[dict[str, Any]]) -> None:
        """Record the medians at ``2**log2_n``; stop the methods above the cap."""
        for method in list(self.active):
            mine = [r for r in rows if r["method"] == method and r["log2_n"] == log2_n]
            if not mine:
                continue
            if not all(r["completed"] for r in mine):
                limit = _HARD_LIMIT_CAPS * self.params.cap
                self.stop(method, f"n = 2^{log2_n}: a trial ran past {limit:g} s and was stopped")
                continue
            median = float(np.median([r["seconds"] for r in mine]))
            self.medians[method].append((log2_n, median))
            if median > self.params.cap:
                self.stop(method, f"n = 2^{log2_n}: median {median:.3g} s above the cap")

    def stop(self, method: str, reason: str) -> None:
        if method in self.active:
            self.active.remove(method)
            self.stopped[method] = reason
            print(f"{method}: stopped at {reason}")


def _measure(
    schedule: Schedule,
    log2_n: int,
    trials: int,
    data: Callable[[int], Any],
    timer: Timer,
    source: str,
) -> list[dict[str, Any]]:
    """Every trial of every running method at ``2**log2_n`` points."""
    params = schedule.params
    rows: list[dict[str, Any]] = []
    running = [m for m in METHODS if schedule.runs(m, log2_n)]
    for trial in range(trials):
        X = data(trial)
        for method in running:
            mine = [r for r in rows if r["method"] == method]
            if not all(r["completed"] for r in mine):
                continue  # a trial was stopped at the hard limit: the method ends here
            if sum(r["seconds"] > params.cap for r in mine) > trials // 2:
                continue  # most trials over the cap already: so is the median
            timing = timer(method, X, params.k, trial)
            seconds, n_iter = timing or (_HARD_LIMIT_CAPS * params.cap, -1)
            rows.append(
                {
                    "method": method,
                    "log2_n": log2_n,
                    "n": 2**log2_n,
                    "trial": trial,
                    "seconds": seconds,
                    "completed": timing is not None,
                    "n_iter": n_iter,
                    "source": source,
                }
            )
    schedule.close_size(log2_n, rows)
    return rows


# --------------------------------------------------------------------------------------------
# the run: in memory, then from Zarr stores on a LocalCluster
# --------------------------------------------------------------------------------------------


def _run_in_memory(
    params: Parameters, base_seed: int, schedule: Schedule, sizes: Sequence[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    timer = IsolatedTimer(params)
    try:
        for log2_n in sizes:

            def data(trial: int, log2_n: int = log2_n) -> np.ndarray:
                seed = base_seed * 1_000_000 + log2_n * 1_000 + trial
                n = 2**log2_n
                X, _, _ = stochastic_ball(
                    n, params.d, params.k, delta=params.delta, chunks=n, seed=seed
                )
                return X.compute()

            rows += _measure(schedule, log2_n, params.trials, data, timer, "memory")
            if not schedule.active:
                break
    finally:
        timer.close()
    return rows


@contextmanager
def _cluster() -> Iterator[None]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        yield


def _zarr_data(params: Parameters, log2_n: int, seed: int, where: Path) -> Any:
    """The model's ``2**log2_n`` points, written chunk by chunk to a Zarr store on the active
    cluster and reopened lazily from it."""
    import dask.array as da

    n = 2**log2_n
    X, _, _ = stochastic_ball(
        n, params.d, params.k, delta=params.delta, chunks=min(n, params.chunk_rows), seed=seed
    )
    path = where / f"ball-2^{log2_n}.zarr"
    X.to_zarr(str(path), overwrite=True)
    return da.from_zarr(str(path))


def _run_on_zarr(
    params: Parameters, base_seed: int, schedule: Schedule, sizes: Sequence[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    warm_up(params)
    with tempfile.TemporaryDirectory(prefix="ballot-paper-") as tmp, _cluster():
        for log2_n in sizes:
            if not schedule.active:
                break
            X = _zarr_data(params, log2_n, base_seed * 1_000_000 + log2_n * 1_000, Path(tmp))

            def stored(trial: int, X: Any = X) -> Any:
                return X  # one store per size: the trials refit it from other starts

            rows += _measure(schedule, log2_n, params.zarr_trials, stored, time_on_cluster, "zarr")
            for old in Path(tmp).glob("*.zarr"):  # free the disk before the next size
                shutil.rmtree(old)
    return rows


def run(params: Parameters, base_seed: int) -> tuple[list[dict[str, Any]], Schedule]:
    schedule = Schedule(params)
    zarr_from = params.zarr_from if params.zarr_from is not None else math.inf
    in_memory = [p for p in params.log2_sizes if p < zarr_from]
    on_zarr = [p for p in params.log2_sizes if p >= zarr_from]
    rows = _run_in_memory(params, base_seed, schedule, in_memory)
    if on_zarr and schedule.active:
        rows += _run_on_zarr(params, base_seed, schedule, on_zarr)
    return rows, schedule


# --------------------------------------------------------------------------------------------
# slopes, summary, figure
# --------------------------------------------------------------------------------------------


def medians(rows: Sequence[dict[str, Any]], method: str) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and median seconds of ``method`` (the sizes where every trial completed)."""
    mine = [r for r in rows if r["method"] == method]
    stopped = {r["n"] for r in mine if not r["completed"]}
    sizes = sorted({r["n"] for r in mine} - stopped)
    times = [np.median([r["seconds"] for r in mine if r["n"] == n]) for n in sizes]
    return np.array(sizes, dtype=np.float64), np.array(times)


def slope(rows: Sequence[dict[str, Any]], method: str, params: Parameters) -> tuple[float, ...]:
    """Least-squares slope of log(median seconds) on log(n), with the window's first and last n.

    The window: the method's largest ``fit_span`` sizes among those whose median is at least
    ``fit_floor`` seconds (fixed costs dominate below; the largest sizes show the growth), or
    its last three sizes when fewer qualify. NaN with fewer than two sizes.
    """
    sizes, times = medians(rows, method)
    index = np.flatnonzero(times >= params.fit_floor)[-params.fit_span :]
    if index.size < 3:
        index = np.arange(sizes.size)[-3:]
    if index.size < 2:
        return math.nan, math.nan, math.nan
    fit = np.polyfit(np.log(sizes[index]), np.log(times[index]), 1)
    return float(fit[0]), float(sizes[index[0]]), float(sizes[index[-1]])


def summarize(
    rows: Sequence[dict[str, Any]], params: Parameters, schedule: Schedule
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        b, lo, hi = slope(rows, method, params)
        sizes, times = medians(rows, method)
        out[method] = {
            "slope": round(b, 3),
            "fit_window": [lo, hi],
            "largest_n": int(sizes[-1]) if sizes.size else None,
            "median_at_largest_n": round(float(times[-1]), 4) if times.size else None,
            "stopped": schedule.stopped.get(method, "reached the largest size"),
        }
    return out


def plot(rows: Sequence[dict[str, Any]], params: Parameters, path: Path) -> None:
    killed = False
    with _figures.figure(width=8.6, height=4.8) as (fig, (ax,)):
        for method in METHODS:
            sizes, times = medians(rows, method)
            if not sizes.size:
                continue
            b, lo, hi = slope(rows, method, params)
            style = _figures.METHOD_STYLE[method]
            ax.loglog(
                sizes, times, label=f"{method} (slope {b:.2f})", linewidth=2, markersize=6, **style
            )
            if not math.isnan(b):  # the fitted line over its window, dotted
                window = (sizes >= lo) & (sizes <= hi)
                const = np.mean(np.log(times[window]) - b * np.log(sizes[window]))
                xs = np.array([lo, hi])
                ax.loglog(
                    xs, np.exp(const) * xs**b, color=style["color"], linestyle=":", linewidth=1.5
                )
            stopped = [r for r in rows if r["method"] == method and not r["completed"]]
            if stopped:  # the killed trial's limit: a lower bound on its time
                n_stop = stopped[0]["n"]
                ax.loglog(
                    [sizes[-1], n_stop],
                    [times[-1], stopped[0]["seconds"]],
                    color=style["color"],
                    linestyle="--",
                    linewidth=1.5,
                )
                ax.loglog(
                    [n_stop],
                    [stopped[0]["seconds"]],
                    marker=r"$\uparrow$",
                    markersize=14,
                    color=style["color"],
                    linestyle="none",
                )
                killed = True
        if killed:
            ax.plot(
                [],
                [],
                color="0.3",
                marker=r"$\uparrow$",
                markersize=12,
                linestyle="--",
                label=f"trial stopped at {_HARD_LIMIT_CAPS:g} caps\n(a lower bound)",
            )
        ax.axhline(params.cap, color="grey", linestyle="--", linewidth=1.2)
        ax.annotate(
            f"time cap {params.cap:g} s",
            (1.0, params.cap),
            xycoords=("axes fraction", "data"),
            xytext=(-4, -4),
            textcoords="offset points",
            ha="right",
            va="top",
            color="dimgrey",
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of points n")
        ax.set_ylabel("median runtime (s)")
        ax.set_title(
            f"k = {params.k} balls in $\\mathbb{{R}}^{params.d}$, $\\Delta$ = {params.delta:g}, "
            f"median of {params.trials} trials"
        )
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            title=(
                f"log-log slope over the\nlargest {params.fit_span} sizes "
                f"$\\geq$ {params.fit_floor:g} s"
            ),
        )
        _figures.save(fig, path)


def main(argv: Sequence[str] | None = None) -> _records.Record:
    run_ = _records.parse_run(__doc__.splitlines()[0], argv)
    params = _records.choose(SETTINGS, run_)
    record = _records.Record(EXPERIMENT, run_, params)
    with _records.timed(record):
        rows, schedule = run(params, run_.seed)
    _records.write_csv(run_.path(f"{EXPERIMENT}.csv"), rows, FIELDS)
    plot(rows, params, run_.path(FIGURE))
    record.summary = summarize(rows, params, schedule)
    record.write()
    return record


if __name__ == "__main__":
    main()
