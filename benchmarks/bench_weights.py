"""Sample weights: the weighted exact step and fit vs POT, repeated rows and scikit-learn.

On the same points, weights and centers (k random data points):

- one assignment step: ``balanced_assign(X, centers, sample_weight=w)`` against ``ot.emd``
  with the marginals ``(w, sum(w) / k)`` on the n x k cost matrix (the same LP): time ratio
  and relative objective difference;
- a fit of ``--iters`` Lloyd iterations from the same centers: the weighted fit against, for
  whole-number weights (``--weights int``), the unweighted fit of the rows repeated ``w_i``
  times (same objective expected), and against scikit-learn's weighted ``KMeans`` (Lloyd,
  unbalanced: its largest cluster mass over the mean is printed).

Weights: ``int`` (1, 2 or 3), ``frac`` (uniform on [0.1, 2.1]) or ``lognormal`` (sigma 1,
heavy-tailed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ot
from _common import (
    add_data_args,
    base_parser,
    machine_info,
    make_data,
    parse_with_small,
    print_header,
    random_rows,
    relative_difference,
    table,
    time_call,
    warm_up,
    write_results,
)
from sklearn.cluster import KMeans

from ballot_dask import BalancedKMeans, balanced_assign

NAME = "bench_weights"


def parse_args() -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="points")
    parser.add_argument("--k", type=int, default=16, help="clusters")
    parser.add_argument("--d", type=int, default=8, help="features")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations of the fits")
    parser.add_argument(
        "--weights", choices=("int", "frac", "lognormal"), default="int", help="weights"
    )
    parser.add_argument("--no-emd", action="store_true", help="skip the ot.emd peer")
    add_data_args(parser, data="blobs", separation=4.0)
    return parse_with_small(parser, n=10_000, iters=10)


def make_weights(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7)
    if kind == "int":
        return rng.integers(1, 4, size=n).astype(np.float64)
    if kind == "frac":
        return rng.random(n) * 2.0 + 0.1
    return rng.lognormal(sigma=1.0, size=n)


def main() -> None:
    args = parse_args()
    info = machine_info()
    print_header(f"{NAME}: weighted balanced k-means", info, args)
    X = make_data(args.n, args.d, args.k, args.data, seed=args.seed, separation=args.separation)
    w = make_weights(args.weights, args.n, args.seed)
    centers = random_rows(X, args.k, seed=args.seed)
    total, k = float(w.sum()), args.k
    print(f"warm-up (numba compilation): {warm_up(args.d, args.k):.2f} s")
    balanced_assign(X[: 50 * k], centers, sample_weight=w[: 50 * k])  # the weighted kernels
    rows: list[dict[str, Any]] = []
    headline: dict[str, Any] = {}

    def row(what: str, method: str, seconds: float, **extra: Any) -> dict[str, Any]:
        entry = {
            "what": what,
            "method": method,
            "time": seconds,
            "iterations": None,
            "objective": None,
            "certified": None,
            "largest_over_mean": None,
            "split_rows": None,
        }
        entry.update(extra)
        rows.append(entry)
        return entry

    # -- one step against ot.emd (the same LP: equal fractional masses)
    shares = np.full(k, total / k)
    t_ours, _, res = time_call(
        lambda: balanced_assign(X, centers, sample_weight=w, sizes=shares), args.repeats
    )
    row(
        "step",
        "ballot-dask",
        t_ours,
        objective=res.objective,
        certified=res.certificate.optimal,
        largest_over_mean=float(res.sizes.max() / (total / k)),
        split_rows=int(res.split_rows.size),
    )
    if not args.no_emd:
        C = ot.dist(X, centers)
        t_emd, _, plan = time_call(lambda: ot.emd(w, shares, C, numItermax=10**8), 1)
        emd_objective = float((plan * C).sum())
        split = int(np.count_nonzero((plan > 0).sum(axis=1) > 1))
        row("step", "POT ot.emd", t_emd, objective=emd_objective, split_rows=split)
        headline["emd_over_ours_step"] = t_emd / t_ours
        headline["step_objective_rel_diff"] = relative_difference(res.objective, emd_objective)

    # -- fits from the same centers
    def ours() -> Any:
        model = BalancedKMeans(k, init=centers, max_iter=args.iters, tol=0)
        return model.fit(X, sample_weight=w)

    t_fit, _, fit = time_call(ours, args.repeats)
    row(
        "fit",
        "ballot-dask weighted",
        t_fit,
        iterations=fit.n_iter_,
        objective=fit.inertia_,
        certified=fit.certificate_.optimal,
        largest_over_mean=float(fit.sizes_.max() / (total / k)),
        split_rows=int(fit.split_rows_.size),
    )
    if args.weights == "int":
        repeated = np.repeat(X, w.astype(np.int64), axis=0)

        def on_repeated() -> Any:
            model = BalancedKMeans(k, init=centers, max_iter=args.iters, tol=0)
            return model.fit(repeated)

        t_rep, _, ref = time_call(on_repeated, args.repeats)
        row(
            "fit",
            f"ballot-dask on the {repeated.shape[0]} repeated rows",
            t_rep,
            iterations=ref.n_iter_,
            objective=ref.inertia_,
            certified=ref.certificate_.optimal,
            largest_over_mean=float(ref.sizes_.max() / (total / k)),
        )
        headline["weighted_over_repeated_fit"] = t_fit / t_rep
        headline["fit_objective_rel_diff"] = relative_difference(fit.inertia_, ref.inertia_)

    def sklearn() -> Any:
        model = KMeans(k, init=centers, n_init=1, max_iter=args.iters, tol=0, algorithm="lloyd")
        return model.fit(X, sample_weight=w)

    t_sk, _, sk = time_call(sklearn, args.repeats)
    masses = np.bincount(sk.labels_, w, minlength=k)
    row(
        "fit",
        "scikit-learn KMeans (weighted, unbalanced)",
        t_sk,
        iterations=int(sk.n_iter_),
        objective=float(sk.inertia_),
        largest_over_mean=float(masses.max() / (total / k)),
    )
    headline["ours_over_sklearn_fit"] = t_fit / t_sk
    print()
    print(
        table(
            [
                ("", lambda r: r["what"]),
                ("method", lambda r: r["method"]),
                ("time [s]", lambda r: r["time"]),
                ("iter", lambda r: r["iterations"]),
                ("objective", lambda r: r["objective"]),
                ("certified", lambda r: r["certified"]),
                ("largest/mean mass", lambda r: r["largest_over_mean"]),
                ("split rows", lambda r: r["split_rows"]),
            ],
            rows,
        )
    )
    print()
    for key, value in headline.items():
        print(f"{key:28s}: {value:.3g}")
    path = write_results(NAME, args, info, {"rows": rows, "headline": headline})
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
