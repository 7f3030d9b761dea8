"""The paper's experiments (``examples/paper``) end to end in their ``--tiny`` setting.

Each script runs once per module into a temporary directory; the tests read back its CSV (the
raw results), its record and its figure, and check the paper's claims that the tiny setting can
decide: BalLOT equals the Hungarian method in every trial of Experiment 2 and recovers at least
as often as Lloyd; the runtime slopes of Experiment 3; the order of the box medians of
Experiment 4; Theorem 8 on every pixel of Experiments 9 and 10; Theorem 11's bound and the
collapse on ``rho * delta`` of Experiments 13 and 14; Theorems 8 and 15(b) in Experiment 16.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import _records
import _theory
import numpy as np
import pytest

pytestmark = pytest.mark.paper

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Ran:
    """A script's module, its output directory, its record and its CSV rows."""

    def __init__(self, name: str, out: Path) -> None:
        self.module: ModuleType = importlib.import_module(name)
        self.out = out
        self.module.main(["--tiny", "--out", str(out)])
        self.record: dict[str, Any] = json.loads(
            (out / f"{self.module.EXPERIMENT}.json").read_text()
        )
        self.rows = _records.read_csv(out / f"{self.module.EXPERIMENT}.csv")
        self.params = self.module.SETTINGS["tiny"]

    def column(self, name: str, kind: type = float, **where: str) -> np.ndarray:
        rows = [r for r in self.rows if all(r[key] == value for key, value in where.items())]
        return np.array(_records.column(rows, name, kind))


def _ran(name: str, factory: pytest.TempPathFactory) -> Ran:
    return Ran(name, factory.mktemp(name))


def _check_outputs(ran: Ran, figures: tuple[str, ...]) -> None:
    assert ran.record["setting"] == "tiny"
    assert ran.record["seconds"] > 0
    assert ran.rows, "the CSV holds no trial"
    for figure in figures:
        data = (ran.out / figure).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 20_000  # a drawn figure, not an empty canvas


# --------------------------------------------------------------------------------------------
# Experiment 2 (Figure 1)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp02(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return _ran("experiment_02", tmp_path_factory)


def test_experiment2_writes_every_trial_and_figure_1(exp02: Ran) -> None:
    _check_outputs(exp02, ("figure_1.png",))
    trials = len(exp02.params.deltas) * exp02.params.trials
    for method in exp02.module.METHODS:
        assert exp02.column("recovered", bool, method=method).size == trials


def test_experiment2_ballot_equals_the_hungarian_clustering_in_every_trial(exp02: Ran) -> None:
    same = exp02.column("same_as_hungarian", bool, method="BalLOT")
    assert same.all(), f"BalLOT differs from the Hungarian method in {np.sum(~same)} trials"
    assert exp02.record["summary"]["ballot_equals_hungarian"] == f"{same.size}/{same.size}"


def test_experiment2_ballot_recovers_at_least_as_often_as_lloyd(exp02: Ran) -> None:
    for delta in exp02.params.deltas:
        ballot = exp02.column("recovered", bool, method="BalLOT", delta=repr(delta)).mean()
        lloyd = exp02.column("recovered", bool, method="Lloyd", delta=repr(delta)).mean()
        assert ballot >= lloyd, delta
    # the separations span the transition: some trials fail, some recover
    recovered = exp02.column("recovered", bool, method="BalLOT")
    assert 0 < recovered.mean() < 1


# --------------------------------------------------------------------------------------------
# Experiment 3 (Figure 2)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp03(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return _ran("experiment_03", tmp_path_factory)


def _slope(ran: Ran, method: str) -> float:
    rows: list[dict[str, Any]] = [
        {
            "method": r["method"],
            "n": int(r["n"]),
            "seconds": float(r["seconds"]),
            "completed": r["completed"] == "1",
        }
        for r in ran.rows
    ]
    return ran.module.slope(rows, method, ran.params)[0]


def test_experiment3_writes_the_timings_and_figure_2(exp03: Ran) -> None:
    _check_outputs(exp03, ("figure_2.png",))
    for method in exp03.module.METHODS:
        sizes = exp03.column("n", int, method=method)
        assert sizes.size >= exp03.params.trials * 3, method  # three sizes at least
        # the summary's slope is the one the raw timings give
        assert exp03.record["summary"][method]["slope"] == pytest.approx(
            _slope(exp03, method), abs=1e-3
        )


