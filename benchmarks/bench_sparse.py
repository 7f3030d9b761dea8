"""Sparse input: ``BalancedKMeans`` on a scipy.sparse TF-IDF-like matrix vs on its dense copy.

The data: ``--n`` documents over a vocabulary of ``--d`` words, about ``--density * d`` word
draws per document (a Zipf law over each of ``--topics`` topics' own words, one draw in five
from the whole vocabulary), TF-IDF weighted (``1 + log tf`` times the smoothed idf) and
L2-normalised, as CSR.  Both fits start from the same centers ``C0`` (computed once, not
timed): k-means++ seeds (scikit-learn, on the sparse matrix) moved to the centroids of their
nearest-seed cells by one unbalanced Lloyd step.  Single-document centers would leave most
documents orthogonal to two centers at once, equally costly to move between them: the first
transport problem's optimum would then be far from unique and two fits whose costs differ by
round-off could take different, equally optimal, paths.

Each fit (``BalancedKMeans(k, init=C0, max_iter=T, tol=0)``, ``--method``) runs in a fresh
process (``spawn``; the kernels come from the compiled cache), which builds the matrix from the
seed, then, for the dense fit, ``X.toarray()`` (timed apart) and fits.  Memory: the peak
resident set size above the process's size before the fit (sampled every 5 ms by a thread),
the dense copy included for the dense fit.  The parent compares the two fits: labels, centers,
objective, certificate.  Headline: dense fit time / sparse fit time (and with the densification),
dense / sparse peak memory, both measured in the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import threading
import time
from typing import Any

import numpy as np
import psutil
import scipy.sparse as sp
from _common import (
    base_parser,
    certificate_summary,
    machine_info,
    parse_with_small,
    print_header,
    table,
    write_results,
)

NAME = "bench_sparse"


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000, help="documents (rows)")
    parser.add_argument("--d", type=int, default=20_000, help="vocabulary (columns)")
    parser.add_argument("--density", type=float, default=1e-3, help="word draws per row / d")
    parser.add_argument("--k", type=int, default=20, help="clusters")
    parser.add_argument("--topics", type=int, default=20, help="topics of the generator")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--method", choices=("exact", "sinkhorn"), default="exact")
    parser.add_argument("--iters", type=int, default=10, help="Lloyd iterations, at most")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense fit")
    parser.set_defaults(repeats=1)
    return parse_with_small(parser, n=10_000, d=5_000, density=4e-3)


# --------------------------------------------------------------------------- data


def make_tfidf(n: int, d: int, density: float, topics: int, seed: int, dtype: str) -> sp.csr_matrix:
    """A TF-IDF-like CSR matrix (see the module docstring), rows L2-normalised."""
    rng = np.random.default_rng(seed)
    draws = max(1, round(density * d))
    width = max(1, d // topics)
    zipf = 1.0 / np.arange(1, width + 1)
    zipf /= zipf.sum()
    topic = rng.integers(topics, size=n)
    words = (topic[:, None] * width + rng.choice(width, size=(n, draws), p=zipf)) % d
    background = rng.random((n, draws)) < 0.2
    words[background] = rng.integers(0, d, size=int(background.sum()))
    rows = np.repeat(np.arange(n), draws)
    counts = sp.csr_matrix((np.ones(n * draws), (rows, words.ravel())), shape=(n, d))
    counts.sum_duplicates()  # term frequencies
    df = np.bincount(counts.indices, minlength=d)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    counts.data = (1.0 + np.log(counts.data)) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    X = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-300)) @ counts)
    return X.astype(dtype)


def start_centers(X: sp.csr_matrix, k: int, seed: int) -> np.ndarray:
    """k-means++ seeds moved to the centroids of their nearest-seed cells (float64)."""
    from sklearn.cluster import kmeans_plusplus
    from sklearn.metrics import pairwise_distances_argmin

    seeds, _ = kmeans_plusplus(X, k, random_state=seed)
    nearest = pairwise_distances_argmin(X, seeds)
    onehot = sp.csr_matrix((np.ones(X.shape[0]), (nearest, np.arange(X.shape[0]))))
    counts = np.bincount(nearest, minlength=k).astype(np.float64)
    sums = np.asarray((onehot @ X.astype(np.float64)).todense())
    return np.ascontiguousarray(sums / np.maximum(counts, 1.0)[:, None])


# --------------------------------------------------------------------------- one fit


class PeakRSS:
    """The largest resident set size seen by a sampling thread, above a baseline."""

    def __init__(self, interval: float = 0.005) -> None:
        self.process = psutil.Process()
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def above_base(self) -> int:
        return int(self.peak - self.base)


def _fit_child(kind: str, params: dict[str, Any], C0: np.ndarray, queue: Any) -> None:
    """:func:`_fit` in a child process; an exception is reported, not raised."""
    try:
        queue.put(_fit(kind, params, C0))
    except Exception as exc:  # reported in the table (e.g. a memory budget exceeded)
        queue.put({"kind": kind, "error": f"{type(exc).__name__}: {exc}"})


def _fit(kind: str, params: dict[str, Any], C0: np.ndarray) -> dict[str, Any]:
    """Build the data, (densify,) fit ``repeats`` times; report times, memory and the fit."""
    from ballot_dask import BalancedKMeans

    X = make_tfidf(**params["data"])
    result: dict[str, Any] = {"kind": kind, "densify_seconds": 0.0, "seconds": []}
    with PeakRSS() as memory:
        if kind == "dense":
            start = time.perf_counter()
            X = np.ascontiguousarray(X.toarray())
            result["densify_seconds"] = time.perf_counter() - start
        for _ in range(params["repeats"]):
            km = BalancedKMeans(
                C0.shape[0], init=C0, max_iter=params["iters"], tol=0, method=params["method"]
            )
            start = time.perf_counter()
            km.fit(X)
            result["seconds"].append(time.perf_counter() - start)
    result.update(
        peak_bytes=memory.above_base,
        data_bytes=int(X.nbytes if kind == "dense" else X.data.nbytes + X.indices.nbytes),
        labels=np.asarray(km.labels_),
        centers=km.cluster_centers_,
        inertia=float(km.inertia_),
        n_iter=int(km.n_iter_),
        passes=km.n_passes_,
        certificate=certificate_summary(km.certificate_),
    )
    return result


def run_fit(kind: str, params: dict[str, Any], C0: np.ndarray) -> dict[str, Any]:
    """One variant's fits in a fresh process (``error`` set if it failed or died)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_fit_child, args=(kind, params, C0, queue))
    child.start()
    while True:
        try:
            result = queue.get(timeout=5.0)
            break
        except queue_module.Empty:
            if not child.is_alive():  # killed (out of memory?) before reporting
                result = {"kind": kind, "error": f"the process died (exit {child.exitcode})"}
                break
    child.join()
    if "error" not in result:
        result["median_seconds"] = float(np.median(result["seconds"]))
    return result


