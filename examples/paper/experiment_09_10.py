"""Experiments 9 and 10 (Figure 4): basins of attraction, one-step recovery over (delta, r).

Points uniform on unit circles (``|r_i| = 1``, the worst case of Theorem 8) around k = 2
centres ``delta`` apart (Experiment 9) or the k = 3 vertices of an equilateral triangle of side
``delta`` (Experiment 10); each initial centre is its ball centre moved by ``r`` in a uniformly
random direction; one BalLOT step from there. Each pixel is the share of trials whose first
step recovers the planted clustering exactly (white: all). Theorem 8's radius is drawn in red
(``sqrt(delta^2/4 - 1)`` for k = 2, ``delta/2 - 1`` for k >= 3) and, on the k = 3 panel, the
k = 2 radius in blue. The paper's claims: every pixel below the red curve is white; for k = 2
the red curve is sharp (pixels above it are not white); for k = 3 it is not (white pixels above
it), and the blue curve is not the threshold either (grey pixels below it). Each trial also
records whether BalLOT run to convergence from the same start recovers the clustering.

    python examples/paper/experiment_09_10.py [--quick | --tiny] [--out DIR] [--seed N]
"""

from __future__ import annotations

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

EXPERIMENT = "experiment_09_10"
FIGURE = "figure_4.png"
FIELDS = ("k", "delta", "r", "trial", "recovered_one_step", "recovered_converged")


@dataclass(frozen=True)
class Parameters:
    deltas: tuple[float, ...]
    radii: tuple[float, ...]
    trials: int
    n_per_cluster: int = 100


def _grid(start: float, stop: float, step: float) -> tuple[float, ...]:
    count = round((stop - start) / step) + 1
    return tuple(round(start + i * step, 10) for i in range(count))


SETTINGS = {
    "full": Parameters(_grid(2.0, 6.0, 0.1), _grid(0.0, 3.0, 0.1), trials=20),
    "quick": Parameters(_grid(2.0, 6.0, 0.25), _grid(0.0, 3.0, 0.25), trials=10),
    "tiny": Parameters(_grid(2.0, 6.0, 0.5), _grid(0.0, 3.0, 0.5), trials=4),
}


def centers_for(k: int, delta: float) -> np.ndarray:
    """Experiment 9's pair or Experiment 10's triangle."""
    return _models.pair_centers(delta) if k == 2 else _models.triangle_centers(delta)


def run_trial(
    k: int, delta: float, r: float, params: Parameters, seed: Sequence[int]
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    gamma = centers_for(k, delta)
    X, planted = _models.stochastic_ball_model(
        rng, gamma, k * params.n_per_cluster, _models.uniform_sphere
    )
    init = gamma + r * _models.uniform_sphere(rng, k, 2)
    return {
        "recovered_one_step": _methods.same_partition(_methods.one_step(X, init), planted),
        "recovered_converged": _methods.same_partition(_methods.ballot(X, init).labels, planted),
    }


def run(params: Parameters, base_seed: int) -> list[dict[str, Any]]:
    rows = []
    for k in (2, 3):
        for i, delta in enumerate(params.deltas):
            for j, r in enumerate(params.radii):
                for trial in range(params.trials):
                    row = run_trial(k, delta, r, params, [base_seed, 9, k, i, j, trial])
                    rows.append({"k": k, "delta": delta, "r": r, "trial": trial, **row})
    return rows


def rate_grid(rows: Sequence[dict[str, Any]], k: int, params: Parameters, key: str) -> np.ndarray:
    """Recovery rate per pixel, shape (len(radii), len(deltas))."""
    column = {delta: i for i, delta in enumerate(params.deltas)}
    line = {r: j for j, r in enumerate(params.radii)}
    hits = np.zeros((len(params.radii), len(params.deltas)))
    counts = np.zeros_like(hits)
    for row in rows:
        if row["k"] == k:
            where = line[row["r"]], column[row["delta"]]
            hits[where] += row[key]
            counts[where] += 1
    return hits / counts


def summarize(rows: Sequence[dict[str, Any]], params: Parameters) -> dict[str, Any]:
    out: dict[str, Any] = {}
    deltas, radii = np.meshgrid(params.deltas, params.radii)
    for k in (2, 3):
        grid = rate_grid(rows, k, params, "recovered_one_step")
        below = radii < _theory.theorem8_radius(deltas, k)
        above = ~below
        entry = {
            "pixels_below_red": int(below.sum()),
            "pixels_below_red_not_white": int((grid[below] < 1).sum()),
            "pixels_above_red": int(above.sum()),
            "pixels_above_red_white": int((grid[above] == 1).sum()),
            "one_step_rate": float(grid.mean()),
            "converged_rate": float(rate_grid(rows, k, params, "recovered_converged").mean()),
        }
        if k == 3:
            blue = radii < _theory.theorem8_radius(deltas, 2)
            entry["pixels_below_blue"] = int(blue.sum())
            entry["pixels_below_blue_not_white"] = int((grid[blue] < 1).sum())
        out[f"k={k}"] = entry
    return out


def plot(rows: Sequence[dict[str, Any]], params: Parameters, path: Path) -> None:
    d_step = params.deltas[1] - params.deltas[0]
    r_step = params.radii[1] - params.radii[0]
    extent = (
        params.deltas[0] - d_step / 2,
        params.deltas[-1] + d_step / 2,
        params.radii[0] - r_step / 2,
        params.radii[-1] + r_step / 2,
    )
    fine = np.linspace(params.deltas[0], params.deltas[-1], 400)
    with _figures.figure(2, width=5.4, height=4.6) as (fig, axes):
        for ax, k, number in zip(axes, (2, 3), (9, 10), strict=True):
            grid = rate_grid(rows, k, params, "recovered_one_step")
            image = ax.imshow(
                grid, origin="lower", extent=extent, aspect="auto", cmap="gray", vmin=0, vmax=1
            )
            ax.plot(
                fine,
                _theory.theorem8_radius(fine, k),
                color=_figures.REFERENCE["red"],
                linewidth=2.5,
                label=f"Theorem 8, k = {k}: "
                + (r"$\sqrt{\Delta^2/4-1}$" if k == 2 else r"$\Delta/2-1$"),
            )
            if k == 3:
                ax.plot(
                    fine,
                    _theory.theorem8_radius(fine, 2),
                    color=_figures.REFERENCE["blue"],
                    linewidth=2.5,
                    linestyle="--",
                    label=r"k = 2 radius $\sqrt{\Delta^2/4-1}$",
                )
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_xlabel(r"separation $\Delta$")
            ax.set_ylabel("perturbation $r$ of the initial centres")
            shape = "2 unit circles" if k == 2 else "3 unit circles on a triangle"
            ax.set_title(f"Experiment {number}: {shape}")
            ax.legend(loc="upper left", fontsize=10, framealpha=0.9)
            ax.grid(False)
        fig.colorbar(image, ax=axes, label=f"one-step recovery rate ({params.trials} trials)")
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