def test_experiment3_ballot_and_lloyd_grow_near_linearly(exp03: Ran) -> None:
    for method in ("BalLOT", "Lloyd"):
        slope = _slope(exp03, method)
        assert slope < 1.2, (method, slope, exp03.record["summary"][method])
        assert exp03.column("n", int, method=method).max() >= 2**16, method


def _fastest_slope(ran: Ran, method: str) -> float:
    """The slope of log(fastest of the trials' seconds) on log(n) over the summary's window:
    a load on the machine slows some trials, the fastest least."""
    lo, hi = ran.record["summary"][method]["fit_window"]
    fastest: dict[int, float] = {}
    for r in ran.rows:
        n = int(r["n"])
        if r["method"] == method and r["completed"] == "1" and lo <= n <= hi:
            fastest[n] = min(fastest.get(n, math.inf), float(r["seconds"]))
    sizes = np.array(sorted(fastest), dtype=np.float64)
    times = np.array([fastest[int(n)] for n in sizes])
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def test_experiment3_hungarian_grows_super_linearly(exp03: Ran) -> None:
    # the tiny setting times the Hungarian method on 2^9 .. 2^12 points, where a fit takes
    # 2-130 ms and its slope moves from run to run (1.45 and 1.75 in two runs of the same
    # tree here; BalLOT's and Lloyd's about 1.0): it must be well above one, and above
    # theirs by a margin.  From the fastest of each size's trials: the median's slope was
    # 1.22 in one run beside the rest of the suite on 2 cores (the small sizes' trials slowed
    # by the other tests more than the large ones')
    slope = _fastest_slope(exp03, "Hungarian")
    ours = max(_fastest_slope(exp03, method) for method in ("BalLOT", "Lloyd"))
    assert slope > 1.3, (slope, exp03.record["summary"]["Hungarian"])
    assert slope > ours + 0.25, (slope, ours)


def test_experiment3_full_setting_path_fits_zarr_stores_on_a_local_cluster() -> None:
    """The full setting's largest sizes come from Zarr stores fitted on a LocalCluster: the
    same code at 2^10 and 2^11 points."""
    module = importlib.import_module("experiment_03")
    params = module.Parameters(
        (10, 11), trials=1, cap=60.0, fit_floor=0.0, fit_span=2, zarr_from=11, chunk_rows=2**9
    )
    params = dataclasses.replace(params, zarr_trials=2)
    rows, schedule = module.run(params, 0)
    assert schedule.active == list(module.METHODS)  # nothing near the cap
    assert all(r["completed"] and r["n_iter"] >= 1 for r in rows)
    assert {(r["method"], r["source"]) for r in rows if r["n"] == 2**11} == {
        (m, "zarr") for m in module.METHODS
    }
    assert len([r for r in rows if r["source"] == "zarr"]) == 2 * len(module.METHODS)


# --------------------------------------------------------------------------------------------
# Experiment 4 (Figure 3)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp04(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return _ran("experiment_04", tmp_path_factory)


def test_experiment4_writes_every_run_and_figure_3(exp04: Ran) -> None:
    _check_outputs(exp04, ("figure_3.png",))
    runs = exp04.params.draws * exp04.params.starts
    for method in exp04.module.METHODS:
        w2 = exp04.column("w2", method=method)
        assert w2.size == runs
        assert np.all(np.isfinite(w2)) and np.all(w2 > 0)


def test_experiment4_balanced_methods_have_lower_and_tighter_errors_than_lloyd(exp04: Ran) -> None:
    """The paper's box plots: Lloyd's error is higher and much more varied."""
    lloyd = exp04.column("w2", method="Lloyd")
    for method in ("BalLOT", "E-BalLOT"):
        w2 = exp04.column("w2", method=method)
        assert np.median(w2) < np.median(lloyd), method
        iqr = np.subtract(*np.percentile(w2, [75, 25]))
        assert iqr < np.subtract(*np.percentile(lloyd, [75, 25])), method


# --------------------------------------------------------------------------------------------
# Experiments 9 and 10 (Figure 4)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp09(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return _ran("experiment_09_10", tmp_path_factory)


def test_experiments9_10_write_every_pixel_and_figure_4(exp09: Ran) -> None:
    _check_outputs(exp09, ("figure_4.png",))
    p = exp09.params
    assert len(exp09.rows) == 2 * len(p.deltas) * len(p.radii) * p.trials


def test_experiments9_10_every_start_inside_theorem8_radius_recovers(exp09: Ran) -> None:
    inside = 0
    for k in (2, 3):
        delta = exp09.column("delta", k=str(k))
        r = exp09.column("r", k=str(k))
        recovered = exp09.column("recovered_one_step", bool, k=str(k))
        below = r < _theory.theorem8_radius(delta, k)
        assert recovered[below].all(), k
        inside += int(below.sum())
    assert inside > 100  # the grid reaches inside the basin


