"""The exact step's pass (:func:`ballot_dask.exact_pass.exact_pass`) against NumPy: labels,
sums, slack, band and gap histogram, its caps and ties, and the screened (BLAS) costs' bound."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
from kernel_cases import DTYPES, random_problem

from ballot_dask.costs import screened_centers
from ballot_dask.exact_pass import (
    _BINS,
    _EXP,
    _SUB,
    band_costs,
    exact_pass,
    gap_bin,
    power_labels,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, d", [(500, 4, 3), (9000, 7, 2), (40000, 64, 24), (40000, 64, 3)])
def test_exact_pass_matches_numpy(dtype: type, m: int, k: int, d: int) -> None:
    """Band = rows whose top-two gap is at most theta; every other row summarised at its
    power-diagram label: counts, sums, objective and slack matrix, against numpy."""
    X, centers = random_problem(m + k, m, k, d, dtype)
    v = np.random.default_rng(m).normal(0, 0.5, k)
    C = ot.dist(X.astype(np.float64), centers.astype(dtype).astype(np.float64))
    R = C - v
    labels = np.argmin(R, axis=1)
    ordered = np.sort(R, axis=1)
    gaps = ordered[:, 1] - ordered[:, 0]
    theta = float(np.quantile(gaps, 0.2))
    res = exact_pass(X, centers, v, theta, m)
    band = np.flatnonzero(gaps <= theta)
    np.testing.assert_array_equal(res.rows, band)
    np.testing.assert_array_equal(res.x, X[band])
    fixed = np.setdiff1d(np.arange(m), band)
    lab = labels[fixed]
    np.testing.assert_array_equal(res.counts, np.bincount(lab, minlength=k))
    sums = np.zeros((k, d))
    np.add.at(sums, lab, X[fixed].astype(np.float64))
    np.testing.assert_allclose(res.sums, sums, rtol=1e-10, atol=1e-9)
    assert res.objective == pytest.approx(C[fixed, lab].sum(), rel=1e-12)
    slack = np.full((k, k), np.inf)
    diff = C[fixed] - C[fixed, lab][:, None]
    for a in range(k):
        if np.any(lab == a):
            slack[a] = diff[lab == a].min(axis=0)
    np.testing.assert_allclose(res.slack, slack, rtol=0, atol=1e-9 * C.max())
    assert res.hist.sum() == m
    # the histogram (four bins per octave): the least bin edge below which the wanted rows
    # lie; the edge before it (at most 1.25 times smaller) holds fewer
    for wanted in (10, m // 3):
        t = res.band_rows_below(wanted)
        assert np.count_nonzero(gaps <= t) >= wanted > np.count_nonzero(gaps < t / 1.25)
    # band costs: the pass's own arithmetic
    np.testing.assert_allclose(band_costs(res.x, centers), C[band], rtol=1e-12, atol=1e-12)
    # power labels with overrides reproduce the pass's fixed labels exactly
    override = np.sort(np.random.default_rng(1).choice(m, 7, replace=False))
    fixed_labels = (labels[override] + 1) % k
    got = power_labels(X, centers, v, override, fixed_labels)
    want = labels.copy()
    want[override] = fixed_labels
    np.testing.assert_array_equal(got, want)


def _frexp_bin(gap: float) -> int:
    """The gap histogram's bin as its definition states it, through ``math.frexp``."""
    if not gap > 0.0:
        return 0
    if gap == math.inf:
        return _BINS - 1
    m, e = math.frexp(gap)
    octave = min(max(e + _EXP, 1), 2 * _EXP)
    return 1 + (octave - 1) * _SUB + min(int((m - 0.5) * 2 * _SUB), _SUB - 1)


