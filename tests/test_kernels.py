"""Per-block kernels (costs, labels, the entropic plan, assignments, rounding) against plain
numpy / scipy / POT computations; the exact pass's own tests are in :mod:`test_exact_pass`.

Every kernel is also checked for *chunk additivity*: splitting a block in two and reducing the
two summaries gives the summary of the whole block (the property the Dask engine relies on).
Block sizes above 4096 rows exercise the multi-lane accumulation of the compiled loops.
"""

from __future__ import annotations

import numba
import numpy as np
import ot
import pytest
from kernel_cases import DTYPES, RTOL, random_potentials, random_problem
from scipy.special import log_softmax, logsumexp, softmax

from ballot_dask.combine import combine_passes
from ballot_dask.costs import cost_block, prepared_centers
from ballot_dask.entropic_pass import (
    _DENSE_HESSIAN_K,
    _HESSIAN_FLOOR,
    _MOMENT_FLOOR,
    _SUPPORT_SHARE,
    _exp_parts,
)
from ballot_dask.exact_pass import exact_pass
from ballot_dask.kernels import (
    assignment_terms,
    lane_blocks,
    lane_counts,
    lane_scalars,
    lane_zeros,
    reduced_cost_labels,
)
from ballot_dask.plan_kernels import (
    entropic_moment_terms,
    entropic_terms,
    plan_moments,
    rounded_plan_terms,
    weighted_plan_costs,
)