# --------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    info = machine_info()
    print_header(NAME, info, args)
    data = {
        "n": args.n,
        "d": args.d,
        "density": args.density,
        "topics": args.topics,
        "seed": args.seed,
        "dtype": args.dtype,
    }
    X = make_tfidf(**data)
    density = X.nnz / (X.shape[0] * X.shape[1])
    print(
        f"data    : {X.shape[0]} x {X.shape[1]} {args.dtype}, {X.nnz} nonzeros "
        f"({100 * density:.3f} %, {X.nnz / X.shape[0]:.1f} a row); CSR "
        f"{(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20:.1f} MiB, dense "
        f"{X.shape[0] * X.shape[1] * X.dtype.itemsize / 2**30:.2f} GiB"
    )
    C0 = start_centers(X, args.k, args.seed)
    del X
    params = {"data": data, "repeats": args.repeats, "iters": args.iters, "method": args.method}
    # compile (or load) the kernels for both layouts before anything is timed
    warm = {**params, "data": {**data, "n": 2_000, "d": min(args.d, 2_000)}, "repeats": 1}
    warm_centers = start_centers(make_tfidf(**warm["data"]), args.k, args.seed)
    for kind in ("sparse", "dense"):
        run_fit(kind, warm, warm_centers)
    fits = [run_fit("sparse", params, C0)]
    if not args.no_dense:
        fits.append(run_fit("dense", params, C0))
    failed = [r for r in fits if "error" in r]
    rows = [r for r in fits if "error" not in r]
    for r in rows:
        r["peak_mib"] = r["peak_bytes"] / 2**20
        r["optimal"] = None if r["certificate"] is None else r["certificate"]["optimal"]
    columns = [
        ("X", lambda r: r["kind"]),
        ("data MiB", lambda r: r["data_bytes"] / 2**20),
        ("densify s", lambda r: r["densify_seconds"]),
        ("fit s", lambda r: r["median_seconds"]),
        ("iters", lambda r: r["n_iter"]),
        ("s/iter", lambda r: r["median_seconds"] / max(r["n_iter"], 1)),
        ("peak MiB", lambda r: r["peak_mib"]),
        ("objective", lambda r: r["inertia"]),
        ("certified", lambda r: r["optimal"]),
    ]
    print(table(columns, rows))
    for r in failed:
        print(f"{r['kind']} fit failed: {r['error']}")
    headline: dict[str, Any] = {"density": density}
    if len(rows) == 2:
        sparse_fit, dense_fit = rows
        headline = {
            "density": density,
            "fit_ratio": dense_fit["median_seconds"] / sparse_fit["median_seconds"],
            "fit_ratio_with_densify": (dense_fit["median_seconds"] + dense_fit["densify_seconds"])
            / sparse_fit["median_seconds"],
            "memory_ratio": dense_fit["peak_bytes"] / max(sparse_fit["peak_bytes"], 1),
            "labels_equal": bool(np.array_equal(sparse_fit["labels"], dense_fit["labels"])),
            "center_difference": float(np.abs(sparse_fit["centers"] - dense_fit["centers"]).max()),
            "objective_relative_difference": abs(sparse_fit["inertia"] - dense_fit["inertia"])
            / dense_fit["inertia"],
        }
        print()
        print(
            f"dense / sparse: fit time x{headline['fit_ratio']:.2f} "
            f"(x{headline['fit_ratio_with_densify']:.2f} with the densification), "
            f"peak memory x{headline['memory_ratio']:.1f}"
        )
        print(
            f"agreement: labels equal {headline['labels_equal']}, largest center difference "
            f"{headline['center_difference']:.2e}, objectives differ by "
            f"{headline['objective_relative_difference']:.2e} (relative)"
        )
    for r in rows:
        del r["labels"], r["centers"]
    results = {"rows": rows, "failed": failed, "headline": headline}
    path = write_results(NAME, args, info, results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
