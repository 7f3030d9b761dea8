"""ballot_dask.certificate.certify against optima computed by POT and scipy's HiGHS.

``certify`` only sees the k x k slack matrix ``W[a, j] = min_{i labelled a} (C_ij - C_ia)``, the
cluster sizes and the capacities; here W is computed directly from the dense cost matrix.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from ballot_dask import Capacities, Certificate, resolve_capacities
from ballot_dask.certificate import certify_slack

TOL = 1e-9


def _problem(seed: int, n: int, k: int, d: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    centers = rng.standard_normal((k, d))
    return ot.dist(X, centers)


def _slack(C: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = C.shape[1]
    W = np.full((k, k), np.inf)
    for a in range(k):
        rows = labels == a
        if rows.any():
            W[a] = (C[rows] - C[rows, a][:, None]).min(axis=0)
    return W


def _emd_labels(C: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, float]:
    P = ot.emd(np.ones(C.shape[0]), sizes.astype(np.float64), C, numItermax=10**7)
    np.testing.assert_allclose(P, np.round(P), atol=1e-9)  # a vertex: integral
    return np.argmax(P, axis=1), float((P * C).sum())


def _lp_labels(C: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, float]:
    """HiGHS on the interval-capacity transport LP (rows == 1, lower <= columns <= upper)."""
    n, k = C.shape
    A_eq = sp.kron(sp.eye(n), np.ones((1, k)), format="csr")
    cols = sp.kron(np.ones((1, n)), sp.eye(k), format="csr")
    res = linprog(
        C.ravel(),
        A_ub=sp.vstack([cols, -cols], format="csr"),
        b_ub=np.concatenate([upper, -lower]).astype(np.float64),
        A_eq=A_eq,
        b_eq=np.ones(n),
        bounds=(0, None),
        method="highs",
    )
    assert res.status == 0, res.message
    F = res.x.reshape(n, k)
    np.testing.assert_allclose(F, np.round(F), atol=1e-7)  # a vertex: integral
    return np.argmax(F, axis=1), float(res.fun)


def _certify(C, labels, cap: Capacities):
    counts = np.bincount(labels, minlength=C.shape[1])
    return certify_slack(_slack(C, labels), counts, cap, TOL)


def _dual_value(C: np.ndarray, v: np.ndarray, cap: Capacities) -> float:
    """The exact semi-dual g(v) = sum_i min_j (C_ij - v_j) + sum_j min(lower_j v_j, upper_j v_j)."""
    return float((C - v[None, :]).min(axis=1).sum() + cap.dual_term(v))


def _objective(C: np.ndarray, labels: np.ndarray) -> float:
    return float(C[np.arange(C.shape[0]), labels].sum())


# --------------------------------------------------------------------------- optimal labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "n, sizes", [(30, [10, 10, 10]), (30, [4, 20, 6]), (40, [10, 10, 10, 10]), (24, [0, 12, 12])]
)
def test_emd_optimum_is_certified(seed: int, n: int, sizes: list[int]) -> None:
    k = len(sizes)
    C = _problem(seed, n, k)
    cap = resolve_capacities(n, k, sizes=sizes, size_min=None, size_max=None)
    labels, opt = _emd_labels(C, cap.lower)
    v, cert = _certify(C, labels, cap)
    assert isinstance(cert, Certificate)
    assert cert.optimal is True
    assert cert.violations == 0
    assert cert.tolerance == TOL
    assert 0.0 <= cert.duality_gap <= 1e-9 * opt
    assert 0.0 <= cert.max_violation <= TOL * (k + 1)
    assert v.shape == (k,) and np.all(np.isfinite(v))
    # the potentials make every label a minimiser of the reduced cost C_ij - v_j
    R = C - v[None, :]
    chosen = R[np.arange(n), labels]
    assert np.all(chosen <= R.min(axis=1) + TOL * (k + 1))
    # and close the duality gap: g(v) equals the primal optimum
    assert _dual_value(C, v, cap) == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "size_min, size_max", [(5, 15), ([0, 8, 8], [30, 12, 30]), (0, 12), (9, 40), (2, [4, 40, 40])]
)
def test_interval_optimum_is_certified_with_signed_potentials(seed, size_min, size_max) -> None:
    n, k = 30, 3
    C = _problem(10 + seed, n, k)
    cap = resolve_capacities(n, k, sizes=None, size_min=size_min, size_max=size_max)
    labels, opt = _lp_labels(C, cap.lower, cap.upper)
    assert _objective(C, labels) == pytest.approx(opt, rel=1e-9)
    counts = np.bincount(labels, minlength=k)
    v, cert = _certify(C, labels, cap)
    assert cert.optimal and cert.violations == 0
    assert cert.duality_gap <= 1e-9 * opt
    # complementary slackness of the capacity constraints: a column above its lower bound has
    # v <= 0, a column below its upper bound has v >= 0 (so v == 0 strictly inside)
    slack = TOL * (k + 1)
    assert np.all(v[counts > cap.lower] <= slack)
    assert np.all(v[counts < cap.upper] >= -slack)
    R = C - v[None, :]
    assert np.all(R[np.arange(n), labels] <= R.min(axis=1) + slack)
    assert _dual_value(C, v, cap) == pytest.approx(opt, rel=1e-9)


def test_unconstrained_nearest_center_labels_have_zero_potentials() -> None:
    n, k = 40, 4
    C = _problem(5, n, k)
    cap = resolve_capacities(n, k, sizes=None, size_min=0, size_max=n)
    labels = np.argmin(C, axis=1)
    counts = np.bincount(labels, minlength=k)
    assert np.all((counts > 0) & (counts < n))  # every column strictly inside its interval
    v, cert = _certify(C, labels, cap)
    assert cert.optimal and cert.violations == 0 and cert.duality_gap <= 1e-12
    np.testing.assert_array_equal(v, np.zeros(k))


# --------------------------------------------------------------------------- non-optimal labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_worsening_swap_is_not_certified(seed: int) -> None:
    n, k = 30, 3
    C = _problem(20 + seed, n, k)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    labels, opt = _emd_labels(C, cap.lower)
    # the swap of two points of different clusters that increases the cost the most
    best, pair = -np.inf, None
    for i in range(n):
        for j in range(n):
            a, b = labels[i], labels[j]
            if a != b:
                delta = C[i, b] + C[j, a] - C[i, a] - C[j, b]
                if delta > best:
                    best, pair = delta, (i, j)
    assert best > 1e-3
    i, j = pair
    worse = labels.copy()
    worse[i], worse[j] = labels[j], labels[i]
    primal = _objective(C, worse)
    assert primal == pytest.approx(opt + best, rel=1e-12)
    v, cert = _certify(C, worse, cap)
    assert cert.optimal is False
    assert cert.violations > 0
    assert cert.max_violation > TOL
    # the gap bounds primal - g(v) from above, and by weak duality g(v) <= opt < primal
    assert _dual_value(C, v, cap) <= opt * (1 + 1e-12)
    assert cert.duality_gap >= primal - _dual_value(C, v, cap) - 1e-9 * primal
    assert cert.duality_gap >= primal - opt - 1e-9 * primal > 0


@settings(max_examples=30, deadline=None, database=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 14), k=st.integers(2, 4))
def test_certificate_is_optimal_exactly_for_optimal_labellings(seed: int, n: int, k: int) -> None:
    """Random labellings with the prescribed sizes: certified iff their cost is the optimum."""
    k = min(k, n)
    rng = np.random.default_rng(seed)
    C = _problem(seed, n, k)
    sizes = rng.multinomial(n - k, np.ones(k) / k) + 1
    cap = resolve_capacities(n, k, sizes=sizes, size_min=None, size_max=None)
    labels_opt, opt = _emd_labels(C, cap.lower)
    for labels in (labels_opt, rng.permutation(labels_opt), rng.permutation(labels_opt)):
        primal = _objective(C, labels)
        v, cert = _certify(C, labels, cap)
        is_opt = primal <= opt * (1 + 1e-9)
        assert cert.optimal == is_opt
        assert (cert.violations == 0) == is_opt
        if is_opt:
            R = C - v[None, :]
            assert np.all(R[np.arange(n), labels] <= R.min(axis=1) + TOL * (k + 1))
        else:
            assert cert.duality_gap >= primal - opt - 1e-9 * primal


def test_infeasible_counts_are_not_optimal() -> None:
    """Nearest-center labels satisfy every pairwise condition (W >= 0) but not the sizes."""
    n, k = 30, 3
    C = _problem(7, n, k)
    labels = np.argmin(C, axis=1)
    counts = np.bincount(labels, minlength=k)
    cap = Capacities(np.full(k, 10), np.full(k, 10))
    outside = int(np.count_nonzero(counts != 10))
    assert outside >= 2
    v, cert = _certify(C, labels, cap)
    assert cert.optimal is False
    assert cert.violations >= outside
    assert cert.duality_gap == np.inf
    # every label is still a minimiser of its reduced cost: the failure is the sizes alone
    assert np.all(np.isfinite(v))


def test_balanced_optimum_is_not_optimal_without_size_constraints() -> None:
    """Under loose capacities the balanced optimum breaks the sign conditions: the potentials
    that explain its power diagram are nonzero, but a column strictly inside its interval
    must have v = 0."""
    n, k = 30, 3
    C = _problem(8, n, k)
    labels, _ = _emd_labels(C, np.full(k, 10))
    assert not np.array_equal(labels, np.argmin(C, axis=1))
    loose = Capacities(np.zeros(k, np.int64), np.full(k, n, np.int64))
    _, cert = _certify(C, labels, loose)
    assert cert.optimal is False
    assert cert.violations > 0
    unconstrained = float(C.min(axis=1).sum())
    assert cert.duality_gap >= _objective(C, labels) - unconstrained - 1e-9


def test_ties_within_round_off_are_certified() -> None:
    """Duplicated points split across two clusters: W[a, b] + W[b, a] is 0 up to round-off."""
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 0.1], [0.3, 1.0]]), 4, axis=0)
    centers = np.array([[0.1, 0.0], [0.9, 0.2], [0.2, 0.8]])
    C = ot.dist(X, centers)
    sizes = np.array([3, 5, 4])
    labels, opt = _emd_labels(C, sizes)
    v, cert = certify_slack(
        _slack(C, labels), np.bincount(labels, minlength=3), Capacities(sizes, sizes), 1e-12
    )
    assert cert.optimal and cert.violations == 0
    assert cert.duality_gap <= 1e-12 * (1 + opt)
    assert _dual_value(C, v, Capacities(sizes, sizes)) == pytest.approx(opt, rel=1e-12)


def test_empty_cluster_row_is_unconstrained() -> None:
    """An empty cluster contributes an all-inf slack row and never blocks a certificate."""
    n, k = 20, 3
    C = _problem(9, n, k)
    cap = Capacities(np.array([0, 10, 10]), np.array([0, 10, 10]))
    labels, opt = _emd_labels(C, cap.lower)
    W = _slack(C, labels)
    assert np.all(np.isinf(W[0]))
    v, cert = _certify(C, labels, cap)
    assert cert.optimal and cert.violations == 0
    assert _dual_value(C, v, cap) == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [5, 40, 300])
def test_bellman_ford_agrees_with_scipy_on_negative_cycles(seed: int, n: int) -> None:
    # dense difference-constraint graphs around the feasibility edge: some have a negative
    # cycle, some not; the early look for a cycle (every few sweeps) must never claim one
    # that scipy does not find, nor miss one
    from scipy.sparse.csgraph import NegativeCycleError, bellman_ford, shortest_path

    from ballot_dask.certificate import _bellman_ford

    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, n)
    weights = v[None, :] - v[:, None] + rng.exponential(1.0, (n, n))  # feasible: v solves it
    np.fill_diagonal(weights, np.inf)
    if seed % 2:  # one cycle made negative by a little
        cycle = rng.choice(n, size=min(n, 3 + seed), replace=False)
        heads = np.roll(cycle, -1)
        total = weights[cycle, heads].sum()
        weights[cycle[0], heads[0]] -= total + 1e-3
    dist, ok = _bellman_ford(weights)
    finite = np.where(np.isfinite(weights), weights, 0.0)
    graph = sp.csr_matrix(finite)
    graph.data[graph.data == 0.0] = 1e-300  # keep explicit zero-weight arcs
    try:
        bellman_ford(graph, indices=0)
        expected = True
    except NegativeCycleError:
        expected = False
    assert ok == expected == (seed % 2 == 0)
    if ok:  # the distances satisfy every constraint, and are the largest that do (below 0)
        with np.errstate(invalid="ignore"):
            assert np.all(dist[None, :] - dist[:, None] <= weights + 1e-9)
        paths = shortest_path(graph, method="J")
        np.testing.assert_allclose(dist, np.minimum(paths.min(axis=0), 0.0), rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("interval", [False, True])
def test_near_gives_the_largest_feasible_potentials_below_it(seed: int, interval: bool) -> None:
    # from ``near`` (a solver's own potentials, here the optimum's perturbed), the certificate
    # returns the largest solution of its difference constraints that is at most ``near``:
    # min over a of (near_a + shortest path a -> b), scipy's all-pairs distances, with the
    # capacity node pinned at 0; and it is just as optimal as without ``near``
    from scipy.sparse.csgraph import shortest_path

    n, k = 60, 5
    C = _problem(20 + seed, n, k)
    if interval:
        cap = resolve_capacities(n, k, sizes=None, size_min=8, size_max=16)
        labels, _ = _lp_labels(C, cap.lower, cap.upper)
    else:
        cap = resolve_capacities(n, k, sizes=[12] * k, size_min=None, size_max=None)
        labels, _ = _emd_labels(C, cap.lower)
    counts = np.bincount(labels, minlength=k)
    slack = _slack(C, labels)
    plain, reference = certify_slack(slack, counts, cap, TOL)
    near = plain + np.random.default_rng(seed).normal(0.0, 0.5, k)
    v, cert = certify_slack(slack, counts, cap, TOL, near=near)
    assert cert.optimal == reference.optimal is True
    assert cert.duality_gap <= 1e-9 * _objective(C, labels)
    weights = np.full((k + 1, k + 1), np.inf)
    weights[:k, :k] = slack
    weights[k, :k][counts > cap.lower] = 0.0
    weights[:k, k][counts < cap.upper] = 0.0
    np.fill_diagonal(weights, np.inf)
    arcs = np.where(weights == 0.0, 1e-300, weights)  # a zero-weight arc is kept
    paths = shortest_path(sp.csr_matrix(np.where(np.isfinite(arcs), arcs, 0.0)), method="BF")
    start = np.append(near, 0.0)
    dist = (start[:, None] + paths).min(axis=0)
    expected = dist[:k] - dist[k]
    if not interval:  # pure equality columns: defined up to a shift, centred
        expected = expected - expected.mean()
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-9)
    # feasible: every constraint holds
    with np.errstate(invalid="ignore"):
        assert np.all(v[None, :] - v[:, None] <= slack + TOL)


@pytest.mark.parametrize("k", [40, 43])  # (43: the columns left over by four chains)
def test_excess_matches_the_numpy_expression(k) -> None:
    # each cluster's largest violation over its finite constraints and the count above the
    # limit, in one pass: the numbers of the expression it replaced (inf and NaN entries,
    # the diagonal left out)
    from ballot_dask.certificate import _excess, _largest_finite

    rng = np.random.default_rng(3)
    slack = rng.normal(0.0, 1.0, (k, k))
    slack[rng.random((k, k)) < 0.25] = np.inf
    slack[2, 5] = -np.inf
    slack[4, 7] = np.nan
    v = rng.normal(0.0, 1.0, k)
    limit = 0.3
    with np.errstate(invalid="ignore"):
        pair = v[None, :] - v[:, None] - slack
    pair[~np.isfinite(pair)] = -np.inf
    np.fill_diagonal(pair, -np.inf)
    row_excess, over = _excess(slack, v, limit)
    np.testing.assert_array_equal(row_excess, np.maximum(pair.max(axis=1), 0.0))
    assert over == np.count_nonzero(pair > limit) > 0
    finite = slack[np.isfinite(slack)]
    assert _largest_finite(slack) == np.abs(finite).max()
    slack[k - 1, k - 1] = -1e3  # the largest in the last, left-over column
    assert _largest_finite(slack) == 1e3
