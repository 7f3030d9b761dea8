"""One exact balanced assignment step: ``ballot_dask.balanced_assign`` vs POT.

Peers, on the same points and centers (k random data points), equal sizes:

- ``ot.emd`` (network simplex) on the dense n x k squared-distance matrix ``ot.dist(X, centers)``,
  timed both without and with building the cost matrix;
- ``ot.bregman.sinkhorn_log`` on ``C / C.max()`` with a small ``reg`` and capped iterations,
  labels by row argmax of the plan (not balanced in general).

Every objective is recomputed by this script as ``sum_i ||x_i - mu_{label_i}||^2`` from the labels.
Targets: speed-up ``emd time / exact time >= 100``, relative objective difference ``<= 1e-9``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import ot
from _common import (
    add_data_args,
    assignment_cost,
    base_parser,
    certificate_summary,
    equal_sizes,
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

from ballot_dask import balanced_assign

NAME = "bench_assign"
SPEEDUP_TARGET = 100.0
OBJECTIVE_TARGET = 1e-9


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="points")
    parser.add_argument("--k", type=int, default=10, help="clusters")
    parser.add_argument("--d", type=int, default=2, help="features")
    add_data_args(parser, data="blobs", separation=4.0)
    parser.add_argument("--emd-max-iter", type=int, default=10**8, help="ot.emd numItermax")
    parser.add_argument("--sinkhorn-reg", type=float, default=1e-3, help="reg on C / C.max()")
    parser.add_argument("--sinkhorn-iter", type=int, default=1000, help="sinkhorn numItermax")
    parser.add_argument("--no-sinkhorn", action="store_true", help="skip the Sinkhorn peer")
    return parse_with_small(parser, n=5_000)


def run_exact(X: np.ndarray, centers: np.ndarray, sizes: np.ndarray | None, repeats: int) -> dict:
    """Time ``balanced_assign(X, centers)`` (exact) and collect its figures."""
    t, times, res = time_call(lambda: balanced_assign(X, centers, sizes=sizes), repeats)
    return {
        "method": "ballot_dask exact",
        "time_solve": t,
        "time_total": t,
        "times": times,
        "objective": assignment_cost(X, centers, res.labels),
        "objective_reported": res.objective,
        "size_stats": size_stats(res.labels, centers.shape[0]),
        "certificate": certificate_summary(res.certificate),
        "n_iter": res.n_iter,
        "band_size": res.band_size,
        "passes": res.passes,
    }


def run_emd(
    X: np.ndarray, centers: np.ndarray, b: np.ndarray, repeats: int, max_iter: int
) -> tuple[dict, np.ndarray, float]:
    """Time ``ot.dist`` and ``ot.emd`` separately; return the row, the cost matrix, dist time."""
    t_dist, dist_times, C = time_call(lambda: ot.dist(X, centers), repeats)
    a = np.ones(X.shape[0])
    t, times, (G, log) = time_call(lambda: ot.emd(a, b, C, numItermax=max_iter, log=True), repeats)
    labels = G.argmax(axis=1)
    fractional = int(np.count_nonzero(G.max(axis=1) < 1.0 - 1e-9))
    row = {
        "method": "POT ot.emd",
        "time_solve": t,
        "time_total": t + t_dist,
        "times": times,
        "dist_times": dist_times,
        "objective": assignment_cost(X, centers, labels),
        "plan_cost": float(np.sum(G * C)),
        "size_stats": size_stats(labels, centers.shape[0]),
        "fractional_rows": fractional,
        "result_code": int(log.get("result_code", -1)),
        "warning": log.get("warning"),
    }
    return row, C, t_dist


def run_sinkhorn(
    X: np.ndarray,
    centers: np.ndarray,
    C: np.ndarray,
    t_dist: float,
    b: np.ndarray,
    args: Any,
) -> dict:
    """Time ``ot.bregman.sinkhorn_log`` on ``C / C.max()``; objective of the argmax labels."""
    a = np.ones(X.shape[0])

    def solve() -> tuple[np.ndarray, dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Sinkhorn did not converge"
            return ot.bregman.sinkhorn_log(
                a, b, C / C.max(), reg=args.sinkhorn_reg, numItermax=args.sinkhorn_iter, log=True
            )

    t, times, (P, log) = time_call(solve, args.repeats)
    labels = P.argmax(axis=1)
    return {
        "method": f"POT sinkhorn_log reg={args.sinkhorn_reg:g}",
        "time_solve": t,
        "time_total": t + t_dist,
        "times": times,
        "objective": assignment_cost(X, centers, labels),
        "plan_cost": float(np.sum(P * C)),
        "size_stats": size_stats(labels, centers.shape[0]),
        "marginal_error": float(np.abs(P.sum(axis=0) - b).sum() / X.shape[0]),
        "n_iter": int(log.get("niter", args.sinkhorn_iter - 1)) + 1,
    }


def report(rows: list[dict], exact: dict, emd: dict) -> dict:
    """Print the table and the headline ratios; return the headline figures."""
    columns = [
        ("method", lambda r: r["method"]),
        ("time solve [s]", lambda r: r["time_solve"]),
        ("time +dist [s]", lambda r: r["time_total"]),
        ("total/exact", lambda r: r["time_total"] / exact["time_total"]),
        ("objective", lambda r: r["objective"]),
        ("rel.diff vs emd", lambda r: relative_difference(r["objective"], emd["objective"])),
        ("size spread", lambda r: r["size_stats"]["spread"]),
    ]
    print(table(columns, rows))
    headline = {
        "speedup_emd_solve": emd["time_solve"] / exact["time_solve"],
        "speedup_emd_total": emd["time_total"] / exact["time_solve"],
        "objective_rel_diff": abs(relative_difference(exact["objective"], emd["objective"])),
    }
    headline["speedup_target_met"] = headline["speedup_emd_solve"] >= SPEEDUP_TARGET
    headline["objective_target_met"] = headline["objective_rel_diff"] <= OBJECTIVE_TARGET
    print()
    print(
        f"speed-up ot.emd solve / exact     : {headline['speedup_emd_solve']:9.1f}x "
        f"(target >= {SPEEDUP_TARGET:g}: {'met' if headline['speedup_target_met'] else 'NOT met'})"
    )
    print(f"speed-up ot.dist+ot.emd / exact   : {headline['speedup_emd_total']:9.1f}x")
    print(
        f"|objective exact - emd| / emd     : {headline['objective_rel_diff']:9.2e} "
        f"(target <= {OBJECTIVE_TARGET:g}: "
        f"{'met' if headline['objective_target_met'] else 'NOT met'})"
    )
    print(
        f"ot.emd: result_code {emd['result_code']}, fractional rows {emd['fractional_rows']}, "
        f"warning {emd['warning']!r}"
    )
    print(
        f"exact : certificate {exact['certificate']}, Newton steps {exact['n_iter']}, "
        f"band {exact['band_size']}, passes {exact['passes']}"
    )
    return headline


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_args()
    info = machine_info()
    print_header(f"{NAME}: one exact balanced assignment step vs POT", info, args)
    X = make_data(args.n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    centers = random_rows(X, args.k, seed=args.seed)
    b = equal_sizes(args.n, args.k).astype(np.float64)
    # Equal sizes are the default; pass them only when k does not divide n, so that POT and
    # ballot_dask solve the very same LP (the default then lets the LP place the extra points).
    sizes = None if args.n % args.k == 0 else b.astype(np.int64)
    print(f"warm-up (numba compilation): {warm_up(args.d, args.k, fit=False):.2f} s\n")

    exact = run_exact(X, centers, sizes, args.repeats)
    emd, C, t_dist = run_emd(X, centers, b, args.repeats, args.emd_max_iter)
    rows = [exact, emd]
    if not args.no_sinkhorn:
        rows.append(run_sinkhorn(X, centers, C, t_dist, b, args))
    headline = report(rows, exact, emd)
    path = write_results(NAME, args, info, {"rows": rows, "headline": headline})
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
