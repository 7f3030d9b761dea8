"""E-BalLOT's entropic step: passes of the Newton semi-dual solver vs Sinkhorn's iterations.

One entropic assignment step (``balanced_assign(..., method="sinkhorn")``, the regularisation
``reg`` relative to the mean cost, column error ``sinkhorn_tol * n`` in the 1-norm) from a cold
start, on Gaussian mixtures from overlapping to well separated, k from 16 to 256, and regs
from 1e-1 to 1e-4.  Each pass over the data is one scheduler round on a Dask cluster, so the
pass count is what a fit on a cluster pays.  The peer is POT's ``ot.bregman.sinkhorn_log`` on
the same entropic problem (same cost matrix and absolute regularisation, marginals scaled to
mass one), its iteration count capped at ``--pot-max-iter``: each Sinkhorn iteration is one
pass.  Columns: passes, marginal error reached and time of each, and the ratio of POT's
iterations to our passes measured in the same run.  With ``--dask``, the same step on a Dask
array of the same rows (four row chunks, the threaded scheduler): its scheduler rounds, which
a cluster pays one by one, and the largest difference of its potentials from the NumPy step's.

A cold step at a small regularisation (four stages or more below its first temperature)
starts from the exact step's potentials (their passes are counted in ``passes``).

Target: at most 30 passes per step for any reg down to 1e-4.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import ot
from _common import base_parser, machine_info, parse_with_small, print_header, table, write_results

from ballot_dask import balanced_assign

NAME = "bench_entropic"
TARGET = 30
# name: (d, k, separation of the means in within-cluster standard deviations)
DATASETS = {
    "overlapping k=16": (8, 16, 0.3),
    "blobs k=16": (8, 16, 3.0),
    "separated d=2 k=16": (2, 16, 6.0),
    "separated k=64": (16, 64, 6.0),
    "mixture k=256": (16, 256, 1.0),
}


def parse_args() -> Any:
    """Command-line options."""
    parser = base_parser(__doc__.splitlines()[0], timed=False)  # one step each: passes
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reg", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3, 1e-4])
    parser.add_argument("--tol", type=float, default=1e-3, help="sinkhorn_tol (share of n)")
    parser.add_argument("--max-passes", type=int, default=400, help="sinkhorn_max_iter")
    parser.add_argument("--pot-max-iter", type=int, default=2_000)
    parser.add_argument("--no-pot", action="store_true", help="skip POT")
    parser.add_argument(
        "--dask", action="store_true", help="also on a Dask array: its rounds per step"
    )
    return parse_with_small(parser, n=4_000, reg=[1e-2, 1e-4], pot_max_iter=300)


def _data(n: int, d: int, k: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = separation * rng.standard_normal((k, d))
    X = means[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return X, X[rng.choice(n, k, replace=False)]


def _pot(X: np.ndarray, centers: np.ndarray, eps: float, args: Any) -> dict[str, Any]:
    n, k = X.shape[0], centers.shape[0]
    C = ot.dist(X, centers)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = ot.bregman.sinkhorn_log(
            np.full(n, 1.0 / n),
            np.full(k, 1.0 / k),
            C,
            eps,  # mass one instead of n: the same plan / n, the same regularisation
            numItermax=args.pot_max_iter,
            stopThr=args.tol / 10,
            log=True,
        )
    seconds = time.perf_counter() - start
    error = float(np.abs(plan.sum(axis=0) - 1.0 / k).sum())  # share of the mass
    return {"iterations": int(log["niter"]), "error": error, "seconds": seconds}


def _on_dask(
    X: np.ndarray, centers: np.ndarray, reg: float, args: Any, potentials: np.ndarray
) -> dict[str, Any]:
    """The same step on a Dask array of ``X`` (four row chunks): the rounds it made (all of
    them: the mean cost's and the rounding's too)."""
    import dask
    import dask.array as da

    Xd = da.from_array(X, chunks=(-(-X.shape[0] // 4), X.shape[1]))
    with dask.config.set(scheduler="threads"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = balanced_assign(
            Xd,
            centers,
            method="sinkhorn",
            reg=reg,
            sinkhorn_tol=args.tol,
            sinkhorn_max_iter=args.max_passes,
        )
    return {
        "dask_passes": int(result.n_iter),
        "dask_rounds": int(result.passes["rounds"]),
        "dask_error": float(result.marginal_error),
        "dask_potentials_diff": float(np.abs(result.potentials - potentials).max()),
    }


def main() -> None:
    """Run the grid and print the table."""
    args = parse_args()
    info = machine_info()
    print_header(NAME, info, args)
    rows = []
    for name, (d, k, separation) in DATASETS.items():
        X, centers = _data(args.n, d, k, separation, args.seed)
        mean_cost = float(ot.dist(X, centers).mean())
        for reg in args.reg:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = balanced_assign(
                    X,
                    centers,
                    method="sinkhorn",
                    reg=reg,
                    sinkhorn_tol=args.tol,
                    sinkhorn_max_iter=args.max_passes,
                )
            row: dict[str, Any] = {
                "data": name,
                "reg": reg,
                "passes": int(result.n_iter),
                "error": float(result.marginal_error),
                "seconds": time.perf_counter() - start,
                "target_met": bool(result.n_iter <= TARGET and result.marginal_error <= args.tol),
            }
            if args.dask:
                row.update(_on_dask(X, centers, reg, args, result.potentials))
                row["target_met"] = row["target_met"] and row["dask_rounds"] <= TARGET
            if not args.no_pot:
                pot = _pot(X, centers, reg * mean_cost, args)
                row.update({f"pot_{key}": value for key, value in pot.items()})
                row["iteration_ratio"] = pot["iterations"] / max(result.n_iter, 1)
            rows.append(row)
            print(f"{name} reg={reg:g}: {row['passes']} passes", flush=True)
    columns = [
        ("data", lambda r: r["data"]),
        ("reg", lambda r: r["reg"]),
        ("passes", lambda r: r["passes"]),
        ("error", lambda r: r["error"]),
        ("s", lambda r: r["seconds"]),
    ]
    if args.dask:
        columns += [
            ("Dask rounds", lambda r: r["dask_rounds"]),
            ("Dask error", lambda r: r["dask_error"]),
            ("|v - v_numpy|", lambda r: r["dask_potentials_diff"]),
        ]
    if not args.no_pot:
        columns += [
            ("POT iters", lambda r: r["pot_iterations"]),
            ("POT error", lambda r: r["pot_error"]),
            ("POT s", lambda r: r["pot_seconds"]),
            ("iters/passes", lambda r: r["iteration_ratio"]),
        ]
    columns.append((f"<= {TARGET}", lambda r: "yes" if r["target_met"] else "NO"))
    print(table(columns, rows))
    met = sum(r["target_met"] for r in rows)
    print(f"target (<= {TARGET} passes at sinkhorn_tol={args.tol:g}): met on {met}/{len(rows)}")
    path = write_results(NAME, args, info, {"rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
