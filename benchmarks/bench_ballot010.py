"""Assignment step vs the ``ballot`` 0.1.0 package (PyPI): exact, and entropic at small reg.

Peer: ``ballot.core`` of ``ballot`` 0.1.0, called as its ``BalancedKMeans`` calls it, with its
marginals (mass ``1/n`` per row, ``1/k`` per column, total 1).  Both parts use the same points
(gaussian blobs), the same centers (k random data points) and, for ``ballot``, the cost matrix
``C_ij = ||x_i - mu_j||^2`` computed by this script as sums of squared differences (what
``ballot_dask`` computes internally); every objective is recomputed here from the labels.

1. Exact step, n in ``--exact-n``: ``ballot.core.solve_exact_kantorovich`` (scipy's
   ``linear_sum_assignment`` on the n x n matrix ``np.repeat(C, n/k, axis=1)``) vs
   ``balanced_assign(X, centers)``; the bytes of that expanded matrix (n*n*8), printed but not
   run for ``--large-n`` (10^5: 80 GB), where ours runs alone.
2. Entropic step, n = ``--sinkhorn-n``, reg in ``--regs`` relative to the mean cost:
   ``ballot.core.solve_entropic_kantorovich`` (plain Sinkhorn on ``exp(-C/eps)``) with the same
   absolute ``eps = reg * C.mean()`` vs ``balanced_assign(method="sinkhorn", reg=reg)`` with
   ``rounding="argmax"`` and ``rounding="exact"``; plan mass, marginal errors, NaN/inf, sizes,
   costs relative to the exact optimum, numpy floating-point warnings (suppressed and counted).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import numpy as np
from _common import (
    add_data_args,
    base_parser,
    certificate_summary,
    machine_info,
    make_data,
    parse_with_small,
    print_header,
    random_rows,
    relative_difference,
    size_stats,
    table,
    time_call,
    warm_up,
    write_results,
)
from ballot.core import compute_cost_matrix, solve_entropic_kantorovich, solve_exact_kantorovich

from ballot_dask import balanced_assign

NAME = "bench_ballot010"
BALLOT = "ballot 0.1.0"
OURS = "ballot_dask"
GB = 1e9
ROUNDINGS = ("argmax", "exact")


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10, help="clusters")
    parser.add_argument("--d", type=int, default=2, help="features")
    add_data_args(parser, data="blobs", separation=4.0)
    parser.add_argument(
        "--exact-n", type=int, nargs="+", default=[1000, 2000, 5000], help="exact part: points"
    )
    parser.add_argument(
        "--large-n", type=int, default=100_000, help="exact part: ours only; ballot's memory"
    )
    parser.add_argument(
        "--hungarian-repeats",
        type=int,
        default=1,
        help="timed repeats of ballot's n x n Hungarian (about 35 s at n = 5000)",
    )
    parser.add_argument("--sinkhorn-n", type=int, default=20_000, help="entropic part: points")
    parser.add_argument(
        "--regs",
        type=float,
        nargs="+",
        default=[1e-1, 1e-2, 1e-3, 1e-4],
        help="entropic part: regularisations, relative to the mean cost",
    )
    parser.add_argument(
        "--sinkhorn-max-iter", type=int, default=2000, help="ours: sinkhorn_max_iter"
    )
    parser.add_argument("--sinkhorn-tol", type=float, default=1e-3, help="ours: sinkhorn_tol")
    parser.add_argument(
        "--ballot-max-iter",
        type=int,
        default=100,
        help="ballot: max_iter of solve_entropic_kantorovich (its default, used by its estimator)",
    )
    args = parse_with_small(parser, exact_n=[200, 500, 1000], large_n=10_000, sinkhorn_n=2_000)
    for n in [*args.exact_n, args.large_n, args.sinkhorn_n]:
        if n % args.k:
            parser.error(f"ballot 0.1.0 needs k | n; n = {n} is not a multiple of k = {args.k}")
    if args.hungarian_repeats < 1:
        parser.error("--hungarian-repeats must be at least 1")
    return args


# --------------------------------------------------------------------------- helpers


def cost_matrix(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Dense ``C_ij = ||x_i - mu_j||^2`` (float64), as sums of squared differences."""
    C = np.zeros((X.shape[0], centers.shape[0]))
    for j in range(X.shape[1]):
        diff = X[:, j, None] - centers[None, :, j]
        C += diff * diff
    return C


