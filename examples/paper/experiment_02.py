"""Experiment 2 (Figure 1): exact recovery rate against separation, balanced stochastic ball model.

n = 100 points uniform in k = 2 unit discs of R^2 whose centres are ``delta`` apart; for each
``delta``, trials of BalLOT, E-BalLOT, Lloyd and the Hungarian method, all from the same
k-means++ start; the share of trials that recover the planted clustering exactly. The paper's
claims: BalLOT and the Hungarian method give the same clustering (the LP's vertices are the
matchings), E-BalLOT is slightly below, Lloyd is worst. Each trial records whether BalLOT's
clustering equals the Hungarian one.

    python examples/paper/experiment_02.py [--quick | --tiny] [--out DIR] [--seed N]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _figures
import _methods
import _records
import numpy as np

from ballot_dask.datasets import stochastic_ball
from ballot_dask.initialization import initial_centers

EXPERIMENT = "experiment_02"
FIGURE = "figure_1.png"
METHODS = ("BalLOT", "E-BalLOT", "Lloyd", "Hungarian")
FIELDS = (
    "delta",
    "trial",
    "method",
    "recovered",
    "same_as_hungarian",
    "n_iter",
    "short_steps",
    "seconds",
)


@dataclass(frozen=True)
class Parameters:
    deltas: tuple[float, ...]
    trials: int
    n: int = 100
    k: int = 2
    d: int = 2


def _grid(start: float, stop: float, step: float) -> tuple[float, ...]:
    count = round((stop - start) / step) + 1
    return tuple(round(start + i * step, 10) for i in range(count))


SETTINGS = {
    "full": Parameters(deltas=_grid(1.5, 2.5, 0.05), trials=100),
    "quick": Parameters(deltas=_grid(1.5, 2.5, 0.1), trials=20),
    "tiny": Parameters(deltas=(1.7, 1.9, 2.1), trials=4),
}


def run_trial(params: Parameters, delta: float, seed: int) -> list[dict[str, Any]]:
    """All methods on one draw of the model, from one k-means++ start."""
    X, planted, _ = stochastic_ball(
        params.n, params.d, params.k, delta=delta, chunks=params.n, seed=seed
    )
    X, planted = X.compute(), planted.compute()
    init = initial_centers(X, params.k, "k-means++", np.random.RandomState(seed))
    fits = {}
    seconds = {}
    for name in METHODS:
        start = time.perf_counter()
        fits[name] = _methods.METHODS[name](X, init)
        seconds[name] = time.perf_counter() - start
    reference = fits["Hungarian"].labels
    return [
        {
            "method": name,
            "recovered": _methods.same_partition(fit.labels, planted),
            "same_as_hungarian": _methods.same_partition(fit.labels, reference),
            "n_iter": fit.n_iter,
            "short_steps": fit.short_steps,
            "seconds": seconds[name],
        }
        for name, fit in fits.items()
    ]


def run(params: Parameters, base_seed: int) -> list[dict[str, Any]]:
    rows = []
    for i, delta in enumerate(params.deltas):
        for trial in range(params.trials):
            seed = base_seed * 1_000_000 + i * 10_000 + trial
            for row in run_trial(params, delta, seed):
                rows.append({"delta": delta, "trial": trial, **row})
    return rows


def rates(rows: Sequence[dict[str, Any]], method: str, deltas: Sequence[float]) -> np.ndarray:
    """Recovery rate of ``method`` at each separation."""
    out = []
    for delta in deltas:
        hits = [r["recovered"] for r in rows if r["method"] == method and r["delta"] == delta]
        out.append(float(np.mean(hits)))
    return np.array(out)


def summarize(rows: Sequence[dict[str, Any]], params: Parameters) -> dict[str, Any]:
    def agreement(method: str) -> str:
        mine = [r for r in rows if r["method"] == method]
        return f"{sum(r['same_as_hungarian'] for r in mine)}/{len(mine)}"

    return {
        "ballot_equals_hungarian": agreement("BalLOT"),
        "e_ballot_equals_hungarian": agreement("E-BalLOT"),
        "lloyd_equals_hungarian": agreement("Lloyd"),
        "recovery_rate": {
            m: dict(
                zip(
                    map(str, params.deltas),
                    rates(rows, m, params.deltas).round(3).tolist(),
                    strict=True,
                )
            )
            for m in METHODS
        },
    }


_LINES: dict[str, dict[str, Any]] = {
    "BalLOT": {"linewidth": 6.0, "alpha": 0.45, "markersize": 10},
    "E-BalLOT": {"linewidth": 2.2, "linestyle": "-.", "markersize": 6},
    "Lloyd": {"linewidth": 2.2, "markersize": 7},
    "Hungarian": {"linewidth": 1.2, "linestyle": "--", "markersize": 9, "zorder": 3},
}


def plot(rows: Sequence[dict[str, Any]], params: Parameters, path: Any) -> None:
    deltas = np.array(params.deltas)
    with _figures.figure() as (fig, (ax,)):
        for method in METHODS:
            style = dict(_figures.METHOD_STYLE[method])
            # the balanced methods often coincide: drawn from the widest line to the thinnest
            style.update(_LINES[method])
            ax.plot(deltas, rates(rows, method, params.deltas), label=method, **style)
        ballot = [r for r in rows if r["method"] == "BalLOT"]
        same = sum(r["same_as_hungarian"] for r in ballot)
        ax.set_xlabel(r"separation $\Delta$ (distance between ball centres)")
        ax.set_ylabel("exact recovery rate")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(
            f"n = {params.n} points in $\\mathbb{{R}}^{params.d}$, k = {params.k}, "
            f"{params.trials} trials per $\\Delta$"
        )
        ax.legend(loc="lower right", title=f"BalLOT = Hungarian: {same}/{len(ballot)} trials")
        _figures.save(fig, path)


def main(argv: Sequence[str] | None = None) -> _records.Record:
    run_ = _records.parse_run(__doc__.splitlines()[0], argv)
    params = _records.choose(SETTINGS, run_)
    record = _records.Record(EXPERIMENT, run_, params)
    with _records.timed(record):
        rows = run(params, run_.seed)
    _records.write_csv(run_.path(f"{EXPERIMENT}.csv"), rows, FIELDS)
    plot(rows, params, run_.path(FIGURE))
    record.summary = summarize(rows, params)
    record.write()
    return record


if __name__ == "__main__":
    main()
