"""Band rows as candidates (:mod:`ballot_dask.candidates`): each band row's few cheapest
clusters instead of its whole cost row.

The pass's selection is checked against a stable sort of the dense reduced costs; the
restricted repair against the same repair on dense rows that cost ``inf`` off the columns;
the slack bound against the true slack matrix; and whole exact steps that take the candidate
path (counted, not assumed), including ones whose candidates are too few, against ``ot.emd``.
"""

from __future__ import annotations

import numpy as np
import pytest
from references import count_calls, emd_optimum, reference_cost
from sklearn.cluster import kmeans_plusplus

from ballot_dask import resolve_capacities
from ballot_dask.blocks import RowBlocks
from ballot_dask.candidates import BandCosts, candidate_width
from ballot_dask.combine import combine_passes
from ballot_dask.costs import cost_block
from ballot_dask.exact_pass import exact_pass
from ballot_dask.kernels import reduced_cost_runner_up
from ballot_dask.solvers import SolverOptions, exact, search
from ballot_dask.solvers.dijkstra import _MEMBER_COSTS, MEMBER_MIN_K
from ballot_dask.solvers.exact import solve_exact
from ballot_dask.solvers.paths import DONE, successive_shortest_paths


def _mixture(n: int, d: int, k: int, sep: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((k, d))
    return means[np.arange(n) % k] + rng.standard_normal((n, d))


def _dense_of(band: BandCosts, k: int) -> np.ndarray:
    """The restricted problem's dense costs: ``inf`` off each row's columns."""
    assert band.columns is not None
    out = np.full((band.costs.shape[0], k), np.inf)
    np.put_along_axis(out, band.columns.astype(np.int64), band.costs, axis=1)
    return out


def test_candidate_width() -> None:
    assert candidate_width(16) == 0 and candidate_width(127) == 0
    assert candidate_width(128) == 24 and candidate_width(4096) == 24


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("k", [12, 400])  # 400: among the columns under a sampled threshold
@pytest.mark.parametrize("width", [1, 5, 12, 40])
def test_pass_keeps_the_cheapest_columns_lowest_index_first(width: int, k: int, ties: bool) -> None:
    rng = np.random.default_rng(width)
    if ties:  # many exact ties: too many columns under the threshold, or too few
        X = rng.integers(0, 4, size=(3000, 3)).astype(np.float64)
        centers = rng.integers(0, 4, size=(k, 3)).astype(np.float64)
        v = rng.integers(0, 3, size=k).astype(np.float64)
    else:
        X = rng.standard_normal((3000, 8))
        centers = rng.standard_normal((k, 8))
        v = rng.normal(0, 0.1, size=k)
    p = exact_pass(X, centers, v, np.inf, X.shape[0], width=width)
    assert p.candidates is not None and p.rows.tolist() == list(range(3000))
    C = cost_block(X, centers)
    R = C - v
    order = np.argsort(R, axis=1, kind="stable")  # stable: the lowest index first on ties
    w = min(width, k)
    np.testing.assert_array_equal(p.candidates.columns, order[:, :w])
    np.testing.assert_array_equal(p.candidates.costs, np.take_along_axis(C, order[:, :w], 1))
    if width < k:
        np.testing.assert_array_equal(p.candidates.floor, np.sort(R, axis=1)[:, w])
    else:
        assert np.all(p.candidates.floor == np.inf)


def test_pass_candidates_of_the_band_rows_only_over_lanes_and_blocks() -> None:
    X = _mixture(80_000, 4, 16, 1.0, 3)  # several lanes
    centers = kmeans_plusplus(X, 16, random_state=3)[0]
    v = np.random.default_rng(4).normal(0, 0.3, 16)
    whole = exact_pass(X, centers, v, 0.2, 80_000, width=6)
    parts = combine_passes(
        [
            exact_pass(X[lo : lo + 30_000], centers, v, 0.2, 80_000, lo, width=6)
            for lo in (0, 30_000, 60_000)
        ]
    )
    R = cost_block(X, centers) - v
    S = np.sort(R, axis=1)
    band = np.flatnonzero(S[:, 1] - S[:, 0] <= 0.2)
    for p in (whole, parts):
        assert p.candidates is not None
        np.testing.assert_array_equal(p.rows, band)
        order = np.argsort(R[band], axis=1, kind="stable")[:, :6]
        np.testing.assert_array_equal(p.candidates.columns, order)
        np.testing.assert_array_equal(p.candidates.floor, S[band, 6])
        assert p.candidates.costs.shape == (band.size, 6)
    assert exact_pass(X, centers, v, 0.2, 80_000).candidates is None  # not asked for


def test_runner_up_and_label_costs_among_the_columns() -> None:
    rng = np.random.default_rng(5)
    k = 20
    X = rng.integers(0, 5, size=(2000, 2)).astype(np.float64)
    centers = rng.integers(0, 5, size=(k, 2)).astype(np.float64)
    v0 = np.zeros(k)
    p = exact_pass(X, centers, v0, np.inf, 2000, width=4)
    assert p.candidates is not None
    band = BandCosts(p.candidates.costs, p.candidates.columns, p.candidates.floor, v0)
    v = rng.integers(0, 3, size=k).astype(np.float64)
    labels, second, gaps = band.runner_up(v)
    dense = reduced_cost_runner_up(_dense_of(band, k), v)  # ties: lowest index, as there
    np.testing.assert_array_equal(labels, dense[0])
    np.testing.assert_array_equal(second, dense[1])
    np.testing.assert_array_equal(gaps, dense[2])
    np.testing.assert_array_equal(band.labels(v)[0], labels)
    C = cost_block(X, centers)
    np.testing.assert_array_equal(band.label_costs(labels), C[np.arange(2000), labels])


def _true_slack(C: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    S = np.full((k, k), np.inf)
    red = C - C[np.arange(C.shape[0]), labels][:, None]
    for a in range(k):
        rows = labels == a
        if rows.any():
            S[a] = red[rows].min(axis=0)
    return S


def _first_band(n: int, k: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, BandCosts]:
    """Data, k-means++ centers and every row as candidates under zero potentials."""
    X = _mixture(n, 4, k, 2.0, seed)
    centers = kmeans_plusplus(X, k, random_state=seed)[0]
    v0 = np.zeros(k)
    p = exact_pass(X, centers, v0, np.inf, n, width=width)
    assert p.candidates is not None
    return X, centers, BandCosts(p.candidates.costs, p.candidates.columns, p.candidates.floor, v0)


def _both_repairs(band: BandCosts, n: int, k: int) -> tuple:
    """The repair from zero potentials on the candidates and on their dense costs (``inf``
    off the columns): the same moves, labels and potentials.  Returns the labels, both
    results and the dense costs."""
    v0 = np.zeros(k)
    cap = resolve_capacities(n, k)
    labels = band.labels(v0)[0]
    sparse = successive_shortest_paths(
        band.costs, labels, cap.lower, cap.upper, v0, columns=band.columns, n_clusters=k
    )
    M = _dense_of(band, k)
    dense_labels = band.labels(v0)[0]
    dense = successive_shortest_paths(M, dense_labels, cap.lower, cap.upper, v0)
    assert sparse.status == dense.status == DONE
    assert sparse.augmentations == dense.augmentations > 0
    np.testing.assert_array_equal(labels, dense_labels)
    np.testing.assert_array_equal(sparse.potentials, dense.potentials)
    return labels, sparse, dense, M


@pytest.mark.parametrize(
    "k, width",
    [
        (40, 8),  # 100 rows a cluster: a cluster's slack row is rescanned after a move
        (12, 5),  # 333 rows a cluster: the arcs keep lists of their cheapest moves
    ],
)
def test_restricted_paths_equal_dense_paths_on_the_restricted_costs(k: int, width: int) -> None:
    n = 4000
    X, centers, band = _first_band(n, k, width, 6)
    v0 = np.zeros(k)
    labels, sparse, dense, M = _both_repairs(band, n, k)
    off = ~np.eye(k, dtype=bool)  # the slack matrix's diagonal is not a move
    np.testing.assert_array_equal(sparse.slack[off], _true_slack(M, labels, k)[off])
    # the bound: at most the true slack of the full costs (a proof), and equal to the
    # candidates' own moves wherever those are below every floor
    C = cost_block(X, centers)
    true = _true_slack(C, labels, k)
    bound = band.bound_slack(sparse.slack, labels)
    assert np.all(bound[off] <= true[off])
    assert np.all(bound <= sparse.slack)
    assert np.mean(bound[off] == true[off]) > 0.01  # tight on the arcs the rows hold
    # with the fixed rows' slack matrix: the minimum of the two, entry by entry (and the
    # bound of the columns left out, margin_a + v0_b, computed as numpy would)
    fixed = np.random.default_rng(width).normal(size=(k, k))
    fixed[np.random.default_rng(width + 1).random((k, k)) < 0.3] = np.inf
    np.testing.assert_array_equal(
        band.bound_slack(sparse.slack, labels, fixed=fixed), np.minimum(fixed, bound)
    )
    margin = np.full(k, np.inf)
    np.minimum.at(margin, labels, band.floor - band.label_costs(labels))
    np.testing.assert_array_equal(bound, np.minimum(sparse.slack, margin[:, None] + v0[None, :]))
    dense_band = BandCosts(M)
    np.testing.assert_array_equal(
        dense_band.bound_slack(dense.slack, labels, fixed=fixed), np.minimum(fixed, dense.slack)
    )


def test_restricted_paths_read_arcs_from_band_points_at_large_k() -> None:
    # from MEMBER_MIN_K clusters on, a search reads a cluster's arcs from its few band
    # points instead of its row of slack (when they hold fewer costs): the same repair, to
    # the bit, as on dense rows that cost inf off the columns (which read the rows)
    k, width = MEMBER_MIN_K, 32
    n = 3 * k
    band = _first_band(n, k, width, 7)[2]
    # every cluster but the largest few is read from its points
    held = np.sort(np.bincount(band.labels(np.zeros(k))[0], minlength=k))
    assert held[-8] * width * _MEMBER_COSTS <= k
    _, sparse, dense, _ = _both_repairs(band, n, k)
    assert sparse.augmentations > k // 4
    assert sparse.settled == dense.settled and sparse.searches == dense.searches
    off = ~np.eye(k, dtype=bool)
    np.testing.assert_array_equal(sparse.slack[off], dense.slack[off])


def test_restricted_paths_need_n_clusters() -> None:
    with pytest.raises(ValueError, match="n_clusters"):
        successive_shortest_paths(
            np.zeros((2, 1)),
            np.zeros(2, dtype=np.int64),
            np.ones(2, dtype=np.int64),
            np.ones(2, dtype=np.int64),
            np.zeros(2),
            columns=np.zeros((2, 1), dtype=np.int32),
        )


def count_band_solves(monkeypatch, width: int | None = None) -> list[bool]:
    """Record whether each band solve of the exact step was on candidates; ``width``
    replaces the candidates per row."""
    seen: list[bool] = []
    real = exact._repair

    def counted(blocks, capacities, band, costs, *args):
        seen.append(costs.restricted)
        return real(blocks, capacities, band, costs, *args)

    monkeypatch.setattr(exact, "_repair", counted)
    real_dense = exact._repair_dense

    def counted_dense(*args):  # (from the candidates' optimum, or by the shortest paths)
        seen.append(False)
        return real_dense(*args)

    monkeypatch.setattr(exact, "_repair_dense", counted_dense)
    if width is not None:
        monkeypatch.setattr(exact, "candidate_width", lambda k: width)
    return seen


def _lloyd_step(k: int, n: int, d: int, seed: int, move: float):
    """A Lloyd step at large k: ``(X, capacities, the step before, the moved centers)``; the
    step before (from k-means++ centers) gives the warm start."""
    X = _mixture(n, d, k, 1.0, seed)
    before = kmeans_plusplus(X, k, random_state=seed)[0]
    cap = resolve_capacities(n, k)
    first = RowBlocks(X)
    first.set_centers(before)
    warm = solve_exact(first, cap, SolverOptions())
    centers = before + move * np.random.default_rng(seed + 1).standard_normal(before.shape)
    return X, cap, warm, centers


def _assert_emd_optimum(step, blocks: RowBlocks, X: np.ndarray, centers: np.ndarray, cap) -> None:
    """The step is certified, its labels have the sizes asked and cost ot.emd's optimum."""
    assert step.certificate is not None and step.certificate.optimal
    labels = np.asarray(blocks.labels(step.labeler))
    np.testing.assert_array_equal(np.bincount(labels, minlength=centers.shape[0]), cap.lower)
    C = reference_cost(X, centers)
    opt, _ = emd_optimum(C, cap.lower)
    assert step.objective == pytest.approx(opt, rel=1e-9)
    assert float(C[np.arange(X.shape[0]), labels].sum()) == pytest.approx(opt, rel=1e-9)


class _Remote(RowBlocks):
    """In-memory blocks that behave like a remote engine (a band, not every row)."""

    gather_is_free = False  # type: ignore[misc]


@pytest.mark.parametrize(("k", "width", "remote"), [(128, None, False), (256, None, True)])
def test_warm_exact_step_on_candidates_equals_emd(monkeypatch, k, width, remote) -> None:
    # a Lloyd step at a large k: the centers moved a little, the previous potentials are a
    # warm start; the band's candidates settle it, and the objective is ot.emd's
    n = 48 * k
    X, cap, warm, centers = _lloyd_step(k, n, 16, k, 0.02)
    seen = count_band_solves(monkeypatch, width)
    blocks = _Remote(X, block_rows=n // 3 + 1) if remote else RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions(), warm.potentials, warm.eps)
    assert seen and seen[0], "the candidate path was not taken"
    assert step.extra["restricted"] >= 1
    _assert_emd_optimum(step, blocks, X, centers, cap)


def test_warm_exact_step_at_large_k_reads_arcs_from_points_and_equals_emd(monkeypatch) -> None:
    # k = MEMBER_MIN_K: the warm step's repair runs on candidates, its searches read the arcs
    # out of clusters with few band points from those points; the step is ot.emd's optimum
    from ballot_dask.solvers import repair

    k = MEMBER_MIN_K
    n = 4 * k
    X, cap, warm, centers = _lloyd_step(k, n, 8, 5, 0.2)
    repairs: list[tuple[bool, int]] = []
    real = repair.successive_shortest_paths

    def recorded(*args, **kwargs):
        result = real(*args, **kwargs)
        repairs.append((kwargs.get("columns") is not None, result.augmentations))
        return result

    monkeypatch.setattr(repair, "successive_shortest_paths", recorded)
    blocks = RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions(), warm.potentials, warm.eps)
    assert any(on_columns and moved > 100 for on_columns, moved in repairs), repairs
    _assert_emd_optimum(step, blocks, X, centers, cap)


@pytest.mark.parametrize("width", [1, 2])
def test_too_few_candidates_fall_back_to_dense_rows(monkeypatch, width: int) -> None:
    # one or two clusters per row cannot hold the step's moves: the floors cannot prove the
    # restricted optimum (or it cannot meet the sizes), the same band is solved again from
    # dense rows, and the answer is still ot.emd's
    k, n = 128, 128 * 40
    X, cap, warm, centers = _lloyd_step(k, n, 8, 9, 0.2)
    seen = count_band_solves(monkeypatch, width)
    blocks = RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions(), warm.potentials, warm.eps)
    assert True in seen and False in seen, seen  # candidates first, then dense rows
    assert step.extra["dense"] == 1.0
    assert step.certificate is not None and step.certificate.optimal
    opt, _ = emd_optimum(reference_cost(X, centers), cap.lower)
    assert step.objective == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize(("width", "move"), [(8, 0.5), (None, 1.0)])
def test_a_failed_certificate_hands_its_dense_rows_to_the_dense_repair(
    monkeypatch, width, move
) -> None:
    # the centers moved far: the restricted optimum's certificate fails on the floors and on
    # the band's true slack matrix, a row wanting a column it does not hold.  The band's dense
    # cost rows are computed once, for that slack matrix, and the repair on dense rows that
    # follows takes them (they are not computed again, nor slab by slab); the answer is
    # still ot.emd's
    k, n = 128, 128 * 40
    X, cap, warm, centers = _lloyd_step(k, n, 8, 9, move)
    seen = count_band_solves(monkeypatch, width)
    computed = [count_calls(monkeypatch, module, "band_costs") for module in (exact, search)]
    slabbed = count_calls(monkeypatch, search, "band_slack_matrix")
    blocks = RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions(), warm.potentials, warm.eps)
    assert seen == [True, False]  # candidates, then the same band on dense rows
    assert [len(c) for c in computed] == [0, 1] and not slabbed
    assert step.certificate is not None and step.certificate.optimal
    opt, _ = emd_optimum(reference_cost(X, centers), cap.lower)
    assert step.objective == pytest.approx(opt, rel=1e-9)


