"""Experiments 13 and 14 (Figures 5 and 6): one-step misclustering from Theorem 11's start.

k = 2 balls whose points lie on the unit spheres (``|r_i| = 1``) around ``+-(delta/2) e_1`` in
R^d; the initial centres ``mu_1 = -mu_2 = (delta/2)(rho e_1 + sqrt(1 - rho^2) e_2)`` have cosine
similarity ``rho`` with the planted direction; one BalLOT step; the share of misclustered
points. Experiment 13 (Figure 5): fixed ``rho`` and ``delta``, box plots over the dimension d
with Theorem 11(b)'s exponential term ``exp(-d rho^2 delta^2 / 16)`` (red, dashed). Experiment
14 (Figure 6): fixed d, the rate against ``rho * delta`` for several ``delta``, the same term
drawn against ``rho * delta``. The paper's claims: the exponential term matches the empirical
log decay rate in d; ``rho * delta`` predicts the misclustering rate.

    python examples/paper/experiment_13_14.py [--quick | --tiny] [--out DIR] [--seed N]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _figures
import _methods
import _models
import _records
import _theory
import numpy as np

EXPERIMENT = "experiment_13_14"
FIGURES = ("figure_5.png", "figure_6.png")
FIELDS = ("experiment", "d", "delta", "rho", "trial", "misclustered", "rate")


@dataclass(frozen=True)
class Parameters:
    dimensions: tuple[int, ...]  # Experiment 13
    deltas: tuple[float, ...]  # Experiment 14
    products: tuple[float, ...]  # Experiment 14: rho * delta
    trials_13: int
    trials_14: int
    n: int = 10_000
    delta_13: float = 2.0
    rho_13: float = 0.5
    d_14: int = 10


SETTINGS = {
    "full": Parameters(
        tuple(range(4, 41, 4)),
        (2.0, 3.0, 4.0, 6.0),
        (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
        10,
        20,
    ),
    "quick": Parameters(
        tuple(range(4, 41, 4)), (2.0, 3.0, 4.0, 6.0), (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75), 5, 5
    ),
    "tiny": Parameters((4, 12, 20, 28), (2.0, 4.0), (0.5, 1.0, 1.5), 3, 3, n=4_000),
}


def theorem11_start(delta: float, rho: float, d: int) -> np.ndarray:
    """Initial centres at distance ``delta`` whose difference has cosine ``rho`` with e_1."""
    mu = np.zeros((2, d))
    mu[0, :2] = delta / 2.0 * np.array([rho, math.sqrt(1.0 - rho**2)])
    mu[1] = -mu[0]
    return mu


def run_trial(d: int, delta: float, rho: float, n: int, seed: Sequence[int]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    X, planted = _models.stochastic_ball_model(
        rng, _models.pair_centers(delta, d), n, _models.uniform_sphere
    )
    labels = _methods.one_step(X, theorem11_start(delta, rho, d))
    rate = _methods.misclustering_rate(labels, planted)
    return {"misclustered": round(rate * n), "rate": rate}


def run(params: Parameters, base_seed: int) -> list[dict[str, Any]]:
    rows = []
    delta, rho = params.delta_13, params.rho_13
    for d in params.dimensions:
        for trial in range(params.trials_13):
            row = run_trial(d, delta, rho, params.n, [base_seed, 13, d, trial])
            rows.append(
                {"experiment": 13, "d": d, "delta": delta, "rho": rho, "trial": trial, **row}
            )
    d = params.d_14
    for i, delta in enumerate(params.deltas):
        for j, product in enumerate(params.products):
            rho = product / delta
            for trial in range(params.trials_14):
                row = run_trial(d, delta, rho, params.n, [base_seed, 14, i, j, trial])
                rows.append(
                    {"experiment": 14, "d": d, "delta": delta, "rho": rho, "trial": trial, **row}
                )
    return rows


def decay_rate(rows: Sequence[dict[str, Any]]) -> float:
    """Experiment 13: minus the slope of log(median rate) on d (medians above zero only)."""
    dims, logs = [], []
    for d in sorted({r["d"] for r in rows if r["experiment"] == 13}):
        median = np.median([r["rate"] for r in rows if r["experiment"] == 13 and r["d"] == d])
        if median > 0:
            dims.append(d)
            logs.append(math.log(median))
    return -float(np.polyfit(dims, logs, 1)[0]) if len(dims) >= 2 else math.nan


def cap_decay_rate(product: float) -> float:
    """The decay rate in d of one point's chance to cross: for ``theta`` uniform on the sphere,
    ``P(<theta, u> > t)`` decays like ``(1 - t^2)^(d/2)``, ``t = rho delta / 2``."""
    return -0.5 * math.log(1.0 - (product / 2.0) ** 2)


def medians_14(rows: Sequence[dict[str, Any]], delta: float, params: Parameters) -> np.ndarray:
    out = []
    for product in params.products:
        rates = [
            r["rate"]
            for r in rows
            if r["experiment"] == 14
            and r["delta"] == delta
            and math.isclose(r["rho"] * delta, product)
        ]
        out.append(float(np.median(rates)))
    return np.array(out)


def summarize(rows: Sequence[dict[str, Any]], params: Parameters) -> dict[str, Any]:
    product = params.rho_13 * params.delta_13
    exp13 = [r for r in rows if r["experiment"] == 13]
    bound = _theory.theorem11_exponential([r["d"] for r in exp13], params.rho_13, params.delta_13)
    below = int(np.sum(np.array([r["rate"] for r in exp13]) <= bound))
    by_delta = {str(delta): medians_14(rows, delta, params).tolist() for delta in params.deltas}
    spread = np.array(list(by_delta.values()))
    return {
        "experiment_13": {
            "measured_decay_rate_per_dimension": round(decay_rate(rows), 4),
            "theorem11_exponent_per_dimension": product**2 / 16.0,
            "sphere_cap_rate_per_dimension": round(cap_decay_rate(product), 4),
            "trials_at_or_below_exponential_term": f"{below}/{len(exp13)}",
        },
        "experiment_14": {
            "products": list(params.products),
            "median_rate_by_delta": by_delta,
            "max_ratio_across_delta": [
                round(float(hi / lo), 3) if lo > 0 else None
                for hi, lo in zip(spread.max(axis=0), spread.min(axis=0), strict=True)
            ],
        },
    }


def _floored(rates: np.ndarray, floor: float) -> np.ndarray:
    return np.maximum(rates, floor)


def _mark_zero(ax: Any, floor: float, needed: bool) -> None:
    """The line where trials without a misclustered point are drawn (log axis)."""
    if needed:
        ax.axhline(floor, color="0.5", linestyle=":", linewidth=1.2, label="none misclustered")


def plot_13(rows: Sequence[dict[str, Any]], params: Parameters, path: Path) -> None:
    floor = 0.5 / params.n  # a trial with no misclustered point is drawn here
    dims = sorted({r["d"] for r in rows if r["experiment"] == 13})
    data = [
        _floored(
            np.array([r["rate"] for r in rows if r["experiment"] == 13 and r["d"] == d]), floor
        )
        for d in dims
    ]
    width = 0.6 * (dims[1] - dims[0]) if len(dims) > 1 else 1.0
    with _figures.figure(width=7.0, height=4.6) as (fig, (ax,)):
        box = ax.boxplot(data, positions=dims, widths=width, patch_artist=True, manage_ticks=False)
        for patch in box["boxes"]:
            patch.set_facecolor(_figures.METHOD_STYLE["BalLOT"]["color"])
            patch.set_alpha(0.5)
        for median in box["medians"]:
            median.set_color("black")
        fine = np.linspace(dims[0], dims[-1], 200)
        rho, delta = params.rho_13, params.delta_13
        ax.plot(
            fine,
            _theory.theorem11_exponential(fine, rho, delta),
            color=_figures.REFERENCE["red"],
            linestyle="--",
            linewidth=2.5,
            label=r"Theorem 11(b): $e^{-d\rho^2\Delta^2/16}$",
        )
        rate = decay_rate(rows)
        if not math.isnan(rate):
            med = [np.median(x) for x in data]
            const = np.mean(np.log(med) + rate * np.array(dims))
            ax.plot(
                fine,
                np.exp(const - rate * fine),
                color="0.3",
                linestyle=":",
                linewidth=2,
                label=f"fit to the medians: $e^{{-{rate:.3f}\\,d}}$",
            )
        _mark_zero(ax, floor, any(np.any(x <= floor) for x in data))
        ax.set_yscale("log")
        ax.set_xticks(dims)
        ax.set_xlabel("dimension d")
        ax.set_ylabel("one-step misclustering rate")
        ax.set_title(
            f"k = 2, n = {params.n}, $\\Delta$ = {delta:g}, $\\rho$ = {rho:g}, "
            f"{params.trials_13} trials per d"
        )
        ax.legend(loc="lower left")
        _figures.save(fig, path)


def plot_14(rows: Sequence[dict[str, Any]], params: Parameters, path: Path) -> None:
    floor = 0.5 / params.n
    colors = ["#0072B2", "#009E73", "#D55E00", "#CC79A7", "#E69F00"]
    markers = ["o", "s", "^", "D", "v"]
    with _figures.figure(width=7.0, height=4.6) as (fig, (ax,)):
        for i, delta in enumerate(params.deltas):
            offset = (i - (len(params.deltas) - 1) / 2) * 0.02  # side by side, not on top
            for product in params.products:
                rates = _floored(
                    np.array(
                        [
                            r["rate"]
                            for r in rows
                            if r["experiment"] == 14
                            and r["delta"] == delta
                            and math.isclose(r["rho"] * delta, product)
                        ]
                    ),
                    floor,
                )
                ax.scatter(
                    np.full(rates.size, product + offset),
                    rates,
                    s=14,
                    color=colors[i % 5],
                    alpha=0.35,
                    marker=markers[i % 5],
                )
            ax.plot(
                np.array(params.products) + offset,
                _floored(medians_14(rows, delta, params), floor),
                color=colors[i % 5],
                marker=markers[i % 5],
                linewidth=2,
                label=f"$\\Delta$ = {delta:g} (medians)",
            )
        fine = np.linspace(min(params.products), max(params.products), 200)
        ax.plot(
            fine,
            np.exp(-params.d_14 * fine**2 / 16.0),
            color=_figures.REFERENCE["red"],
            linestyle="--",
            linewidth=2.5,
            label=r"Theorem 11(b): $e^{-d(\rho\Delta)^2/16}$",
        )
        zeros = any(r["rate"] == 0 for r in rows if r["experiment"] == 14)
        _mark_zero(ax, floor, zeros)
        ax.set_yscale("log")
        ax.set_xlabel(r"$\rho\Delta$ (cosine similarity $\times$ separation)")
        ax.set_ylabel("one-step misclustering rate")
        ax.set_title(
            f"k = 2, n = {params.n}, d = {params.d_14}, {params.trials_14} trials per point"
        )
        ax.legend(loc="lower left")
        _figures.save(fig, path)


def main(argv: Sequence[str] | None = None) -> _records.Record:
    run_ = _records.parse_run(__doc__.splitlines()[0], argv)
    params = _records.choose(SETTINGS, run_)
    record = _records.Record(EXPERIMENT, run_, params)
    with _records.timed(record):
        rows = run(params, run_.seed)
    _records.write_csv(run_.path(f"{EXPERIMENT}.csv"), rows, FIELDS)
    plot_13(rows, params, run_.path(FIGURES[0]))
    plot_14(rows, params, run_.path(FIGURES[1]))
    record.summary = summarize(rows, params)
    record.write()
    return record


if __name__ == "__main__":
    main()