def test_experiments9_10_thresholds_as_the_paper_describes(exp09: Ran) -> None:
    """k = 2: starts above the red curve fail (sharp); k = 3: some pixels above the red curve
    are white (not sharp) and some below the blue (k = 2) curve are not."""
    summary = exp09.record["summary"]
    two, three = summary["k=2"], summary["k=3"]
    assert two["pixels_above_red_white"] < two["pixels_above_red"]
    assert two["pixels_below_red_not_white"] == three["pixels_below_red_not_white"] == 0
    assert three["pixels_above_red_white"] > 0
    assert three["pixels_below_blue_not_white"] > 0


# --------------------------------------------------------------------------------------------
# Experiments 13 and 14 (Figures 5 and 6)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp13(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return _ran("experiment_13_14", tmp_path_factory)


def test_experiments13_14_write_every_trial_and_figures_5_6(exp13: Ran) -> None:
    _check_outputs(exp13, ("figure_5.png", "figure_6.png"))
    p = exp13.params
    assert exp13.column("rate", experiment="13").size == len(p.dimensions) * p.trials_13
    n = p.n
    np.testing.assert_allclose(exp13.column("misclustered") / n, exp13.column("rate"), atol=1e-12)


def test_experiment13_rate_decays_exponentially_in_d_below_theorem11(exp13: Ran) -> None:
    p = exp13.params
    d = exp13.column("d", experiment="13")
    rate = exp13.column("rate", experiment="13")
    assert np.all(rate <= _theory.theorem11_exponential(d, p.rho_13, p.delta_13))
    medians = [np.median(rate[d == dim]) for dim in p.dimensions]
    assert np.all(np.diff(medians) < 0)
    decay = exp13.record["summary"]["experiment_13"]["measured_decay_rate_per_dimension"]
    assert decay >= (p.rho_13 * p.delta_13) ** 2 / 16.0


def test_experiment14_rho_times_delta_predicts_the_rate(exp13: Ran) -> None:
    p = exp13.params
    by_delta = np.array(
        [exp13.module.medians_14(_typed(exp13), delta, p) for delta in p.deltas]
    )  # rows: delta, columns: rho * delta
    assert np.all(np.diff(by_delta, axis=1) < 0)  # falls as rho * delta grows
    common = by_delta[:, np.array(p.products) <= 1.0]  # hundreds of misclustered points
    assert np.all(common.max(axis=0) <= 1.5 * common.min(axis=0))


def _typed(ran: Ran) -> list[dict[str, Any]]:
    return [
        {
            "experiment": int(r["experiment"]),
            "delta": float(r["delta"]),
            "rho": float(r["rho"]),
            "rate": float(r["rate"]),
        }
        for r in ran.rows
    ]


# --------------------------------------------------------------------------------------------
# Experiment 16 (Figure 8)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp16(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return _ran("experiment_16", tmp_path_factory)


def test_experiment16_writes_every_trial_and_figure_8(exp16: Ran) -> None:
    _check_outputs(exp16, ("figure_8.png",))
    p = exp16.params
    assert len(exp16.rows) == 2 * p.trials * p.radius_steps


def test_experiment16_starts_inside_theorem8_radius_recover(exp16: Ran) -> None:
    within = exp16.column("within_theorem8", bool)
    recovered = exp16.column("recovered_one_step", bool)
    assert within.any()
    assert recovered[within].all()
    eps_star = exp16.column("eps_star")
    radius = float(_theory.theorem8_radius(exp16.params.delta, exp16.params.k))
    np.testing.assert_array_equal(within, eps_star < radius)


def test_experiment16_theorem15b_guarantee_holds_at_its_noise_bound(exp16: Ran) -> None:
    p = exp16.params
    first = repr(p.noise_radii[0])
    scheme = "Theorem 15(b)"
    within = exp16.column("within_theorem8", bool, noise_radius=first, scheme=scheme)
    assert within.mean() >= 1 - p.failure
    # the theorem's event (k cliques, every proto-mean within eps) implies a Theorem 8 start
    cliques = exp16.column("k_cliques", bool, noise_radius=first, scheme=scheme)
    near = exp16.column("all_within_eps", bool, noise_radius=first, scheme=scheme)
    assert within[cliques & near].all()
    assert math.isclose(p.eps, min(p.delta / 2 - 1, p.delta / 4))
