"""Experiment 4 (Figure 3): estimating a balanced Gaussian mixture, 2-Wasserstein error.

k means with iid N(0, mean_scale^2) coordinates in R^d, n / k points around each with iid
N(0, 1) displacements (the components overlap); for each of several draws, independent
k-means++ starts seed BalLOT, E-BalLOT and Lloyd (the same start for the three); the error of a
run is the 2-Wasserstein distance between its k centroids and the k means (uniform weights).
Left: one draw with the centroids of the run where Lloyd is worst; right: box plots over all
runs. The paper's claim: Lloyd's error is much more varied (k-means++ sometimes double-samples
a component); the balanced methods do better.

    python examples/paper/experiment_04.py [--quick | --tiny] [--out DIR] [--seed N]
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
import numpy as np

from ballot_dask.initialization import initial_centers

EXPERIMENT = "experiment_04"
FIGURE = "figure_3.png"
METHODS = ("BalLOT", "E-BalLOT", "Lloyd")
FIELDS = ("draw", "start", "method", "w2", "n_iter", "short_steps")


@dataclass(frozen=True)
class Parameters:
    draws: int
    starts: int
    k: int = 10
    d: int = 2
    n: int = 1000
    mean_scale: float = 3.0


SETTINGS = {
    "full": Parameters(draws=10, starts=20),
    "quick": Parameters(draws=5, starts=10),
    "tiny": Parameters(draws=3, starts=4),
}


def draw(params: Parameters, base_seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``index`` of the mixture: points and means."""
    rng = np.random.default_rng([base_seed, 4, index])
    X, _, means = _models.gaussian_means_mixture(
        rng, params.n, params.k, params.d, params.mean_scale
    )
    return X, means


def run(params: Parameters, base_seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All runs; and the worst run for Lloyd (centroids of every method) for the left panel."""
    rows = []
    worst: dict[str, Any] = {"w2": -1.0}
    for index in range(params.draws):
        X, means = draw(params, base_seed, index)
        for start in range(params.starts):
            seed = base_seed * 1_000_000 + index * 1_000 + start
            init = initial_centers(X, params.k, "k-means++", np.random.RandomState(seed))
            fits = {m: _methods.METHODS[m](X, init) for m in METHODS}
            for method, fit in fits.items():
                w2 = _methods.wasserstein2(fit.centers, means)
                rows.append(
                    {
                        "draw": index,
                        "start": start,
                        "method": method,
                        "w2": w2,
                        "n_iter": fit.n_iter,
                        "short_steps": fit.short_steps,
                    }
                )
            lloyd_w2 = rows[-1]["w2"]
            if lloyd_w2 > worst["w2"]:
                worst = {"w2": lloyd_w2, "draw": index, "start": start, "X": X, "means": means}
                worst["centers"] = {m: fit.centers for m, fit in fits.items()}
    return rows, worst


def errors(rows: Sequence[dict[str, Any]], method: str) -> np.ndarray:
    return np.array([r["w2"] for r in rows if r["method"] == method])


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for method in METHODS:
        q1, median, q3 = np.percentile(errors(rows, method), [25, 50, 75])
        out[method] = {
            "median": round(float(median), 4),
            "iqr": [round(float(q1), 4), round(float(q3), 4)],
            "max": round(float(errors(rows, method).max()), 4),
        }
    return out


# BalLOT and E-BalLOT often land on the same spot: the larger marker around the smaller
_MARKER_SIZE = {"BalLOT": 150, "E-BalLOT": 45, "Lloyd": 70}


def plot(
    rows: Sequence[dict[str, Any]], worst: dict[str, Any], params: Parameters, path: Path
) -> None:
    with _figures.figure(2, width=5.6, height=4.8) as (fig, (left, right)):
        X, means = worst["X"], worst["means"]
        left.scatter(X[:, 0], X[:, 1], s=4, color="0.75", label="data", rasterized=True)
        left.scatter(
            means[:, 0], means[:, 1], s=180, marker="*", color="black", label="true means", zorder=4
        )
        for method in METHODS:
            style = _figures.METHOD_STYLE[method]
            c = worst["centers"][method]
            left.scatter(
                c[:, 0],
                c[:, 1],
                s=_MARKER_SIZE[method],
                marker=style["marker"],
                facecolors="none" if method != "Lloyd" else style["color"],
                edgecolors=style["color"],
                linewidths=2,
                label=method,
                zorder=5,
            )
        left.set_title(f"draw {worst['draw']}, start {worst['start']}: Lloyd's worst run")
        left.set_xlabel("$x_1$")
        left.set_ylabel("$x_2$")
        left.set_aspect("equal", adjustable="datalim")
        left.legend(loc="best", fontsize=10, framealpha=0.9)

        data = [errors(rows, m) for m in METHODS]
        box = right.boxplot(data, patch_artist=True, widths=0.6)
        right.set_xticks(range(1, len(METHODS) + 1), METHODS)
        for patch, method in zip(box["boxes"], METHODS, strict=True):
            patch.set_facecolor(_figures.METHOD_STYLE[method]["color"])
            patch.set_alpha(0.55)
        for median in box["medians"]:
            median.set_color("black")
            median.set_linewidth(2)
        right.set_ylabel("2-Wasserstein distance to the true means")
        right.set_title(
            f"k = {params.k}, n = {params.n}: {params.draws} draws x "
            f"{params.starts} k-means++ starts"
        )
        _figures.save(fig, path)


def main(argv: Sequence[str] | None = None) -> _records.Record:
    run_ = _records.parse_run(__doc__.splitlines()[0], argv)
    params = _records.choose(SETTINGS, run_)
    record = _records.Record(EXPERIMENT, run_, params)
    with _records.timed(record):
        rows, worst = run(params, run_.seed)
    _records.write_csv(run_.path(f"{EXPERIMENT}.csv"), rows, FIELDS)
    plot(rows, worst, params, run_.path(FIGURE))
    record.summary = summarize(rows)
    record.write()
    return record


if __name__ == "__main__":
    main()