def _sqdist64(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    diff = X.astype(np.float64)[:, None, :] - centers.astype(np.float64)[None, :, :]
    return (diff * diff).sum(axis=2)


# --------------------------------------------------------------------------- cost_block


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, d", [(1, 1, 1), (37, 3, 2), (500, 10, 5), (9000, 4, 3)])
def test_cost_block_matches_pot_dist(dtype: type, m: int, k: int, d: int) -> None:
    X, centers = random_problem(m + k + d, m, k, d, dtype)
    C = cost_block(X, centers)
    assert C.dtype == np.float64  # float64 costs whatever X's dtype (a float64 certificate)
    assert C.shape == (m, k)
    # the centers are rounded to the dtype of X, then the distances computed in float64
    ref = ot.dist(X.astype(np.float64), centers.astype(dtype).astype(np.float64))
    np.testing.assert_allclose(C, ref, rtol=1e-12, atol=1e-12 * ref.max())
    # a sum of squared differences, never negative
    assert np.all(C >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, d", [(3, 5), (9, 7), (16, 3), (17, 3), (40, 2)])
def test_cost_block_sums_the_features_in_order(dtype: type, k: int, d: int) -> None:
    """Both loop orders of the direct costs (features outermost up to 16 centers, rows
    outermost beyond; below 64 multiply-adds a row, or with fewer than four features) add
    ``(x_t - mu_t)^2`` over the features in their order, in float64: bit for bit the same
    numbers as that sum written out, on slabs and row groups with a remainder."""
    assert not prepared_centers(np.zeros((1, d)), np.zeros((k, d)))[-1]  # the direct loop
    m = 4096 + 130
    X, centers = random_problem(k + d, m, k, d, dtype)
    C = cost_block(X, centers)
    x = X.astype(np.float64)
    mu = centers.astype(dtype).astype(np.float64)
    ref = np.zeros((m, k))
    for t in range(d):
        ref += (x[:, t : t + 1] - mu[None, :, t]) ** 2
    np.testing.assert_array_equal(C, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cost_block_has_no_cancellation(dtype: type) -> None:
    """Far from the origin, ``|x|^2 - 2 x.mu + |mu|^2`` loses every digit; differences do not."""
    rng = np.random.default_rng(3)
    offset = 1e4 if dtype == np.float32 else 1e7
    X = (offset + rng.random((50, 3))).astype(dtype)
    centers = X[[4, 17, 30]].astype(np.float64)
    C = cost_block(X, centers)
    # a center that is a data point is at distance exactly 0 from it
    assert C[4, 0] == 0.0 and C[17, 1] == 0.0 and C[30, 2] == 0.0
    ref = _sqdist64(X, centers.astype(dtype))
    np.testing.assert_allclose(C, ref, rtol=RTOL[dtype], atol=0)


# --------------------------------------------------------------------------- reduced costs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 7])
@pytest.mark.parametrize("m", [1, 300, 9000])
def test_reduced_cost_labels_match_argmin_and_partition(dtype: type, k: int, m: int) -> None:
    X, centers = random_problem(k * m, m, k, 2, dtype)
    C = cost_block(X, centers)
    v = random_potentials(m, k)
    labels, gaps = reduced_cost_labels(C, v)
    R = C.astype(np.float64) - v[None, :]
    np.testing.assert_array_equal(labels, np.argmin(R, axis=1))
    assert labels.dtype.kind == "i"
    if k == 1:
        assert np.all(np.isinf(gaps))
    else:
        two = np.partition(R, 1, axis=1)[:, :2]
        np.testing.assert_array_equal(gaps, two[:, 1] - two[:, 0])
        assert np.all(gaps >= 0)


def test_reduced_cost_labels_ties_pick_first_column_with_zero_gap() -> None:
    C = np.array([[1.0, 1.0, 2.0], [3.0, 0.5, 0.5], [2.0, 2.0, 2.0], [0.0, 4.0, 1.0]])
    labels, gaps = reduced_cost_labels(C, np.zeros(3))
    np.testing.assert_array_equal(labels, [0, 1, 0, 0])
    np.testing.assert_array_equal(gaps, [0.0, 0.0, 0.0, 1.0])
    # potentials shift the diagram: v = (0, 0, 1.5) moves row 0 to column 2
    labels, gaps = reduced_cost_labels(C, np.array([0.0, 0.0, 1.5]))
    np.testing.assert_array_equal(labels, [2, 2, 2, 2])
    np.testing.assert_array_equal(gaps, [0.5, 1.5, 1.5, 0.5])


@pytest.mark.parametrize("k", [63, 64, 65, 130, 1027])
def test_top_two_in_chains_matches_one_scan_with_ties(k: int) -> None:
    """From 64 columns the top two are scanned in four chains and merged: the same labels
    (lowest column on ties) and gaps as one scan, on rows full of ties (few distinct costs,
    the least sometimes in several chains, sometimes only in the last, odd columns)."""
    rng = np.random.default_rng(k)
    C = rng.integers(0, 6, (4000, k)).astype(np.float64)
    C[:500] = 3.0  # every column ties
    C[500:1000, -1] = -1.0  # the least in the last column (the tail of the first chain)
    C[1000:1500, 1::4] = -2.0  # the least in one chain only, repeated along it
    v = np.zeros(k)
    labels, gaps = reduced_cost_labels(C, v)
    np.testing.assert_array_equal(labels, np.argmin(C, axis=1))
    two = np.partition(C, 1, axis=1)[:, :2]
    np.testing.assert_array_equal(gaps, two[:, 1] - two[:, 0])
    assert np.all(gaps[:500] == 0.0) and np.all(labels[:500] == 0)
    np.testing.assert_array_equal(labels[500:1000], k - 1)
    np.testing.assert_array_equal(labels[1000:1500], 1)


# --------------------------------------------------------------------------- entropic terms


def _entropic_reference(C: np.ndarray, v: np.ndarray, eps: float):
    Z = (v[None, :] - C.astype(np.float64)) / eps
    lse = logsumexp(Z, axis=1)
    logP = log_softmax(Z, axis=1)
    P = softmax(Z, axis=1)
    # beyond _DENSE_HESSIAN_K clusters the Hessian alone leaves out the entries at or below
    # the floor (their products are tiny) of a row whose support (the entries above it)
    # holds at most k / _SUPPORT_SHARE columns; every entry of the other rows counts
    k = C.shape[1]
    floor = _HESSIAN_FLOOR if k > _DENSE_HESSIAN_K else 0.0
    narrow = (P > floor).sum(axis=1) <= k // _SUPPORT_SHARE
    Q = np.where((P > floor) | ~narrow[:, None], P, 0.0)
    return -eps * lse.sum(), logsumexp(logP, axis=0), Q.T @ Q, P


@pytest.mark.parametrize("k", [48, 200])
def test_entropic_hessian_mixes_narrow_and_wide_rows(k: int) -> None:
    # one block, rows of both kinds in every slab: one-hot rows (a column far below the
    # others) take their support, rows of equal costs the slab products; the Hessian is the
    # reference's, which keeps every entry of a wide row
    rng = np.random.default_rng(3)
    m = 3000
    C = rng.uniform(0.0, 1e-3, size=(m, k))
    narrow = rng.random(m) < 0.5
    C[narrow] += 50.0
    C[narrow, rng.integers(0, k, int(narrow.sum()))] -= 50.0
    v = np.zeros(k)
    _, _, ptp = entropic_terms(C, v, 1.0, hessian=True)
    _, _, ref_ptp, P = _entropic_reference(C, v, 1.0)
    assert (P > _HESSIAN_FLOOR).sum(axis=1)[~narrow].min() == k  # wide rows: every column
    np.testing.assert_allclose(ptp, ref_ptp, rtol=1e-10, atol=1e-12 * m)
    # the narrow rows' left-out entries make the difference with the full P^T P
    assert np.abs(ptp - P.T @ P).max() > 0


@pytest.mark.parametrize("k", [48, 200])
def test_entropic_moments_mix_narrow_and_wide_rows(k: int) -> None:
    # with the moments, beyond _DENSE_HESSIAN_K clusters a narrow row (its support above
    # _MOMENT_FLOOR: a column far below the others and one 14 above it, whose entry, about
    # 8e-7, the Hessian alone would leave out) adds its support's moments and outer
    # product, a wide row (equal costs) goes to the slab; every sum is the dense plan's
    rng = np.random.default_rng(5)
    m, d = 3000, 6
    X = rng.standard_normal((m, d))
    C = rng.uniform(0.0, 1e-3, size=(m, k))
    narrow = rng.random(m) < 0.5
    rows = np.flatnonzero(narrow)
    C[narrow] += 80.0
    C[rows, rng.integers(0, k, rows.size)] -= 80.0
    C[rows, rng.integers(0, k, rows.size)] -= 66.0  # (or the same column again: one entry)
    v = np.zeros(k)
    value, logcol, ptp, (px, own, column_costs, coords) = entropic_moment_terms(X, C, v, 1.0)
    ref_value, ref_logcol, _, P = _entropic_reference(C, v, 1.0)
    support = (P > _MOMENT_FLOOR).sum(axis=1)
    assert support[narrow].max() <= 2 and support[~narrow].min() == k
    assert (P[narrow] > _HESSIAN_FLOOR).sum(axis=1).max() == 1  # the Hessian's floor: 1 entry
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(logcol, ref_logcol, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ptp, P.T @ P, rtol=1e-11, atol=1e-13 * m)
    np.testing.assert_allclose(px, P.T @ X, rtol=1e-11, atol=1e-13 * np.abs(X).max() * m)
    own_ref = (P * C).sum(axis=0)
    np.testing.assert_allclose(own, own_ref, rtol=1e-11, atol=1e-14 * np.abs(C).max() * m)
    np.testing.assert_allclose(column_costs, C.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(coords, X.sum(axis=0), rtol=1e-12, atol=1e-12 * m)
    # the entries between the two floors count: without them px would miss by far more
    # than its tolerance above
    second = np.where(narrow[:, None] & (P < _HESSIAN_FLOOR) & (P > _MOMENT_FLOOR), P, 0.0)
    assert np.abs(second.T @ X).max() > 1e3 * 1e-13 * np.abs(X).max() * m
    # the lanes, not the threads, decide the order of every sum
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        again = entropic_moment_terms(X, C, v, 1.0)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(again[2], ptp)
    for got, want in zip(again[3], (px, own, column_costs, coords), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [10.0, 1.0, 1e-2])
@pytest.mark.parametrize("m, k", [(1, 1), (40, 3), (700, 8), (9000, 5), (500, 48), (600, 80)])
def test_entropic_terms_match_logsumexp_softmax(dtype: type, eps: float, m: int, k: int) -> None:
    X, centers = random_problem(m * k, m, k, 3, dtype)
    C = cost_block(X, centers)
    v = random_potentials(m, k)
    value, logcol, ptp = entropic_terms(C, v, eps, hessian=True)
    ref_value, ref_logcol, ref_ptp, P = _entropic_reference(C, v, eps)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)  # the reference plan has unit rows
    assert value == pytest.approx(ref_value, rel=1e-11, abs=1e-11 * eps * m)
    np.testing.assert_allclose(logcol, ref_logcol, rtol=1e-10, atol=1e-10)
    assert ptp.shape == (k, k)
    np.testing.assert_allclose(ptp, ref_ptp, rtol=1e-10, atol=1e-12 * m)
    # the Hessian of the semi-dual: -(1/eps)(diag(colsum) - P^T P) is a negative semidefinite
    # Laplacian whose rows sum to 0, up to the entries left out below the floor (diagonally
    # dominant, so still semidefinite)
    hess = -(np.diag(np.exp(logcol)) - ptp) / eps
    floor = _HESSIAN_FLOOR if k > _DENSE_HESSIAN_K else 0.0
    np.testing.assert_allclose(hess.sum(axis=1), 0.0, atol=(1e-9 + k * floor) * m / eps)
    assert np.linalg.eigvalsh(hess).max() <= 1e-9 * m / eps
    # without the Hessian: same value and column sums
    value2, logcol2, none = entropic_terms(C, v, eps, hessian=False)
    assert none is None
    assert value2 == value
    np.testing.assert_array_equal(logcol2, logcol)
    # column sums of a plan with unit rows add up to the number of rows
    assert np.exp(logcol).sum() == pytest.approx(m, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1e-4, 1e-8, 1e-12])
def test_entropic_terms_tiny_eps_no_nan_and_log_domain_columns(dtype: type, eps: float) -> None:
    """For tiny eps almost every plan entry underflows; the column log-sums must stay exact."""
    m, k = 600, 6
    X, centers = random_problem(11, m, k, 2, dtype)
    C = cost_block(X, centers)
    v = random_potentials(3, k)
    value, logcol, ptp = entropic_terms(C, v, eps, hessian=True)
    assert np.isfinite(value)
    assert np.all(np.isfinite(logcol))  # every column has (tiny) mass, none is -inf
    assert np.all(np.isfinite(ptp))
    ref_value, ref_logcol, ref_ptp, _ = _entropic_reference(C, v, eps)
    assert value == pytest.approx(ref_value, rel=1e-9)
    np.testing.assert_allclose(logcol, ref_logcol, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ptp, ref_ptp, rtol=1e-9, atol=1e-9)
    # eps -> 0: the value tends to the exact semi-dual sum_i min_j (C_ij - v_j)
    exact = (C.astype(np.float64) - v).min(axis=1).sum()
    assert value <= exact + 1e-9 * abs(exact)
    assert value >= exact - eps * m * np.log(k) - 1e-9 * abs(exact)


def test_entropic_terms_column_that_never_wins_keeps_its_mass() -> None:
    """A column far from every row: each entry ~exp(-1e4), the log column sum is finite."""
    C = np.column_stack([np.zeros(50), np.full(50, 100.0)])
    eps = 1e-2
    _, logcol, _ = entropic_terms(C, np.zeros(2), eps)
    np.testing.assert_allclose(logcol, [np.log(50), np.log(50) - 100.0 / eps], rtol=1e-12)


def test_entropic_products_leave_out_what_would_be_subnormal() -> None:
    """Exponents from 0 to -700: the column sums keep every entry (those that underflow in
    the log domain, a column whose direct sum is settled without them), the Hessian and the
    moments leave out the entries below 2^-511, whose products would be subnormal."""
    rng = np.random.default_rng(7)
    m, k, d = 3000, 8, 3
    C = rng.uniform(0.0, 1.0, size=(m, k))
    C[:, 7] += 2.0  # a column whose every entry underflows: its mass in the log domain only
    X = rng.standard_normal((m, d))
    v, eps = np.zeros(k), 1.0 / 700.0
    value, logcol, ptp, (px, own, _, _) = entropic_moment_terms(X, C, v, eps)
    ref_value, ref_logcol, _, P = _entropic_reference(C, v, eps)
    tiny = np.finfo(np.float64).tiny
    products = P[:, :, None] * P[:, None, :]
    assert np.any((products != 0) & (products < tiny))  # some rows' would be subnormal
    assert not np.any((ptp != 0) & (np.abs(ptp) < tiny))
    assert np.exp(ref_logcol[7]) < 1e-300  # the far column's mass: all of it underflowed
    np.testing.assert_allclose(logcol, ref_logcol, rtol=1e-12)
    assert value == pytest.approx(ref_value, rel=1e-12)
    kept = np.where(P >= 2.0**-511, P, 0.0)
    assert np.array_equal(kept == 0, P < 2.0**-511) and np.any((P > 0) & (kept == 0))
    np.testing.assert_allclose(ptp, kept.T @ kept, rtol=1e-12, atol=1e-14 * m)
    np.testing.assert_allclose(ptp, P.T @ P, rtol=1e-12, atol=m * 2.0**-511)
    np.testing.assert_allclose(px, P.T @ X, rtol=1e-12, atol=1e-14 * m)
    np.testing.assert_allclose(own, (P * C).sum(axis=0), rtol=1e-12, atol=1e-14 * m)


def test_exp_parts_are_within_an_ulp_of_libm() -> None:
    """The plan's branch-free exponential (a Cody-Waite reduction and a degree-13 Taylor
    polynomial) against libm's over its whole range, with the octave edges and the ends."""

    @numba.njit
    def through(z):  # pragma: no cover - compiled
        out = np.empty_like(z)
        bits = np.empty(1, dtype=np.int64)
        for i in range(z.shape[0]):
            q, bits[0] = _exp_parts(z[i])
            out[i] = q * bits.view(np.float64)[0]
        return out

    rng = np.random.default_rng(0)
    edges = -np.log(2.0) * (np.arange(1022) + 0.5)
    z = np.concatenate(
        [
            -rng.random(200_000) * 708.0,
            -rng.random(100_000) * 2.0,
            edges,
            np.nextafter(edges, 0.0),
            np.nextafter(edges, -np.inf),
            [0.0, -0.0, -1e-300, -708.0, -707.99],
        ]
    )
    z = z[z >= -708.0]
    got, ref = through(z), np.exp(z)
    assert np.all(np.abs(got - ref) <= np.spacing(ref))
    assert through(np.array([-750.0]))[0] == through(np.array([-708.0]))[0]  # taken as -708


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, d", [(1, 1, 2), (700, 3, 5), (40_000, 16, 16), (3_000, 80, 4)])
def test_entropic_moment_terms_match_the_dense_plan(dtype: type, m: int, k: int, d: int) -> None:
    """One sweep's value, column sums, Hessian and plan moments (slab products through BLAS,
    slabs and lanes spanning the block) against the plan in NumPy, every entry counted; the
    same numbers on one thread as on two."""
    X, centers = random_problem(m + k, m, k, d, dtype)
    C = cost_block(X, centers)
    v = random_potentials(k, k)
    eps = 0.3 * float(np.median(C))
    value, logcol, ptp, (px, own, column_costs, coords) = entropic_moment_terms(X, C, v, eps)
    ref_value, ref_logcol, _, P = _entropic_reference(C, v, eps)
    scale = np.abs(C).max() * m
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12 * eps * m)
    np.testing.assert_allclose(logcol, ref_logcol, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ptp, P.T @ P, rtol=1e-11, atol=1e-13 * m)
    x64 = X.astype(np.float64)
    np.testing.assert_allclose(px, P.T @ x64, rtol=1e-11, atol=1e-13 * np.abs(x64).max() * m)
    np.testing.assert_allclose(own, (P * C).sum(axis=0), rtol=1e-11, atol=1e-14 * scale)
    np.testing.assert_allclose(column_costs, C.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(coords, x64.sum(axis=0), rtol=1e-12, atol=1e-12 * m)
    # the plan's cost at every center, weighted by column, from the moments alone
    w, mu = np.random.default_rng(m).uniform(0.0, 1.0, size=k), centers.astype(dtype)
    got = weighted_plan_costs(px, own, np.exp(logcol), mu, w)
    np.testing.assert_allclose(got, w @ (P.T @ C), rtol=1e-11, atol=1e-14 * scale)
    # the moments agree with their slab-by-slab NumPy twin (the CSR rows' path)
    for got, want in zip((px, own, column_costs, coords), plan_moments(X, C, v, eps), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13 * scale)
    # the lanes, not the threads, decide the order of every sum
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        again = entropic_moment_terms(X, C, v, eps)
    finally:
        numba.set_num_threads(previous)
    assert again[0] == value
    np.testing.assert_array_equal(again[1], logcol)
    np.testing.assert_array_equal(again[2], ptp)
    for got, want in zip(again[3], (px, own, column_costs, coords), strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- assignment terms


def _assignment_reference(X, C, labels, k):
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels, X.astype(np.float64))
    slack = np.full((k, k), np.inf)
    for a in range(k):
        rows = labels == a
        if rows.any():
            # the difference is formed in the cost dtype, like the kernel does
            slack[a] = (C[rows] - C[rows, a][:, None]).min(axis=0)
    objective = C[np.arange(len(labels)), labels].astype(np.float64).sum()
    return counts, sums, slack, objective


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, d", [(1, 1, 1), (60, 4, 2), (9000, 6, 3)])
def test_assignment_terms_match_numpy(dtype: type, m: int, k: int, d: int) -> None:
    X, centers = random_problem(m + 7 * k, m, k, d, dtype)
    C = cost_block(X, centers)
    rng = np.random.default_rng(m)
    # leave the last cluster empty when k > 1: its slack row is inf, its count and sums 0
    labels = rng.integers(0, max(k - 1, 1), size=m)
    counts, sums, slack, objective = assignment_terms(X, C, labels)
    ref = _assignment_reference(X, C, labels, k)
    np.testing.assert_array_equal(counts, ref[0])
    assert counts.sum() == m
    np.testing.assert_allclose(sums, ref[1], rtol=1e-12, atol=1e-12 * m)
    np.testing.assert_array_equal(slack, ref[2])
    assert objective == pytest.approx(ref[3], rel=1e-12)
    if k > 1:
        assert counts[-1] == 0 and np.all(sums[-1] == 0) and np.all(np.isinf(slack[-1]))
    # the diagonal of the slack matrix is 0 for a non-empty cluster
    nonempty = counts > 0
    np.testing.assert_array_equal(np.diag(slack)[nonempty], 0.0)


def test_assignment_slack_is_nonnegative_exactly_for_nearest_center_labels() -> None:
    X, centers = random_problem(5, 400, 5, 2, np.float64)
    C = cost_block(X, centers)
    nearest = np.argmin(C, axis=1)
    _, _, slack, _ = assignment_terms(X, C, nearest)
    finite = np.isfinite(slack)
    assert np.all(slack[finite] >= 0)
    # any other labelling of a point puts a negative entry in its cluster's row
    other = nearest.copy()
    other[0] = (nearest[0] + 1) % 5
    _, _, slack, _ = assignment_terms(X, C, other)
    assert slack[other[0], nearest[0]] < 0


# --------------------------------------------------------------------------- rounding


def _rounding_inputs(C: np.ndarray, v: np.ndarray, eps: float, target: np.ndarray):
    """Column scaling and deficit of Altschuler-Weed-Rigollet Alg. 2 (as the solver forms
    them), and the rounded plan G computed densely in numpy."""
    P = softmax((v[None, :] - C.astype(np.float64)) / eps, axis=1)
    col = P.sum(axis=0)
    scale = np.minimum(target / col, 1.0)
    missing = target - col * scale
    deficit = missing / missing.sum()
    G = P * scale[None, :]
    G += (1.0 - G.sum(axis=1))[:, None] * deficit[None, :]
    return scale, deficit, G


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1.0, 0.05])
@pytest.mark.parametrize("m, k", [(12, 3), (90, 5)])
def test_rounded_plan_terms_match_dense_alg2(dtype: type, eps: float, m: int, k: int) -> None:
    Xc, centers = random_problem(m * k, m, k, 2, dtype)
    C = cost_block(Xc, centers)
    v = 0.3 * random_potentials(m, k)
    target = np.full(k, m / k)
    scale, deficit, G = _rounding_inputs(C, v, eps, target)
    # with X = identity the centroid numerators sum_i G_ij x_i are G itself (transposed)
    X = np.eye(m, dtype=dtype)
    labels, mass, sums, cost, hard, counts = rounded_plan_terms(X, C, v, eps, scale, deficit)
    G_kernel = sums.T
    np.testing.assert_allclose(G_kernel, G, rtol=1e-10, atol=1e-13)
    assert np.all(G_kernel >= 0)
    # the rounded plan lies on the transport polytope: unit rows, columns equal to the target
    np.testing.assert_allclose(G_kernel.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mass, target, rtol=1e-12)
    np.testing.assert_allclose(G_kernel.sum(axis=0), target, rtol=1e-12)
    np.testing.assert_array_equal(labels, np.argmax(G, axis=1))
    C64 = C.astype(np.float64)
    assert cost == pytest.approx((G * C64).sum(), rel=1e-12)
    assert hard == pytest.approx(C64[np.arange(m), labels].sum(), rel=1e-12)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=k))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rounded_plan_terms_unequal_target_many_rows(dtype: type) -> None:
    m, k, eps = 9000, 4, 0.2
    X, centers = random_problem(2, m, k, 3, dtype)
    C = cost_block(X, centers)
    v = random_potentials(2, k)
    target = np.array([1000.0, 2000.0, 2500.0, 3500.0])
    scale, deficit, G = _rounding_inputs(C, v, eps, target)
    labels, mass, sums, cost, hard, counts = rounded_plan_terms(X, C, v, eps, scale, deficit)
    np.testing.assert_allclose(mass, target, rtol=1e-11)
    np.testing.assert_allclose(sums, G.T @ X.astype(np.float64), rtol=1e-10, atol=1e-9)
    assert cost == pytest.approx((G * C.astype(np.float64)).sum(), rel=1e-11)
    np.testing.assert_array_equal(labels, np.argmax(G, axis=1))
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=k))
    assert hard == pytest.approx(C.astype(np.float64)[np.arange(m), labels].sum(), rel=1e-11)


