"""The band's per-pair allowance: the exact step on separated clusters, where a boundary
lies in a sparse region and a single gap threshold would hold most of X."""

from __future__ import annotations

import numpy as np
import pytest
from references import emd_optimum, reference_cost, remote_blocks

from ballot_dask import resolve_capacities
from ballot_dask.exact_pass import band_costs, exact_pass, gap_bin
from ballot_dask.kernels import reduced_cost_labels
from ballot_dask.solvers import SolverOptions, exact
from ballot_dask.solvers.exact import solve_exact
from ballot_dask.solvers.search import _GROWN, _MIN_BAND


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