def label_cost(C: np.ndarray, labels: np.ndarray) -> float:
    """``sum_i C[i, labels_i]``."""
    return float(C[np.arange(C.shape[0]), np.asarray(labels, dtype=np.intp)].sum())


def expanded_bytes(n: int, k: int) -> int:
    """Bytes of ballot's float64 expanded cost ``np.repeat(C, n // k, axis=1)`` (n x n)."""
    return n * k * (n // k) * 8


def ballot_marginals(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """ballot's marginals, as its ``BalancedKMeans.fit`` builds them: ``1/n`` and ``1/k``."""
    return np.full(n, 1.0 / n), np.full(k, 1.0 / k)


@contextmanager
def counting_fp_errors(counts: dict[str, int]) -> Iterator[None]:
    """Silence numpy floating-point warnings inside the block and count them by kind.

    Every kind (divide, overflow, underflow, invalid) goes to a callback; numpy calls it once
    per operation that raised the flag, so the counts are operations, not array elements.
    """

    def handler(kind: str, flag: int) -> None:
        """Count one floating-point error of kind ``kind``."""
        counts[kind] = counts.get(kind, 0) + 1

    with np.errstate(all="call", call=handler):
        yield


def fp_warned(counts: dict[str, int]) -> bool:
    """Whether any overflow, underflow or invalid-operation warning was counted."""
    return any(counts.get(kind) for kind in ("overflow", "underflow", "invalid"))


def warm_up_sinkhorn(d: int, k: int, seed: int) -> float:
    """Compile ``ballot_dask``'s Sinkhorn kernels (both roundings); return the seconds spent."""
    X = make_data(50 * k, d, k, "blobs", seed=seed, separation=4.0)
    start = time.perf_counter()
    for rounding in ROUNDINGS:
        balanced_assign(X, X[:k].copy(), method="sinkhorn", rounding=rounding)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- part 1: exact


def run_exact_pair(n: int, args: Any) -> dict:
    """ballot's n x n Hungarian vs our exact step on the same data; objectives from labels."""
    X = make_data(n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    centers = random_rows(X, args.k, seed=args.seed)
    C = cost_matrix(X, centers)
    rows, cols = ballot_marginals(n, args.k)
    t_b, times_b, F = time_call(
        lambda: solve_exact_kantorovich(C, rows, cols), args.hungarian_repeats
    )
    labels_b = F.argmax(axis=1)
    entries = np.unique(F[F != 0])
    t_o, times_o, res = time_call(lambda: balanced_assign(X, centers), args.repeats)
    obj_b, obj_o = label_cost(C, labels_b), label_cost(C, res.labels)
    ballot_C = compute_cost_matrix(X, centers)
    return {
        "n": n,
        "ballot_time": t_b,
        "ballot_times": times_b,
        "ours_time": t_o,
        "ours_times": times_o,
        "speedup": t_b / t_o,
        "ballot_objective": obj_b,
        "ours_objective": obj_o,
        "ours_objective_reported": res.objective,
        "objective_rel_diff": relative_difference(obj_b, obj_o),
        "ballot_size_stats": size_stats(labels_b, args.k),
        "ours_size_stats": size_stats(res.labels, args.k),
        "ballot_plan_entries": entries.tolist(),
        "ballot_expanded_bytes": expanded_bytes(n, args.k),
        "ballot_cost_matrix_max_abs_diff": float(np.abs(ballot_C - C).max()),
        "certificate": certificate_summary(res.certificate),
    }


def run_exact_ours(n: int, args: Any) -> dict:
    """Our exact step alone (ballot's expanded matrix would not fit); ballot's bytes."""
    X = make_data(n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    centers = random_rows(X, args.k, seed=args.seed)
    t_o, times_o, res = time_call(lambda: balanced_assign(X, centers), args.repeats)
    return {
        "n": n,
        "ballot_time": None,
        "ours_time": t_o,
        "ours_times": times_o,
        "ours_objective": res.objective,
        "ours_size_stats": size_stats(res.labels, args.k),
        "ballot_expanded_bytes": expanded_bytes(n, args.k),
        "certificate": certificate_summary(res.certificate),
    }


def extrapolate(rows: list[dict], n: int) -> dict | None:
    """Power law ``t = a n^b`` through ballot's times at its two largest n; the estimate at ``n``.

    Only the two largest sizes: at small n the matrix fits in cache and the growth is steeper.
    """
    pts = sorted((r["n"], r["ballot_time"]) for r in rows if r.get("ballot_time"))[-2:]
    if len(pts) < 2 or pts[0][0] == pts[1][0]:
        return None
    logn, logt = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    b, a = np.polyfit(logn, logt, 1)
    return {"exponent": float(b), "n": n, "seconds": float(np.exp(a) * n**b)}


def report_exact(rows: list[dict], large_n: int) -> dict:
    """Print the exact-step table and ballot's memory at ``large_n`` (the last row, ours only).

    Returns the headline figures.
    """

    def ballot_or(key: str) -> Callable[[dict], Any]:
        """Column getter: the row's ``key`` when ballot ran, else ``"not run"``."""
        return lambda r: r[key] if r.get("ballot_time") is not None else "not run"

    def spreads(r: dict) -> str:
        """Size spreads of ballot's and our labels, ``ballot/ours`` (``-`` when not run)."""
        ballot = r["ballot_size_stats"]["spread"] if "ballot_size_stats" in r else "-"
        return f"{ballot}/{r['ours_size_stats']['spread']}"

    columns = [
        ("n", lambda r: r["n"]),
        ("ballot [s]", ballot_or("ballot_time")),
        ("ours [s]", lambda r: r["ours_time"]),
        ("speed-up", ballot_or("speedup")),
        ("ballot objective", ballot_or("ballot_objective")),
        ("ours objective", lambda r: r["ours_objective"]),
        ("rel.diff", ballot_or("objective_rel_diff")),
        ("size spread b/o", spreads),
        ("ballot n*n*8 [GB]", lambda r: r["ballot_expanded_bytes"] / GB),
        ("ours certified", lambda r: r["certificate"]["optimal"]),
    ]
    print("## 1. exact assignment step (objective = sum_i C[i, label_i], same C)")
    print(table(columns, rows))
    large = rows[-1]  # ours alone at large_n
    measured = [r for r in rows if r.get("ballot_time") is not None]
    fit = extrapolate(measured, large_n)
    gb = large["ballot_expanded_bytes"] / GB
    print()
    print(
        f"n = {large_n}: ballot's expanded cost np.repeat(C, n/k, axis=1) would need "
        f"{large_n} x {large_n} x 8 B = {large['ballot_expanded_bytes']:.4g} B = {gb:.4g} GB "
        f"({large['ballot_expanded_bytes'] / 2**30:.4g} GiB) for that matrix alone: not run"
    )
    if fit is not None:
        print(
            f"ballot time ~ n^{fit['exponent']:.2f} between its two largest n; extrapolated to "
            f"n = {large_n}: {fit['seconds']:.3g} s = {fit['seconds'] / 3600:.3g} h (estimate)"
        )
    print(f"ours at n = {large_n}: {large['ours_time']:.3g} s, certificate {large['certificate']}")
    return {
        "exact_max_abs_objective_rel_diff": max(
            (abs(r["objective_rel_diff"]) for r in measured), default=None
        ),
        "exact_speedups": {str(r["n"]): r["speedup"] for r in measured},
        "ballot_expanded_gb_at_large_n": gb,
        "ballot_time_extrapolation": fit,
        "ours_time_at_large_n": large["ours_time"],
        "ours_certified_at_large_n": large["certificate"]["optimal"],
    }


# --------------------------------------------------------------------------- part 2: entropic


def run_ballot_sinkhorn(C: np.ndarray, reg: float, opt: float, args: Any) -> dict:
    """ballot's plain Sinkhorn at ``eps = reg * C.mean()``: mass, marginals, NaN, warnings."""
    n, k = C.shape
    rows, cols = ballot_marginals(n, k)
    eps = reg * float(C.mean())

    def solve() -> tuple[np.ndarray, dict[str, int]]:
        """One call, with its floating-point warnings silenced and counted."""
        counts: dict[str, int] = {}
        with counting_fp_errors(counts):
            P = solve_entropic_kantorovich(C, rows, cols, eps, max_iter=args.ballot_max_iter)
        return P, counts

    t, times, (P, counts) = time_call(solve, args.repeats)
    with np.errstate(all="ignore"):
        finite = np.isfinite(P)
        expected = float(rows.sum())
        row_sums, col_sums = P.sum(axis=1), P.sum(axis=0)
        labels = P.argmax(axis=1)
        plan_cost = n * float(np.sum(P * C)) / expected  # in ours' units (mass 1 per point)
    return {
        "method": BALLOT,
        "reg": reg,
        "eps": eps,
        "time": t,
        "times": times,
        "mass_lost": 1.0 - float(P.sum()) / expected,
        "non_finite": int(np.count_nonzero(~finite)),
        "col_marginal_error": float(np.abs(col_sums - cols).sum() / expected),
        "row_marginal_error": float(np.abs(row_sums - rows).sum() / expected),
        "zero_rows": int(np.count_nonzero(row_sums == 0)),
        "size_stats": size_stats(labels, k),
        "argmax_objective_rel": relative_difference(label_cost(C, labels), opt),
        "plan_cost_rel": relative_difference(plan_cost, opt),
        "fp_warnings": counts,
    }


def run_ours_sinkhorn(
    X: np.ndarray,
    centers: np.ndarray,
    C: np.ndarray,
    reg: float,
    rounding: str,
    opt: float,
    args: Any,
) -> dict:
    """Our Sinkhorn step (``reg`` relative to the mean cost) with ``rounding``."""
    counts: dict[str, int] = {}

    def solve() -> tuple[Any, list[str]]:
        """One call; its ConvergenceWarnings recorded, numpy warnings counted."""
        counts.clear()
        with warnings.catch_warnings(record=True) as caught, counting_fp_errors(counts):
            warnings.simplefilter("always")
            res = balanced_assign(
                X,
                centers,
                method="sinkhorn",
                reg=reg,
                sinkhorn_tol=args.sinkhorn_tol,
                sinkhorn_max_iter=args.sinkhorn_max_iter,
                rounding=rounding,
            )
        return res, [f"{w.category.__name__}: {w.message}" for w in caught]

    t, times, (res, caught) = time_call(solve, args.repeats)
    figures = [res.objective, res.plan_cost, res.marginal_error, *res.potentials]
    return {
        "method": f"{OURS} {rounding}",
        "reg": reg,
        "eps": reg * float(C.mean()),
        "time": t,
        "times": times,
        "n_iter": res.n_iter,
        "marginal_error": res.marginal_error,
        "converged": res.marginal_error <= args.sinkhorn_tol,
        "plan_cost_rel": relative_difference(res.plan_cost, opt),
        "argmax_objective_rel": relative_difference(label_cost(C, res.labels), opt),
        "size_stats": size_stats(res.labels, C.shape[1]),
        "any_nan": not bool(np.all(np.isfinite(figures))),
        "certificate": certificate_summary(res.certificate),
        "fp_warnings": dict(counts),
        "warnings": caught,
    }


def report_entropic(ballot_rows: list[dict], ours_rows: list[dict], opt: float) -> dict:
    """Print the two entropic tables and the warning summary; return the headline."""

    def fp_text(r: dict) -> str:
        """The counted numpy floating-point warnings of a row, e.g. ``underflow 202``."""
        return ", ".join(f"{kind} {count}" for kind, count in r["fp_warnings"].items()) or "none"

    ballot_columns = [
        ("reg", lambda r: r["reg"]),
        ("eps", lambda r: r["eps"]),
        ("time [s]", lambda r: r["time"]),
        ("mass lost", lambda r: r["mass_lost"]),
        ("NaN/inf", lambda r: "yes" if r["non_finite"] else "no"),
        ("col err", lambda r: r["col_marginal_error"]),
        ("row err", lambda r: r["row_marginal_error"]),
        ("zero rows", lambda r: r["zero_rows"]),
        ("size spread", lambda r: r["size_stats"]["spread"]),
        ("plan/opt-1", lambda r: r["plan_cost_rel"]),
        ("argmax/opt-1", lambda r: r["argmax_objective_rel"]),
        ("fp warnings", fp_text),
    ]
    ours_columns = [
        ("method", lambda r: r["method"]),
        ("reg", lambda r: r["reg"]),
        ("time [s]", lambda r: r["time"]),
        ("iters", lambda r: r["n_iter"]),
        ("marginal err", lambda r: r["marginal_error"]),
        ("converged", lambda r: r["converged"]),
        ("plan/opt-1", lambda r: r["plan_cost_rel"]),
        ("labels/opt-1", lambda r: r["argmax_objective_rel"]),
        ("size spread", lambda r: r["size_stats"]["spread"]),
        ("NaN", lambda r: "yes" if r["any_nan"] else "no"),
        ("certified", lambda r: r["certificate"]["optimal"] if r["certificate"] else "-"),
        ("fp warnings", fp_text),
    ]
    print("## 2. entropic step; errors are 1-norms relative to the total mass")
    print(f"exact optimum (ours, certified): {opt:.10g}")
    print()
    print(f"{BALLOT}: solve_entropic_kantorovich, eps = reg * C.mean(), marginals 1/n, 1/k")
    print(table(ballot_columns, ballot_rows))
    warned = any(fp_warned(r["fp_warnings"]) for r in ballot_rows)
    print(f"{BALLOT} overflow/underflow/invalid warnings: {'yes' if warned else 'no'}")
    print()
    print(f"{OURS}: balanced_assign(method='sinkhorn', reg=reg)")
    print(table(ours_columns, ours_rows))
    ours_warned = any(fp_warned(r["fp_warnings"]) for r in ours_rows)
    print(f"{OURS} overflow/underflow/invalid warnings: {'yes' if ours_warned else 'no'}")
    exact_rows = [r for r in ours_rows if r["method"].endswith("exact")]
    return {
        "ballot_mass_lost": {str(r["reg"]): r["mass_lost"] for r in ballot_rows},
        "ballot_non_finite": {str(r["reg"]): r["non_finite"] for r in ballot_rows},
        "ballot_fp_warnings": warned,
        "ours_marginal_error": {
            str(r["reg"]): r["marginal_error"] for r in ours_rows if r["method"].endswith("argmax")
        },
        "ours_any_nan": any(r["any_nan"] for r in ours_rows),
        "ours_fp_warnings": ours_warned,
        "ours_exact_rounding_spread_zero": all(r["size_stats"]["spread"] == 0 for r in exact_rows),
    }


def main() -> None:
    """Run both parts, print the tables, write the JSON."""
    args = parse_args()
    info = machine_info()
    info["versions"]["ballot"] = version("ballot")
    print_header(f"{NAME}: assignment step vs {BALLOT} (exact and entropic)", info, args)
    warm = warm_up(args.d, args.k, fit=False, seed=args.seed)
    warm += warm_up_sinkhorn(args.d, args.k, args.seed)
    print(f"warm-up (numba compilation): {warm:.2f} s\n")

    exact_rows = [run_exact_pair(n, args) for n in args.exact_n]
    exact_rows.append(run_exact_ours(args.large_n, args))
    headline = report_exact(exact_rows, args.large_n)
    print()

    n = args.sinkhorn_n
    X = make_data(n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    centers = random_rows(X, args.k, seed=args.seed)
    C = cost_matrix(X, centers)
    best = balanced_assign(X, centers)
    opt = label_cost(C, best.labels)
    ballot_rows, ours_rows = [], []
    for reg in args.regs:
        ballot_rows.append(run_ballot_sinkhorn(C, reg, opt, args))
        for rounding in ROUNDINGS:
            ours_rows.append(run_ours_sinkhorn(X, centers, C, reg, rounding, opt, args))
    headline |= report_entropic(ballot_rows, ours_rows, opt)
    headline["entropic_optimum"] = opt
    headline["entropic_optimum_certificate"] = certificate_summary(best.certificate)

    rows = [{"section": "exact", "method": f"{BALLOT} vs {OURS}", **r} for r in exact_rows]
    rows += [{"section": "entropic", **r} for r in ballot_rows + ours_rows]
    path = write_results(NAME, args, info, {"rows": rows, "headline": headline})
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