def test_cold_step_takes_dense_rows_first() -> None:
    # from the zero potentials (no sample, no warm start) the candidates would be far from
    # where the rows end up: the first band is dense
    k, n = 128, 128 * 16
    X = _mixture(n, 8, k, 1.0, 12)
    blocks = RowBlocks(X)
    blocks.set_centers(kmeans_plusplus(X, k, random_state=12)[0])
    step = solve_exact(blocks, resolve_capacities(n, k), SolverOptions())
    assert step.extra["restricted"] == 0.0
    assert step.certificate is not None and step.certificate.optimal


def test_band_slack_matrix_slab_by_slab(monkeypatch) -> None:
    from ballot_dask import candidates

    monkeypatch.setattr(candidates, "_SLAB_CELLS", 37 * 16)  # slabs of 37 rows, a short last
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1000, 3)).astype(np.float32)
    centers = rng.standard_normal((16, 3))
    labels = rng.integers(0, 15, size=1000)  # cluster 15 empty: its row stays inf
    S = candidates.band_slack_matrix(x, centers, labels)
    true = _true_slack(cost_block(x, centers), labels, 16)
    off = ~np.eye(16, dtype=bool)
    np.testing.assert_array_equal(S[off], true[off])
    assert np.all(S[15] == np.inf)


def test_candidate_rows_have_their_own_share_of_the_band_budget(monkeypatch) -> None:
    # a row held as candidates takes about a third of a dense row's bytes at k = 256: a warm
    # band wider than the dense rows' budget allows is gathered whole, and settled
    k = 256
    n = 48 * k
    X, cap, warm, centers = _lloyd_step(k, n, 16, 21, 0.02)
    # the dense rows' limit (8 (k + 4) + 8 d bytes a row, half the budget) is half the band
    # this step takes (every row); the candidates' (952 bytes a row) holds it
    dense_rows = 6000
    monkeypatch.setattr(
        RowBlocks, "band_budget", lambda self: 2 * (8 * (k + 4) + 8 * 16) * dense_rows
    )
    blocks = RowBlocks(X)
    blocks.set_centers(centers)
    step = solve_exact(blocks, cap, SolverOptions(), warm.potentials, warm.eps)
    assert step.band_size > dense_rows
    assert step.extra["restricted"] >= 1 and step.extra["dense"] == 0.0
    assert step.certificate is not None and step.certificate.optimal
    opt, _ = emd_optimum(reference_cost(X, centers), cap.lower)
    assert step.objective == pytest.approx(opt, rel=1e-9)
