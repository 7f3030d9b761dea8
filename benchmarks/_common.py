"""Shared helpers for the benchmark scripts: machine report, timing, data, objectives, output.

The scripts in this folder import this module as ``_common`` (Python puts the script's own
folder first on ``sys.path``), so run them as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_DIR = Path(__file__).resolve().parent.parent

# Distributions whose versions the header reports (distribution name, label).
_PACKAGES = (
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("pot", "POT"),
    ("scikit-learn", "sklearn"),
    ("numba", "numba"),
    ("k-means-constrained", "k-means-constrained"),
    ("ortools", "ortools"),
)
_THREAD_VARS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Rows per chunk when reducing distances, so temporaries stay around 64 MB of float64.
_CHUNK_ELEMENTS = 1 << 23


# --------------------------------------------------------------------------- command line


def base_parser(description: str, *, timed: bool = True) -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark shares.

    ``--small`` asks the script to shrink its default sizes to a quick smoke-test run; the
    script applies it (see :func:`parse_with_small`).  ``timed``: the script repeats its
    timed runs (``--repeats``, the median reported); a script that runs each case once (its
    figures are counts, or one long run) accepts ``--repeats 1`` only.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    if timed:
        parser.add_argument("--repeats", type=int, default=3, help="timed repeats; median reported")
    else:
        parser.add_argument(
            "--repeats", type=int, default=1, choices=[1], help="each case runs once"
        )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the init")
    parser.add_argument("--small", action="store_true", help="smoke test: small default sizes")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON path (default: benchmarks/results/<script>[.small].json)",
    )
    return parser


def add_data_args(parser: argparse.ArgumentParser, *, data: str, separation: float) -> None:
    """Add the data-generation options (``--data``, ``--separation``)."""
    parser.add_argument(
        "--data", choices=("blobs", "uniform"), default=data, help="synthetic data set"
    )
    parser.add_argument(
        "--separation",
        type=float,
        default=separation,
        help="blobs: typical distance between blob means, in within-blob standard deviations",
    )


def parse_with_small(parser: argparse.ArgumentParser, **small: Any) -> argparse.Namespace:
    """Parse the command line; with ``--small``, the given options default to small values.

    Options given explicitly on the command line keep their values.
    """
    args = parser.parse_args()
    if args.small:
        parser.set_defaults(**small)
        args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def command_line() -> str:
    """The exact command that started this process (with PYTHONPATH when it is set)."""
    words = ["python", *sys.argv]
    prefix = ""
    if "PYTHONPATH" in os.environ:
        prefix = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} "
    return prefix + shlex.join(words)


# --------------------------------------------------------------------------- machine report


def _package_version(dist: str) -> str:
    """Installed version of a distribution, or ``"missing"``."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


def _git_revision() -> str:
    """Commit of the source tree under test (``+dirty`` when it has local changes; the
    results folder aside: a batch of benchmarks writes there as it goes)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(REPO_DIR),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """Cores, thread settings, library versions and the source revision."""
    import numba

    import ballot_dask

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "load_average": load,
        "numba_threads": numba.get_num_threads(),
        "thread_env": {var: os.environ[var] for var in _THREAD_VARS if var in os.environ},
        "versions": {label: _package_version(dist) for dist, label in _PACKAGES},
        "ballot_dask": getattr(ballot_dask, "__version__", "unknown"),
        "ballot_dask_path": str(Path(ballot_dask.__file__).resolve().parent),
        "git_revision": _git_revision(),
    }


def print_header(title: str, info: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the title, the command line, the machine and the parameters."""
    versions = ", ".join(f"{name} {ver}" for name, ver in info["versions"].items())
    print(f"# {title}")
    print(f"command : {command_line()}")
    print(
        f"machine : {info['platform']}, {info['cpu_count']} cores "
        f"({info['usable_cores']} usable), numba threads {info['numba_threads']}, "
        f"load {info['load_average']}"
    )
    if info["thread_env"]:
        print(f"threads : {info['thread_env']}")
    print(f"python  : {info['python']}; {versions}")
    print(
        f"package : ballot_dask {info['ballot_dask']} from {info['ballot_dask_path']} "
        f"(git {info['git_revision']})"
    )
    print(f"params  : {params_of(args)}")
    print()


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as a JSON-friendly dict."""
    return {key: str(val) if isinstance(val, Path) else val for key, val in vars(args).items()}


# --------------------------------------------------------------------------- timing


def time_call(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Run ``fn`` ``repeats`` times; return (median seconds, all times, last result)."""
    times = []
    result = None
    for _ in range(repeats):
        result = None  # drop the previous result before the next run
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times, result


@contextlib.contextmanager
def compiling() -> Iterator[Any]:
    """Watch numba's compiler inside the block: the listener it yields is ``done`` when a
    kernel was compiled there, and its ``duration`` is the seconds that took (a kernel loaded
    from the on-disk cache is not compiled and costs nothing here).  A timed run during
    which a kernel compiled paid a one-time cost that no later run on the same tree pays
    (numba's ``numba:compile`` event, timed by its ``TimingListener``)."""
    from numba.core import event

    with event.install_listener("numba:compile", event.TimingListener()) as listener:
        yield listener