def test_gap_bins_read_from_the_bits_are_frexps() -> None:
    """The pass reads a gap's bin from its float's bits: the same bin as the definition
    through ``frexp``, on octave and quarter edges, subnormals, the extremes and random
    gaps over the whole range."""
    rng = np.random.default_rng(8)
    edges = [math.ldexp(1.0 + q / 4, e) for e in range(-1080, 1024) for q in range(4)]
    around = [np.nextafter(g, 0.0) for g in edges] + [np.nextafter(g, math.inf) for g in edges]
    special = [0.0, -0.0, -1.0, math.nan, math.inf, 5e-324, 2.2250738585072014e-308,
               2.225073858507201e-308, 1.7976931348623157e308, 1e-310, 3e-320]  # fmt: skip
    randoms = list(np.exp(rng.uniform(-740.0, 709.0, 20_000)))
    randoms += list(rng.uniform(0.0, 1e-308, 2_000))  # subnormal and near
    for gap in edges + around + special + randoms:
        assert gap_bin(float(gap)) == _frexp_bin(float(gap)), gap


def test_exact_pass_cap_and_ties() -> None:
    # identical rows tie exactly: they are always in the band (while it has room); beyond its
    # cap the rest are fixed, and the summaries account for every row
    X = np.zeros((300, 2))
    X[150:] = 1.0
    centers = np.array([[0.5, 0.5], [0.5, 0.5 + 1e-300], [3.0, 3.0]])
    res = exact_pass(X, centers, np.zeros(3), 0.0, 100)
    assert res.rows.shape[0] <= 100 + 64  # the cap (and a lane's slack)
    assert res.counts.sum() + res.rows.shape[0] == 300
    strict = exact_pass(X, centers, np.zeros(3), 0.0, 100, strict=True)
    assert strict.rows.shape[0] == 100


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [128, 16])
def test_screened_exact_pass_is_bounded_by_the_float64_costs(dtype: type, k: int) -> None:
    """Where costs go through BLAS, the pass takes the product in float32 from 33 centers
    (float64 below): every fixed row still has its float64 label, objective and
    candidates' costs, its slack-matrix row is a lower bound within the screening error,
    and rows near a tie go to the band.  On a grid of points (many near-ties) with random
    potentials."""
    m, d = 20_000, 48
    rng = np.random.default_rng(5)
    X = np.round(rng.uniform(0, 1, (m, d)) * 8) / 8 + 1e-6 * rng.standard_normal((m, d))
    X = X.astype(dtype)
    centers = X[rng.choice(m, k, replace=False)].astype(np.float64) + 0.01
    sc = screened_centers(X, centers)
    assert sc.use_dot and sc.screened == (k > 32)  # BLAS; float32 products from 33 centers
    unit = 2.0**-24 if sc.screened else 2.0**-53
    mu = centers.astype(dtype).astype(np.float64)
    C = ot.dist(X.astype(np.float64), mu)
    v = rng.normal(0, 0.05, k)
    R = C - v
    order = np.sort(R, axis=1)
    gaps = order[:, 1] - order[:, 0]
    labels = np.argmin(R, axis=1)
    theta = float(np.quantile(gaps, 0.1))
    # the screening error, as the kernel bounds it, and the float64 costs' own
    mean = mu.mean(axis=0)
    z = float(np.linalg.norm(X.astype(np.float64) - mean, axis=1).max())
    norm = float(np.linalg.norm(mu - mean, axis=1).max())
    err = 2 * (d + 4) * unit * z * norm + 8 * 2.0**-53 * (z + norm) ** 2
    own = 1e-12 * float(C.max())
    res = exact_pass(X, centers, v, theta, m, width=32)
    band = res.rows
    fixed = np.setdiff1d(np.arange(m), band)
    assert np.isin(np.flatnonzero(gaps <= theta - 2 * err - own), band).all()
    assert np.all(gaps[band] <= theta + 2 * err + own)  # and no row much farther
    assert np.all(gaps[fixed] > 0.0)  # no fixed row hangs on a tie
    lab = labels[fixed]
    np.testing.assert_array_equal(res.counts, np.bincount(lab, minlength=k))
    assert res.objective == pytest.approx(C[fixed, lab].sum(), rel=1e-12)
    slack = np.full((k, k), np.inf)
    diff = C[fixed] - C[fixed, lab][:, None]
    for a in np.unique(lab):
        slack[a] = diff[lab == a].min(axis=0)
    seen = np.isfinite(slack)
    np.testing.assert_array_equal(np.isfinite(res.slack), seen)
    assert np.all(res.slack[seen] <= slack[seen] + own)  # a lower bound: still a proof
    assert np.all(res.slack[seen] >= slack[seen] - 2 * err - own)
    assert np.all(np.diag(res.slack)[np.diag(seen)] == 0.0)
    # the band rows' candidates: float64 costs, and a floor below every column left out
    columns, costs, floor = res.candidates
    np.testing.assert_allclose(costs, np.take_along_axis(C[band], columns, axis=1), rtol=1e-12)
    out = R[band].copy()
    np.put_along_axis(out, columns.astype(np.int64), np.inf, axis=1)
    assert np.all(floor <= out.min(axis=1) + own)
    # the labels pass repeats the pass's arithmetic: the same fixed labels
    np.testing.assert_array_equal(power_labels(X, centers, v)[fixed], lab)


