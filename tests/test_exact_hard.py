"""The exact step on hard data, against POT: separated clusters from starts that split them,
duplicated points, large k, float32 near-ties, and the band/widening path of the solver.

Every case runs the solver's own algorithm (nested samples, one band pass, successive
shortest paths; there is no hand-off to a reference solver at any size), and its objective is
compared with ``ot.emd`` on the float64 costs of the same (float32-rounded) values.
"""

from __future__ import annotations

import numpy as np
import pytest
from references import check_exact, emd_optimum, lp_optimum, reference_cost
from sklearn.cluster import kmeans_plusplus

from ballot_dask import balanced_assign, certify, resolve_capacities
from ballot_dask.blocks import RowBlocks
from ballot_dask.capacities import Capacities
from ballot_dask.costs import cost_block
from ballot_dask.solvers import SolverOptions
from ballot_dask.solvers.exact import solve_exact
from ballot_dask.solvers.paths import DONE, STUCK, successive_shortest_paths


def separated_mixture(n: int, d: int, k: int, sep: float, seed: int) -> np.ndarray:
    """k unit Gaussians with means ``sep * N(0, I)``, equal sizes, rows in planted order."""
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((k, d))
    return means[np.arange(n) % k] + rng.standard_normal((n, d))


def ball_model(n: int, d: int, k: int, delta: float, seed: int) -> np.ndarray:
    """The paper's stochastic ball model: unit balls whose centres lie on a line delta apart."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((k, d))
    centres[:, 0] = delta * np.arange(k)
    u = rng.standard_normal((n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = rng.random(n) ** (1.0 / d)
    return centres[np.arange(n) % k] + u * r[:, None]


def random_start(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return X[rng.choice(X.shape[0], k, replace=False)].copy()


def plusplus_start(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    return kmeans_plusplus(X, k, random_state=seed)[0]


def _equal(n: int, k: int) -> Capacities:
    return resolve_capacities(n, k)


def _check_against_emd(X: np.ndarray, centers: np.ndarray, **kwargs) -> None:
    n, k = X.shape[0], centers.shape[0]
    res = balanced_assign(X, centers, **kwargs)
    cap = _equal(n, k)
    C = reference_cost(X, np.asarray(centers, dtype=X.dtype))
    if cap.is_equality:
        opt, _ = emd_optimum(C, cap.lower)
    else:  # floor/ceil sizes: the extra points go where the LP wants them; emd needs sizes
        opt, _ = emd_optimum(C, res.sizes)
    check_exact(res, X, np.asarray(centers, dtype=X.dtype), cap, opt, C=C)
    assert res.n_iter > 0 or res.certificate.duality_gap == 0.0


# --------------------------------------------------------------------------- hard data


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("start", [random_start, plusplus_start])
def test_separated_mixture_from_any_start(start, seed: int) -> None:
    # well separated clusters: a random start puts two centers in one blob and none in
    # another, so the LP must move whole groups of points across empty space
    X = separated_mixture(12_000, 8, 12, 6.0, seed)
    _check_against_emd(X, start(X, 12, seed))


@pytest.mark.parametrize("delta", [2.2, 3.0])
def test_ball_model_with_a_start_that_splits_balls(delta: float) -> None:
    k = 6
    X = ball_model(9_000, 3, k, delta, 3)
    # two centers in ball 0, two in ball 1, none in balls 4 and 5
    centers = np.zeros((k, 3))
    centers[:, 0] = [-0.3, 0.3, delta - 0.3, delta + 0.3, 2 * delta, 3 * delta]
    _check_against_emd(X, centers)


def test_a_cold_band_from_the_sample_wide_enough_for_one_pass(monkeypatch) -> None:
    # a cold step from a random start, in memory, with a row sample: the first band holds up
    # to 16 times the points the sample's potentials misplace (within 2^15 rows), and the
    # boundaries between separated clusters lie inside it: one pass, at emd's optimum.  With
    # four times (the least band, 8 192 rows here) the same step needs an allowance and a
    # second pass, and ends at the same optimum
    from ballot_dask.solvers import exact

    n, k = 60_000, 16
    X = separated_mixture(n, 8, k, 1.0, 2)
    start = random_start(X, k, 2)
    cap = _equal(n, k)

    def step():
        blocks = RowBlocks(X)
        blocks.set_centers(start)
        return solve_exact(blocks, cap, SolverOptions())

    wide = step()
    assert wide.extra["passes"] == 1 and wide.extra["allowed"] == 0
    assert 8_192 < wide.band_size <= 1 << 15
    monkeypatch.setattr(exact, "_SAMPLE_ROOM", exact._SAMPLE_BAND)
    narrow = step()
    assert narrow.extra["passes"] == 2 and narrow.extra["allowed"] == 1
    assert narrow.band_size < wide.band_size
    opt, _ = emd_optimum(reference_cost(X, start), cap.lower)
    for result in (wide, narrow):
        assert result.certificate is not None and result.certificate.optimal
        np.testing.assert_array_equal(result.sizes, cap.lower)
        assert result.objective == pytest.approx(opt, rel=1e-9)


def test_duplicated_points_move_one_at_a_time() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6_000, 2))
    X[:2_500] = X[0]  # 2500 copies of one point: the optimum splits them
    X[2_500:3_500] = X[2_500]
    centers = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 3.0], [-3.0, 0.0]])
    res = balanced_assign(X, centers)
    _check_against_emd(X, centers)
    assert len(np.unique(res.labels[:2_500])) > 1  # the copies were split


@pytest.mark.parametrize("k, n, d", [(64, 12_800, 16), (256, 5_120, 32), (1024, 2_048, 8)])
def test_large_k(k: int, n: int, d: int) -> None:
    X = separated_mixture(n, d, k, 1.0, k)
    _check_against_emd(X, plusplus_start(X, k, 0))


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_tiny_and_huge_cost_scales(scale: float) -> None:
    X = separated_mixture(8_000, 4, 8, 4.0, 11) * scale
    _check_against_emd(X, random_start(X, 8, 11))


def test_float32_near_ties_against_float64_emd() -> None:
    # a grid of float32 points: many reduced costs tie to float32 precision, the LP is solved
    # and certified on the float64 costs of the float32 values
    rng = np.random.default_rng(7)
    X = np.round(rng.uniform(0, 1, (6_000, 2)) * 64).astype(np.float32) / np.float32(64)
    X += (rng.standard_normal(X.shape) * 1e-6).astype(np.float32)
    centers = random_start(X.astype(np.float64), 10, 7)
    _check_against_emd(X, centers)


def test_interval_sizes_on_separated_data() -> None:
    X = separated_mixture(5_000, 4, 5, 6.0, 13)
    centers = random_start(X, 5, 13)
    res = balanced_assign(X, centers, size_min=800, size_max=1_100)
    cap = resolve_capacities(5_000, 5, size_min=800, size_max=1_100)
    C = reference_cost(X, centers)
    check_exact(res, X, centers, cap, lp_optimum(C, cap.lower, cap.upper)[0], C=C)


# --------------------------------------------------------------------------- the band path


class _Remote(RowBlocks):
    """In-memory blocks that behave like a remote engine: gathering is not free, so the
    solver works on a band of doubtful rows, widening it when a shortest path needs more."""

    gather_is_free = False  # type: ignore[misc]


@pytest.mark.parametrize("move", [0.05, 0.5])
@pytest.mark.parametrize("block_rows", [None, 9_999])
def test_band_from_warm_potentials_reaches_the_optimum(block_rows, move: float) -> None:
    # a Lloyd step's situation on a remote engine: the centers moved, the previous
    # potentials are close, a band of doubtful rows is gathered (widened when needed)
    n, k = 120_000, 16
    X = separated_mixture(n, 4, k, 1.5, 17)
    before = plusplus_start(X, k, 17)
    first = balanced_assign(X, before)
    centers = before + move * np.random.default_rng(18).standard_normal(before.shape)
    blocks = _Remote(X, block_rows=block_rows)
    blocks.set_centers(centers)
    cap = _equal(n, k)
    step = solve_exact(blocks, cap, SolverOptions(), potentials=first.potentials)
    assert step.certificate is not None and step.certificate.optimal
    assert step.band_size < n  # a band, not every row
    if move == 0.5:  # the centers moved much: the sample's potentials first
        assert step.extra["sampled"]
    labels = blocks.labels(step.labeler)
    cold = balanced_assign(X, centers)  # itself checked against POT above
    np.testing.assert_array_equal(labels, cold.labels)
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)
    assert step.objective == pytest.approx(cold.objective, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_screened_costs_settle_a_warm_band_of_near_ties(dtype) -> None:
    # k * d large enough for BLAS: the pass screens rows with float32 products (labels and
    # slack bounds within a proven error, float64 costs for the band and the objective). On
    # points of a coarse grid (many near-ties), a warm step on a remote engine must still
    # reach the LP's optimum on the float64 costs, certified
    n, k, d = 16_384, 64, 64
    rng = np.random.default_rng(23)
    X = np.round(rng.uniform(0, 1, (n, d)) * 4) / 4 + 1e-5 * rng.standard_normal((n, d))
    X = X.astype(dtype)
    before = plusplus_start(X.astype(np.float64), k, 23)
    first = balanced_assign(X, before)
    centers = (before + 0.02 * rng.standard_normal(before.shape)).astype(dtype)
    blocks = _Remote(X)
    blocks.set_centers(centers)
    cap = _equal(n, k)
    step = solve_exact(blocks, cap, SolverOptions(), potentials=first.potentials)
    assert step.certificate is not None and step.certificate.optimal
    assert step.band_size < n  # a band: most rows were fixed by the screened pass
    labels = blocks.labels(step.labeler)
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)
    C = reference_cost(X, centers)
    opt, _ = emd_optimum(C, cap.lower)
    assert step.objective == pytest.approx(opt, rel=1e-9)
    assert float(C[np.arange(n), labels].sum()) == pytest.approx(opt, rel=1e-9)
    assert certify(X, centers, labels).optimal


def test_a_widened_band_starts_from_the_narrower_bands_optimum(monkeypatch) -> None:
    # separated clusters from random rows: an early step's first band holds its optimum,
    # which the certificate cannot prove (a fixed row must move); the wider band's repair
    # starts from that optimum's potentials where they misplace fewer of its rows, and the
    # step is still ot.emd's optimum
    import ballot_dask.solvers as solvers
    from ballot_dask import BalancedKMeans
    from ballot_dask.solvers import repair

    n, k = 20_000, 32
    X = separated_mixture(n, 16, k, 4.0, 0).astype(np.float32)
    start = X[np.random.default_rng(0).choice(n, k, replace=False)]
    repairs: list[tuple[np.ndarray, np.ndarray]] = []
    real_paths = repair.successive_shortest_paths

    def paths(costs, labels, lower, upper, potentials, **kwargs):
        result = real_paths(costs, labels, lower, upper, potentials, **kwargs)
        repairs.append((np.array(potentials, copy=True), result.potentials.copy()))
        return result

    steps: list[tuple[np.ndarray, object, range]] = []
    real_step = solvers.SOLVERS["exact"]

    def step(blocks, *args, **kwargs):
        first = len(repairs)
        out = real_step(blocks, *args, **kwargs)
        steps.append((blocks.centers.copy(), out, range(first, len(repairs))))
        return out

    monkeypatch.setattr(repair, "successive_shortest_paths", paths)
    monkeypatch.setitem(solvers.SOLVERS, "exact", step)
    BalancedKMeans(k, init=start, max_iter=10, random_state=0).fit(X)
    restarted = [
        (centers, out)
        for centers, out, calls in steps
        if any(np.array_equal(repairs[i][0], repairs[i - 1][1]) for i in calls if i > calls[0])
    ]
    assert restarted, "no band started from the narrower band's potentials"
    sizes = resolve_capacities(n, k).lower
    for centers, out in restarted:
        assert out.certificate is not None and out.certificate.optimal
        np.testing.assert_array_equal(out.sizes, sizes)
        opt, _ = emd_optimum(reference_cost(X, centers), sizes)
        assert out.objective == pytest.approx(opt, rel=1e-9)


def test_a_band_too_narrow_is_caught_by_the_certificate_and_widened() -> None:
    # two clusters; the band holds five points of cluster 1 only: its own problem is solved,
    # but cluster 0 must give points it does not hold, which the certificate detects
    rng = np.random.default_rng(19)
    X = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(8, 1, (40, 2))])
    centers = np.array([[0.0, 0.0], [8.0, 8.0]])
    C = cost_block(X, centers)
    labels = np.argmin(C, axis=1)
    band = np.flatnonzero(labels == 1)[:5]
    fixed = np.setdiff1d(np.arange(100), band)
    band_labels = labels[band].copy()
    res = successive_shortest_paths(
        C[band],
        band_labels,
        np.array([50, 50]),
        np.array([50, 50]),
        np.zeros(2),
        fixed_counts=np.bincount(labels[fixed], minlength=2),
    )
    assert res.status == STUCK  # no band point can leave cluster 0
    # with every row in the band the same problem is solved exactly
    all_labels = labels.copy()
    whole = successive_shortest_paths(
        C, all_labels, np.array([50, 50]), np.array([50, 50]), np.zeros(2)
    )
    assert whole.status == DONE and whole.augmentations == 10
    np.testing.assert_array_equal(np.bincount(all_labels), [50, 50])
    opt, _ = emd_optimum(reference_cost(X, centers), np.array([50, 50]))
    assert float(C[np.arange(100), all_labels].sum()) == pytest.approx(opt, rel=1e-12)
    assert certify(X, centers, all_labels).optimal


def test_band_optimum_that_is_not_the_whole_optimum_is_rejected() -> None:
    # a band whose own problem is solvable but whose optimum needs a fixed point to move:
    # the combined slack matrix fails the certificate
    rng = np.random.default_rng(29)
    X = rng.normal(0, 1, (400, 2))
    centers = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    C = cost_block(X, centers)
    cap = np.array([120, 120, 160])
    opt_labels = balanced_assign(X, centers, sizes=cap).labels
    labels = np.argmin(C, axis=1)
    moved = np.flatnonzero(labels != opt_labels)
    assert moved.size > 4
    band = np.setdiff1d(np.arange(400), moved[: moved.size // 2])  # half the movers fixed
    fixed = np.setdiff1d(np.arange(400), band)
    band_labels = labels[band].copy()
    res = successive_shortest_paths(
        C[band],
        band_labels,
        cap,
        cap,
        np.zeros(3),
        fixed_counts=np.bincount(labels[fixed], minlength=3),
    )
    assert res.status == DONE
    full = labels.copy()
    full[band] = band_labels
    assert not certify(X, centers, full, sizes=cap).optimal


# --------------------------------------------------------------------------- certify


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_certify_accepts_the_optimum_and_rejects_a_near_optimal_swap(dtype) -> None:
    X = separated_mixture(4_000, 3, 4, 1.0, 23).astype(dtype)
    centers = plusplus_start(X.astype(np.float64), 4, 23).astype(dtype)
    res = balanced_assign(X, centers)
    cert = certify(X, centers, res.labels)
    assert cert.optimal and cert.violations == 0
    # swap the two points of different clusters whose swap costs least: still balanced,
    # objective higher by a hair (about 1e-7 relative or less)
    C = reference_cost(X, centers)
    labels = res.labels
    best = (np.inf, 0, 0)
    for a in range(4):
        for b in range(a + 1, 4):
            ia = np.flatnonzero(labels == a)
            ib = np.flatnonzero(labels == b)
            da = C[ia, b] - C[ia, a]
            db = C[ib, a] - C[ib, b]
            i, j = ia[np.argmin(da)], ib[np.argmin(db)]
            if da.min() + db.min() < best[0]:
                best = (da.min() + db.min(), i, j)
    increase, i, j = best
    assert 0 < increase < 1e-2 * res.objective
    worse = labels.copy()
    worse[i], worse[j] = labels[j], labels[i]
    bad = certify(X, centers, worse)
    assert not bad.optimal
    assert bad.violations > 0
    assert bad.duality_gap >= 0.5 * increase


def test_certify_checks_its_arguments() -> None:
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        certify(X, np.zeros((2, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        certify(X, np.zeros((2, 2)), [0, 1, 2, 0])
    with pytest.raises(TypeError, match="labels must be integers"):
        certify(X, np.zeros((2, 2)), [0.5, 1, 0, 1])
    with pytest.raises(ValueError, match="centers must have shape"):
        certify(X, np.zeros((2, 3)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="sizes must sum"):
        certify(X, np.zeros((2, 2)), [0, 1, 0, 1], sizes=[1, 1])


def test_large_k_on_few_rows_per_cluster_beyond_the_dense_budget(monkeypatch) -> None:
    """k = 512 on 32 rows per cluster, with a band budget that holds every row as candidates
    but not as dense cost rows: the cold start takes its potentials from a thin sample (8
    rows per cluster; 16 are wanted when the dense rows fit) instead of stopping with the
    band error, and the step is the LP's optimum."""
    n, k = 16_384, 512
    X = separated_mixture(n, 8, k, 1.0, 7)
    centers = plusplus_start(X, k, 7)
    dense_row = 8 * (k + 4) + 8 * X.shape[1]
    budget = n * dense_row // 2  # a quarter of what every dense row needs (twice over)
    monkeypatch.setattr(RowBlocks, "band_budget", lambda self: budget)
    blocks = RowBlocks(X)
    blocks.set_centers(centers)
    sample = blocks.sample()
    assert sample is not None and sample.shape[0] < 16 * k
    _check_against_emd(X, centers)


