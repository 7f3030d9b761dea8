"""The band's per-pair allowance: the exact step on separated clusters, where a boundary
lies in a sparse region and a single gap threshold would hold most of X."""

from __future__ import annotations

import numpy as np
import pytest
from references import emd_optimum, reference_cost, remote_blocks, row_blocks

from ballot_dask import resolve_capacities
from ballot_dask.exact_pass import band_costs, exact_pass, gap_bin
from ballot_dask.kernels import reduced_cost_labels
from ballot_dask.solvers import SolverOptions, exact
from ballot_dask.solvers.exact import solve_exact
from ballot_dask.solvers.search import _GROWN, _KEPT, _MIN_BAND, _NEARLY_ALL, _PER_CLUSTER


def _separated(n: int, k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separated clusters (means ``3 N(0, I)``, unit variance) and a start of random data
    rows (it splits some clusters and leaves others without a center)."""
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((k, d))
    X = means[np.arange(n) % k] + rng.standard_normal((n, d))
    return X, X[rng.choice(n, k, replace=False)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pass_bands_rows_by_their_allowed_score(dtype) -> None:
    rng = np.random.default_rng(3)
    n, k = 5_000, 6
    X = rng.standard_normal((n, 3)).astype(dtype)
    centers = rng.standard_normal((k, 3))
    v = 0.3 * rng.standard_normal(k)
    allowance = np.abs(rng.standard_normal((k, k)))
    np.fill_diagonal(allowance, 0.0)
    theta = 0.2
    out = exact_pass(X, centers, v, theta, n, allowance=allowance)
    # by NumPy: a row labelled a is in the band when some b != a has gap - allowance <= theta
    red = band_costs(X, centers) - v
    rows = np.arange(n)
    labels = red.argmin(axis=1)
    score = red - red[rows, labels][:, None] - allowance[labels]
    score[rows, labels] = np.inf
    score = score.min(axis=1)
    np.testing.assert_array_equal(np.sort(out.rows), np.flatnonzero(score <= theta))
    expected = np.bincount([gap_bin(s) for s in score], minlength=out.hist.shape[0])
    np.testing.assert_array_equal(out.hist, expected)
    # a zero allowance is the top-two gap's band
    plain = exact_pass(X, centers, v, theta, n)
    zero = exact_pass(X, centers, v, theta, n, allowance=np.zeros((k, k)))
    np.testing.assert_array_equal(plain.rows, zero.rows)
    np.testing.assert_array_equal(plain.hist, zero.hist)
    assert out.rows.shape[0] > plain.rows.shape[0]
    with pytest.raises(ValueError, match=r"allowance must have shape \(6, 6\)"):
        exact_pass(X, centers, v, theta, n, allowance=np.zeros((k, k + 1)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairs_no_row_can_use_are_left_out_of_the_pass_with_the_same_band(dtype) -> None:
    # two failed bands in a row under the same potentials, each given an allowance by the
    # failed band's own potentials (_allow): the pass applies only the pairs some row can
    # use (its fixed rows' slack and the last pass's pairs tell) and cuts the same band as
    # with every pair
    from ballot_dask.solvers.allowance import _allow
    from ballot_dask.solvers.search import _Search

    rng = np.random.default_rng(4)
    n, k, d, theta = 20_000, 48, 8, 0.5
    X, centers = _separated(n, k, d, 4)
    X = X.astype(dtype)
    v = 0.5 * rng.standard_normal(k)
    search = _Search(potentials=v, theta=theta, wanted=n, limit=n)
    cap = resolve_capacities(n, k)
    band = exact_pass(X, centers, v, theta, n, allowance=search.pass_allowance())
    assert search.applied is None
    for _ in range(2):
        labels, _ = reduced_cost_labels(band_costs(band.x, centers), v)
        search.repaired = v + 2.0 * rng.standard_normal(k)  # the failed band's potentials
        assert _allow(search, centers, None, cap, band, labels)
        every = search.allowance_for_pass()
        applied = search.pass_allowance()
        assert every is not None and applied is not None
        assert 0 < np.count_nonzero(applied) < np.count_nonzero(every) / 4
        full = exact_pass(X, centers, v, theta, n, allowance=every)
        band = exact_pass(X, centers, v, theta, n, allowance=applied)
        np.testing.assert_array_equal(band.rows, full.rows)
        np.testing.assert_array_equal(band.counts, full.counts)
        np.testing.assert_array_equal(band.slack, full.slack)
        np.testing.assert_array_equal(band.sums, full.sums)
        assert band.objective == full.objective
        # (the histogram counts each row's score by the pairs applied: a band row's may be
        # another, still within the threshold)
        assert band.hist.sum() == full.hist.sum() == n
        assert full.rows.shape[0] > 0
    # a threshold below the one the bound holds for: every pair the allowance has
    search.theta = theta / 2
    lower = search.pass_allowance()
    assert lower is not None
    np.testing.assert_array_equal(lower > 0.0, search.allowance_for_pass() > 0.0)


# seeds 0 and 2 (about 17 s each, most of it ot.emd's reference) run with -m slow
@pytest.mark.parametrize(
    ("seed", "dtype"),
    [
        pytest.param(0, np.float64, marks=pytest.mark.slow),
        (1, np.float32),
        pytest.param(2, np.float64, marks=pytest.mark.slow),
    ],
)
def test_separated_clusters_settle_in_a_narrow_band(seed: int, dtype) -> None:
    # a cold step on a remote engine: the sample's potentials are sharp where a boundary
    # cuts a cluster and loose where it runs between separated ones; the clusters' quotas
    # and the failed band's own potentials give those pairs their reach, and the band stays
    # a fraction of X (a single threshold needs all of it: see the test below; the sample's
    # first band holds 16 times its error here, 20 000 rows, see exact._SAMPLE_ROOM)
    n, k, d = 100_000, 16, 16
    X, start = _separated(n, k, d, seed)
    X = X.astype(dtype)
    blocks = remote_blocks(X, start, block_rows=24_999)
    cap = resolve_capacities(n, k)
    step = solve_exact(blocks, cap, SolverOptions())
    assert step.extra["allowed"] >= 1
    assert step.band_size <= n // 4
    assert step.certificate is not None and step.certificate.optimal
    # the next step's threshold comes from the sample's gaps (the pass's histogram counted
    # the allowed scores): under the step's potentials it holds about the band the next step
    # wants, the least band of X or, as this one needed an allowance, _GROWN times its rows
    _, gaps = reduced_cost_labels(band_costs(X, np.asarray(blocks.centers)), step.potentials)
    wanted = max(_MIN_BAND, int(_GROWN * step.band_size))
    assert abs(np.count_nonzero(gaps <= step.eps) - wanted) <= 0.1 * wanted
    C = reference_cost(X, np.asarray(blocks.centers, dtype=X.dtype))
    opt, _ = emd_optimum(C, np.asarray(step.sizes))
    np.testing.assert_array_equal(step.sizes, cap.lower)
    assert step.objective == pytest.approx(opt, rel=1e-9)
    labels = blocks.labels(step.labeler)
    assert float(C[np.arange(n), labels].sum()) == pytest.approx(opt, rel=1e-9)


def test_without_allowances_the_band_holds_every_row(monkeypatch) -> None:
    monkeypatch.setattr(exact, "_MAX_ALLOWED", 0)
    n, k, d = 100_000, 16, 16
    X, start = _separated(n, k, d, 0)
    step = solve_exact(remote_blocks(X, start, 24_999), resolve_capacities(n, k), SolverOptions())
    assert step.extra["allowed"] == 0
    # a single threshold settles the step only once the band holds most of X (91 302 rows
    # of 100 000 here, after the first band of 20 000 failed); with allowances, a fifth
    assert step.band_size > n // 2


# seed 0 (about 20 s) runs with -m slow
@pytest.mark.parametrize("seed", [pytest.param(0, marks=pytest.mark.slow), 1])
def test_allowances_beyond_256_clusters(seed: int, monkeypatch) -> None:
    # k = 320 on 128 rows a cluster: the failed band's clusters get their reach and the band
    # holds part of X (without allowances, all of it), at the same exact optimum
    n, k, d = 40_960, 320, 16
    X, start = _separated(n, k, d, seed)
    blocks = remote_blocks(X, start, block_rows=n // 4 + 1)
    cap = resolve_capacities(n, k)
    step = solve_exact(blocks, cap, SolverOptions())
    assert step.extra["allowed"] >= 1
    assert step.band_size < 0.9 * n
    assert step.certificate is not None and step.certificate.optimal
    np.testing.assert_array_equal(step.sizes, cap.lower)
    opt, _ = emd_optimum(reference_cost(X, np.asarray(blocks.centers)), np.asarray(step.sizes))
    assert step.objective == pytest.approx(opt, rel=1e-9)
    monkeypatch.setattr(exact, "_ALLOW_CLUSTERS", 256)
    plain = solve_exact(remote_blocks(X, start, n // 4 + 1), cap, SolverOptions())
    assert plain.extra["allowed"] == 0
    assert plain.band_size == n


def _selected_reach(costs, v, labels, under, lack, n, theta) -> list[float]:
    """The deficit clusters' reach by a selection in each column's gaps (NumPy)."""
    from ballot_dask.solvers.allowance import _quota_rows

    s = costs.shape[0]
    least = costs[np.arange(s), labels] - v[labels]
    out = []
    for t, b in enumerate(under):
        gaps = (costs[:, b] - v[b] - least)[labels != b]
        rows = min(gaps.size, _quota_rows(int(lack[t]), s, n))
        out.append(max(0.0, float(np.partition(gaps, rows - 1)[rows - 1]) - theta) if rows else 0.0)
    return out


@pytest.mark.parametrize("case", ["ties", "few rows", "every row"])
def test_deficit_reach_picks_each_columns_quota_gap_as_a_selection_would(case: str) -> None:
    # the deficit clusters' reach (one pass over the sample's rows, every column at once)
    # against a selection in each column's gaps: costs on a coarse grid (ties), a column
    # whose rows are fewer than its quota, a column that labels every row
    from ballot_dask.solvers.allowance import _reach_in

    rng = np.random.default_rng(5)
    s, k, n, theta = 400, 9, 40_000, 0.05
    costs = np.round(4.0 * rng.random((s, k)), 1)
    v = np.round(rng.standard_normal(k), 1)
    labels = (costs - v).argmin(axis=1)
    if case == "few rows":  # column 7's rows: the 3 not labelled 7, its quota 8 or more
        labels[:] = 7
        labels[:3] = 1
    elif case == "every row":
        labels[:] = 2
    least = costs[np.arange(s), labels] - v[labels]
    under = np.array([0, 2, 5, 7], dtype=np.int64)
    lack = np.array([30, 1, 400, 50], dtype=np.int64)
    got = _reach_in(costs, v, least, labels, under, lack, n, theta)
    expected = _selected_reach(costs, v, labels, under, lack, n, theta)
    np.testing.assert_array_equal(got, expected)
    if case == "every row":
        assert got[1] == 0.0  # no row to take in
    elif case == "few rows":
        # column 7: the largest of its 3 rows' gaps
        three = costs[:3, 7] - v[7] - (costs[:3, 1] - v[1])
        assert got[3] == max(0.0, float(three.max()) - theta) > 0.0
    else:
        assert np.all(got > 0.0)


def test_a_surplus_whose_fixed_rows_are_over_its_bound_reaches_beyond_the_band() -> None:
    # separated clusters, potentials that give cluster 0 about 3 % more rows than its size,
    # and a band: the repair moves every band row of cluster 0 out (as a stuck
    # repair leaves them), and its fixed rows alone are still over its bound.  The quota
    # must then count rows beyond the threshold: the allowance's pass takes in at least the
    # rows cluster 0 must give up (the sample's rows within the threshold do not count)
    from ballot_dask.solvers.allowance import _allow
    from ballot_dask.solvers.search import _Search

    n, k, d = 60_000, 8, 4
    rng = np.random.default_rng(6)
    centers = 3.0 * rng.standard_normal((k, d))
    X = centers[np.arange(n) % k] + rng.standard_normal((n, d))
    cap = resolve_capacities(n, k)
    red = band_costs(X, centers)
    v = np.zeros(k)
    # cluster 0 favoured until it holds about 3 % over its size; a band of 30 % of the rows
    # holds about 190 of its rows, and its fixed rows alone are 35 over its bound
    labels0 = red.argmin(axis=1)
    v[0] = float(np.quantile((red[:, 0] - red.min(axis=1))[labels0 != 0], 0.03 / (k - 1)))
    _, gaps = reduced_cost_labels(red, v)
    theta = float(np.quantile(gaps, 0.3))
    band = exact_pass(X, centers, v, theta, n, keep_labels=True)
    band_labels, _ = reduced_cost_labels(band_costs(band.x, centers), v)
    beyond = int(band.counts[0] - cap.upper[0])
    assert beyond > 0 and np.count_nonzero(band_labels == 0) > 0
    # the repair moved the band's rows of cluster 0 to their second-best clusters
    second = np.argsort(band_costs(band.x, centers) - v, axis=1)[:, 1]
    moved = np.where(band_labels == 0, second, band_labels)
    sample = X[rng.choice(n, n // 10, replace=False)]
    search = _Search(potentials=v, theta=theta, wanted=n, limit=n)
    assert _allow(search, centers, sample, cap, band, moved)
    allowance = search.pass_allowance()
    assert allowance is not None
    wider = exact_pass(X, centers, v, theta, n, allowance=allowance, keep_labels=True)
    taken = np.setdiff1d(wider.rows, band.rows)
    assert np.count_nonzero(band.labels[taken] == 0) >= beyond


def test_a_band_that_held_in_one_pass_narrows_by_a_quarter_at_most() -> None:
    # a warm step whose first band (about 30 000 rows) held in one pass: the next step's
    # threshold holds at least three quarters of it under the step's potentials, not the
    # least band (8 192 rows): bands narrow step by step (see search._KEPT; at k = 256 on
    # overlapping rows, a narrow band that needed an allowance and a grown one that did
    # not alternated)
    rng = np.random.default_rng(4)
    n, k, d = 60_000, 16, 8
    X = 0.5 * rng.standard_normal((k, d))[np.arange(n) % k] + rng.standard_normal((n, d))
    cap = resolve_capacities(n, k)
    centers = X[rng.choice(n, k, replace=False)]
    cold = solve_exact(row_blocks(X, centers, prepare=True), cap, SolverOptions())
    moved = centers + 0.02 * rng.standard_normal((k, d))
    _, gaps = reduced_cost_labels(band_costs(X, moved), cold.potentials)
    wide = float(np.quantile(gaps, 30_000 / n))
    step = solve_exact(
        row_blocks(X, moved, prepare=True), cap, SolverOptions(), cold.potentials, wide
    )
    assert step.extra["passes"] == 1 and step.extra["allowed"] == 0
    assert 25_000 <= step.band_size < _NEARLY_ALL * n
    assert step.certificate is not None and step.certificate.optimal
    _, gaps = reduced_cost_labels(band_costs(X, moved), step.potentials)
    held = np.count_nonzero(gaps <= step.eps)
    wanted = exact._WARM_ROOM * max(_MIN_BAND, _PER_CLUSTER * k)  # a warm step's first band
    assert held >= _KEPT * min(step.band_size, wanted) > 2 * _MIN_BAND  # 8 980 before