def warm_up(d: int, k: int, *, fit: bool = True, seed: int = 0) -> float:
    """Compile the numba kernels of ``ballot_dask`` on a tiny problem; return the seconds spent.

    Runs one exact assignment and, with ``fit``, a short ``BalancedKMeans`` fit, both in
    float64 with ``d`` features and ``k`` clusters, so no timed call pays for compilation.
    """
    from ballot_dask import BalancedKMeans, balanced_assign

    n = 50 * k
    X = make_data(n, d, k, "blobs", seed=seed, separation=4.0)
    start = time.perf_counter()
    balanced_assign(X, X[:k].copy())
    if fit:
        BalancedKMeans(k, init=X[:k].copy(), max_iter=3, tol=0).fit(X)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- data


def make_data(
    n: int, d: int, k: int, kind: str, *, seed: int, separation: float = 4.0
) -> np.ndarray:
    """Synthetic float64 data, C-contiguous, of shape (n, d).

    ``blobs``: a mixture of ``k`` isotropic unit-variance gaussians with equal weights, whose
    means are gaussian with pairwise distances about ``separation`` (so neighbouring blobs
    overlap at the default 4).  ``uniform``: uniform on the unit cube.
    """
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, d))
    if kind != "blobs":
        raise ValueError(f"unknown data kind {kind!r}")
    # E||m_a - m_b||^2 = 2 d s^2 for m ~ N(0, s^2 I): s = separation / sqrt(2 d).
    means = rng.normal(scale=separation / np.sqrt(2.0 * d), size=(k, d))
    component = rng.integers(k, size=n)
    X = rng.standard_normal((n, d))
    X += means[component]
    return X


def random_rows(X: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """``k`` distinct rows of ``X`` chosen at random, as a float64 (k, d) array."""
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(X.shape[0], size=k, replace=False)
    return np.ascontiguousarray(X[np.sort(rows)], dtype=np.float64)


def equal_sizes(n: int, k: int) -> np.ndarray:
    """Balanced integer sizes summing to ``n``: the first ``n % k`` clusters get one more."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return sizes


# --------------------------------------------------------------------------- objectives


def assignment_cost(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    """``sum_i ||x_i - centers[labels_i]||^2``, accumulated in row chunks."""
    labels = np.asarray(labels, dtype=np.intp)
    step = max(1, _CHUNK_ELEMENTS // max(1, X.shape[1]))
    total = 0.0
    for start in range(0, X.shape[0], step):
        diff = X[start : start + step] - centers[labels[start : start + step]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def centroids_of(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of the points of each label (zero for an empty label)."""
    labels = np.asarray(labels, dtype=np.intp)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.empty((k, X.shape[1]))
    for j in range(X.shape[1]):
        sums[:, j] = np.bincount(labels, weights=X[:, j], minlength=k)
    return sums / np.maximum(counts, 1.0)[:, None]


def kmeans_objective(X: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The true k-means objective of a partition: squared distances to its own centroids."""
    return assignment_cost(X, centroids_of(X, labels, k), labels)


def size_stats(labels: np.ndarray, k: int) -> dict[str, Any]:
    """Cluster sizes of ``labels`` with their min, max and spread (max - min)."""
    sizes = np.bincount(np.asarray(labels, dtype=np.intp), minlength=k)
    return {
        "sizes": sizes.tolist(),
        "min": int(sizes.min()),
        "max": int(sizes.max()),
        "spread": int(sizes.max() - sizes.min()),
    }


def certificate_summary(cert: Any) -> dict[str, Any] | None:
    """A ``ballot_dask`` optimality certificate as a JSON-friendly dict (``None`` stays)."""
    if cert is None:
        return None
    return {
        "optimal": bool(cert.optimal),
        "duality_gap": float(cert.duality_gap),
        "max_violation": float(cert.max_violation),
        "violations": int(cert.violations),
        "tolerance": float(cert.tolerance),
    }


def relative_difference(value: float, reference: float) -> float:
    """``(value - reference) / |reference|`` (signed; positive means worse for a cost)."""
    return (value - reference) / abs(reference) if reference else float("nan")


# --------------------------------------------------------------------------- output


def table(columns: Sequence[tuple[str, Callable[[dict], Any]]], rows: Sequence[dict]) -> str:
    """A plain-text table of result dicts: one ``(header, row -> value)`` pair per column."""
    return format_table([h for h, _ in columns], [[get(r) for _, get in columns] for r in rows])


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; floats in compact scientific or fixed notation."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            if not np.isfinite(value):
                return str(value)
            return f"{value:.6g}" if 1e-3 <= abs(value) < 1e7 or value == 0 else f"{value:.4e}"
        return str(value)

    def justify(value: Any, text: str, width: int) -> str:
        return text.ljust(width) if isinstance(value, str) else text.rjust(width)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(justify(v, c, w) for v, c, w in zip(row, r, widths, strict=True))
        for row, r in zip(rows, text, strict=True)
    ]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    """``json.dump`` fallback for numpy scalars and arrays."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_results(
    name: str,
    args: argparse.Namespace,
    info: dict[str, Any],
    results: dict[str, Any],
) -> Path:
    """Write ``results`` with the command, machine and parameters as JSON, atomically.

    Goes to ``args.output`` or ``benchmarks/results/<name>.json`` (``<name>.small.json`` for
    a ``--small`` run, so smoke tests never overwrite full results); the file is written to a
    temporary name in the same folder and moved into place with ``os.replace``.
    """
    default = RESULTS_DIR / f"{name}{'.small' if args.small else ''}.json"
    path = Path(args.output) if args.output is not None else default
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": command_line(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "params": params_of(args),
        **results,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, default=_jsonable, allow_nan=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