@pytest.mark.parametrize("eps", [1e-6, 1e-10])
def test_rounded_plan_terms_tiny_eps_is_finite(eps: float) -> None:
    m, k = 200, 5
    X, centers = random_problem(8, m, k, 2, np.float64)
    C = cost_block(X, centers)
    v = random_potentials(8, k)
    target = np.full(k, m / k)
    scale, deficit, _ = _rounding_inputs(C, v, eps, target)
    assert np.all(np.isfinite(scale)) and np.all(np.isfinite(deficit))
    labels, mass, sums, cost, hard, counts = rounded_plan_terms(X, C, v, eps, scale, deficit)
    assert np.all(np.isfinite(mass)) and np.all(np.isfinite(sums))
    assert np.isfinite(cost) and np.isfinite(hard)
    np.testing.assert_allclose(mass, target, rtol=1e-10)
    assert counts.sum() == m and labels.min() >= 0 and labels.max() < k


# --------------------------------------------------------------------------- chunk additivity


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("split", [1, 6001])
def test_split_block_gives_the_same_summaries(dtype: type, split: int) -> None:
    m, k, d = 9000, 5, 3
    X, centers = random_problem(21, m, k, d, dtype)
    C = cost_block(X, centers)
    halves = [(X[:split], C[:split], 0), (X[split:], C[split:], split)]
    np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), C)
    v = random_potentials(21, k)
    eps = 0.3

    # entropic terms: values add, column log-sums combine by logaddexp, Hessians add
    whole = entropic_terms(C, v, eps, hessian=True)
    parts = [entropic_terms(c, v, eps, hessian=True) for _, c, _ in halves]
    assert parts[0][0] + parts[1][0] == pytest.approx(whole[0], rel=1e-12)
    np.testing.assert_allclose(np.logaddexp(parts[0][1], parts[1][1]), whole[1], rtol=1e-12)
    np.testing.assert_allclose(parts[0][2] + parts[1][2], whole[2], rtol=1e-12)

    # reduced-cost labels are row-local
    whole_l, whole_g = reduced_cost_labels(C, v)
    part_lg = [reduced_cost_labels(c, v) for _, c, _ in halves]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in part_lg]), whole_l)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in part_lg]), whole_g)

    # assignment terms: counts and sums add, slack takes the minimum
    whole = assignment_terms(X, C, whole_l)
    parts = [assignment_terms(x, c, whole_l[o : o + len(c)]) for x, c, o in halves]
    np.testing.assert_array_equal(parts[0][0] + parts[1][0], whole[0])
    np.testing.assert_allclose(parts[0][1] + parts[1][1], whole[1], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(np.minimum(parts[0][2], parts[1][2]), whole[2])
    assert parts[0][3] + parts[1][3] == pytest.approx(whole[3], rel=1e-12)

    # rounding: row-local labels, masses and sums add
    scale, deficit, _ = _rounding_inputs(C, v, eps, np.full(k, m / k))
    whole = rounded_plan_terms(X, C, v, eps, scale, deficit)
    parts = [rounded_plan_terms(x, c, v, eps, scale, deficit) for x, c, _ in halves]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_allclose(parts[0][1] + parts[1][1], whole[1], rtol=1e-12)
    np.testing.assert_allclose(parts[0][2] + parts[1][2], whole[2], rtol=1e-11, atol=1e-9)
    assert parts[0][3] + parts[1][3] == pytest.approx(whole[3], rel=1e-12)
    assert parts[0][4] + parts[1][4] == pytest.approx(whole[4], rel=1e-12)
    np.testing.assert_array_equal(parts[0][5] + parts[1][5], whole[5])

    # the exact pass: fixed summaries add (slack: minimum), band rows concatenate, the
    # histogram adds; the band is the same rows for any chunking (a threshold on the gap)
    theta = float(np.quantile(whole_g, 0.1))
    whole = exact_pass(X, centers, v, theta, m)
    parts = [exact_pass(x, centers, v, theta, m, o) for x, _, o in halves]
    combined = combine_passes(parts)
    np.testing.assert_array_equal(combined.rows, whole.rows)
    np.testing.assert_array_equal(combined.counts, whole.counts)
    np.testing.assert_array_equal(combined.slack, whole.slack)
    np.testing.assert_array_equal(combined.hist, whole.hist)
    np.testing.assert_allclose(combined.sums, whole.sums, rtol=1e-12, atol=1e-9)
    assert combined.objective == pytest.approx(whole.objective, rel=1e-12)


@pytest.mark.parametrize(("n_lanes", "k", "d"), [(3, 1, 1), (4, 5, 3), (2, 16, 16), (5, 2, 9)])
def test_lane_accumulators_are_a_cache_line_apart(n_lanes: int, k: int, d: int) -> None:
    """Neighbouring lanes run on different threads: between one lane's numbers and the next
    lane's there is a 64-byte line or more, so that no line holds both (the kernels use the
    first ``k`` columns; a row stays contiguous, so that its loops vectorise)."""
    for a in (lane_zeros(n_lanes, k), lane_counts(n_lanes, k)):
        assert a.flags.c_contiguous and a.shape[0] == n_lanes and not a.any()
        assert a.strides[0] - k * a.itemsize >= 64
    assert lane_counts(n_lanes, k).dtype == np.int64
    b = lane_blocks(n_lanes, k, d)
    assert b.flags.c_contiguous and b.shape[0] == n_lanes and b.shape[2] == d and not b.any()
    assert b.shape[1] >= k and b.strides[0] - k * d * 8 >= 64
    s = lane_scalars(n_lanes)
    assert s.shape == (n_lanes,) and s.strides[0] >= 64 and not s.any()