@pytest.mark.parametrize("n, k, d, seed", [(2_000, 40, 2, 1), (4_000, 100, 8, 0)])
def test_paths_arc_lists_keep_the_cheapest_moves(monkeypatch, n, k, d, seed) -> None:
    """Dense rows, many points a cluster: the shortest paths keep each arc's cheapest moves
    in short sorted lists.  A point joining a full list with a larger value than all its
    entries must be left out (and bound what is left out), not take the place of a cheaper
    one: the arc's slack would then be too large, the result not optimal, and its own slack
    matrix would certify it (these cases did, by 0.013 and 0.72 in reduced cost).
    ``_LIST_CELLS = 0``: lists of 4 entries, filled often."""
    import ballot_dask.solvers.paths as paths

    monkeypatch.setattr(paths, "_LIST_CELLS", 0)
    monkeypatch.setattr(paths, "_DENSE_RESCAN_ROWS", 16)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    C = cost_block(X, X[rng.choice(n, k, replace=False)])
    cap = _equal(n, k)
    labels = np.argmin(C, axis=1)
    assert n > paths._DENSE_RESCAN_ROWS * k  # the lists, not the rescans
    result = successive_shortest_paths(C, labels, cap.lower, cap.upper, np.zeros(k))
    assert result.status == DONE
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), cap.lower)
    # dual feasibility: every point's label minimises its reduced cost
    R = C - result.potentials
    assert (R[np.arange(n), labels] - R.min(axis=1)).max() <= 1e-9 * C.max()
    opt, _ = emd_optimum(C, cap.lower)
    assert C[np.arange(n), labels].sum() == pytest.approx(opt, rel=1e-9)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_full_band_of_candidates_that_fails_is_cut_again_under_its_own_optimum(
    monkeypatch,
) -> None:
    # k = 1024, 24 points a cluster, overlapping, from random rows, with a budget that holds
    # every row as candidates but only 10 000 as dense rows: the last step's band of every
    # row fails its certificate (a row wanted a column it did not hold), and its candidates
    # are cut again under the band's own optimum's potentials (counted), where the
    # potentials were refined by entropic passes before (480 s a step at k = 4096); none
    # are now, and the labels are at POT's optimum for the fitted centers
    from ballot_dask import BalancedKMeans
    from ballot_dask.solvers import exact

    n, d, k = 24 * 1024, 64, 1024
    rng = np.random.default_rng(1)
    means = 0.5 * rng.standard_normal((k, d))
    X = means[rng.permutation(np.arange(n) % k)] + rng.standard_normal((n, d))
    X = np.ascontiguousarray(X, dtype=np.float32)
    c0 = X[np.random.default_rng(2).choice(n, k, replace=False)].astype(np.float64)
    dense_rows = 10_000
    monkeypatch.setattr(
        RowBlocks, "band_budget", lambda self: 2 * (8 * (k + 4) + 8 * d) * dense_rows
    )
    recut: list[int] = []
    refined: list[int] = []
    real_repair, real_refine = exact._repair, exact.entropic_potentials

    def repair(blocks, capacities, band, costs, labels, off, search):
        if search.recentred and costs.restricted and labels.shape[0] == n:
            recut.append(off)
        return real_repair(blocks, capacities, band, costs, labels, off, search)

    def refine(*args, **kwargs):
        refined.append(1)
        return real_refine(*args, **kwargs)

    monkeypatch.setattr(exact, "_repair", repair)
    monkeypatch.setattr(exact, "entropic_potentials", refine)
    km = BalancedKMeans(k, init=c0, max_iter=1, random_state=0).fit(X)
    assert recut and not refined, (recut, refined)
    assert np.bincount(km.labels_, minlength=k).tolist() == [24] * k
    assert km.certificate_.optimal
    C = reference_cost(X, km.cluster_centers_)
    opt, _ = emd_optimum(C, np.full(k, 24))
    assert float(C[np.arange(n), km.labels_].sum()) == pytest.approx(opt, rel=1e-9)