@pytest.mark.parametrize("blocks", [1, 10])
def test_band_over_blocks_stays_within_twice_the_rows_asked_for(blocks: int) -> None:
    # every row within the threshold (inf), a band of 40 000 asked for among 400 000 rows:
    # each block takes twice its share, and its lanes share that (a lane taking twice its own
    # on top returned four times the rows asked for, beyond the band's memory budget)
    from ballot_dask.combine import combine_passes
    from ballot_dask.kernels import pass_lanes
    from ballot_dask.solvers.passes import _pass_kernel

    rng = np.random.default_rng(3)
    n, k, cap = 400_000, 8, 40_000
    X = rng.standard_normal((n, 4))
    centers = X[:k].copy()
    v = np.zeros(k)
    edges = np.linspace(0, n, blocks + 1).astype(int)
    parts = [
        _pass_kernel(X[lo:hi], centers, v, 1e300, cap, n, False, 0, 0.0, None, False, lo)
        for lo, hi in itertools.pairwise(edges)
    ]
    band = combine_passes(parts) if blocks > 1 else parts[0]
    lanes = sum(pass_lanes(hi - lo, k, 4) for lo, hi in itertools.pairwise(edges))
    # (each lane a few more, 64 and a rounding, each block 16)
    assert cap <= band.rows.shape[0] <= 2 * cap + 65 * lanes + 16 * blocks
    # the rows left out are fixed, with their summaries: every row is accounted for once
    assert band.counts.sum() + band.rows.shape[0] == n
    assert np.array_equal(np.unique(band.rows), band.rows)
    labels = power_labels(X, centers, v)
    fixed = np.ones(n, dtype=bool)
    fixed[band.rows] = False
    assert np.array_equal(band.counts, np.bincount(labels[fixed], minlength=k))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_in_memory_the_step_keeps_its_pass_labels_and_needs_no_labels_pass(dtype) -> None:
    # in memory the exact step's pass keeps every row's label: the step's labels are those
    # a labels pass gives (the same minimisers by the same arithmetic, ties and band rows
    # included), with no pass over X counted
    from ballot_dask import resolve_capacities
    from ballot_dask.blocks import RowBlocks
    from ballot_dask.solvers import SolverOptions
    from ballot_dask.solvers.exact import solve_exact

    rng = np.random.default_rng(8)
    n, k, d = 30_000, 12, 4
    X = rng.standard_normal((n, d)).astype(dtype)
    X[n // 2 :] = X[: n - n // 2]  # duplicated rows: ties between their labels
    blocks = RowBlocks(X)
    blocks.set_centers(X[rng.choice(n, k, replace=False)].astype(np.float64))
    cap = resolve_capacities(n, k)
    cold = solve_exact(blocks, cap, SolverOptions())
    step = solve_exact(blocks, cap, SolverOptions(), cold.potentials, cold.eps)  # warm
    for outcome in (cold, step):
        labeler = outcome.labeler
        assert labeler.known is not None and labeler.known.shape == (n,)
        before = blocks.passes.x
        held = blocks.labels(labeler)
        assert blocks.passes.x == before  # no pass over X
        np.testing.assert_array_equal(held, labeler(X, 0))  # what a labels pass gives
        np.testing.assert_array_equal(np.bincount(held, minlength=k), outcome.sizes)
        assert held.dtype == np.int64
