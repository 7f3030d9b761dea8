"""balanced_assign against real reference solvers.

References: POT's network simplex ``ot.emd`` for equality capacities and scipy's HiGHS
(``linprog``) on the dense transport LP for interval capacities (n not divisible by k,
size_min / size_max), both on ``C = ot.dist(X, centers)`` (squared Euclidean).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import ot
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from references import (
    check_exact,
    emd_optimum,
    lp_matrices,
    lp_optimum,
    make_centers,
    make_data,
    reference_cost,
    reference_optimum,
)
from scipy.optimize import linprog
from sklearn.datasets import make_blobs

from ballot_dask import Capacities, balanced_assign, resolve_capacities

# --------------------------------------------------------------------------- exact solver


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("k", [2, 3, 7, 10])
@pytest.mark.parametrize("n", [7, 50, 300, 2000])
@pytest.mark.parametrize("kind", ["blobs", "uniform"])
def test_exact_matches_reference(kind: str, n: int, k: int, d: int) -> None:
    if k > n:
        pytest.skip("k > n is an error (tested separately)")
    seed = 1000 * n + 10 * k + d + (0 if kind == "blobs" else 7)
    X = make_data(kind, n, d, seed)
    centers = make_centers(X, k, seed)
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    assert cap.is_equality == (n % k == 0)
    opt = reference_optimum(C, cap)  # ot.emd when k | n, else HiGHS with floor/ceil bounds
    res = balanced_assign(X, centers)
    assert res.method == "exact"
    check_exact(res, X, centers, cap, opt, C=C)
    emd = balanced_assign(X, centers, method="emd")
    assert emd.method == "emd"
    check_exact(emd, X, centers, cap, opt, C=C)


@pytest.mark.parametrize(
    "sizes",
    [
        [0.05, 0.15, 0.2, 0.25, 0.35],
        [0.0, 0.3, 0.0, 0.3, 0.4],  # two clusters must stay empty
        [0.8, 0.05, 0.05, 0.05, 0.05],
        [0.2, 0.2, 0.2, 0.2, 0.2],
    ],
)
@pytest.mark.parametrize("n", [300, 5000])
def test_exact_explicit_sizes(n: int, sizes: list[float]) -> None:
    k = len(sizes)
    X = make_data("gaussian", n, 2, n + k)
    centers = make_centers(X, k, n)
    exact = np.floor(np.asarray(sizes) * n).astype(np.int64)
    exact[-1] += n - exact.sum()
    C = reference_cost(X, centers)
    opt, _ = emd_optimum(C, exact)
    cap = Capacities(exact, exact)
    for method in ("exact", "emd"):
        res = balanced_assign(X, centers, sizes=exact, method=method)
        check_exact(res, X, centers, cap, opt, C=C)
        np.testing.assert_array_equal(res.sizes, exact)
    # sizes given as a list of floats holding whole numbers are the same request
    res = balanced_assign(X, centers, sizes=[float(s) for s in exact])
    np.testing.assert_array_equal(res.sizes, exact)


@pytest.mark.parametrize(
    "size_min, size_max",
    [
        (0.15, 0.3),
        ([0.1, 0.2, 0.0, 0.3], 1.0),
        (None, 0.26),
        (0.24, None),
        ([0.0, 0.0, 0.25, 0.25], [0.1, 1.0, 0.3, 0.3]),
        (0.25, 0.25),  # a degenerate interval: equal sizes
        (None, [0.0, 0.5, 0.5, 0.5]),  # the first cluster must stay empty
    ],
)
@pytest.mark.parametrize("n", [300, 3000])
def test_exact_size_ranges(n: int, size_min, size_max) -> None:
    k = 4

    def count(frac):
        if frac is None:
            return None
        return np.round(np.broadcast_to(np.asarray(frac, dtype=float), (k,)) * n).astype(int)

    lo, hi = count(size_min), count(size_max)
    X = make_data("blobs", n, 3, n + 1)
    centers = make_centers(X, k, n + 1)
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, k, sizes=None, size_min=lo, size_max=hi)
    opt, _ = lp_optimum(C, cap.lower, cap.upper)
    for method in ("exact", "emd"):
        res = balanced_assign(X, centers, size_min=lo, size_max=hi, method=method)
        check_exact(res, X, centers, cap, opt, C=C)
    # scalar bounds broadcast to every cluster
    if lo is not None and np.all(lo == lo[0]) and (hi is None or np.all(hi == hi[0])):
        res = balanced_assign(
            X, centers, size_min=int(lo[0]), size_max=None if hi is None else int(hi[0])
        )
        check_exact(res, X, centers, cap, opt, C=C)


@pytest.mark.parametrize("k", [3, 7])
@pytest.mark.parametrize("m", [20, 1000])
def test_exact_duplicated_points(m: int, k: int) -> None:
    """Every point three times: ties everywhere, the LP still has an integral optimum."""
    base = make_data("gaussian", m, 2, m + k)
    X = np.repeat(base, 3, axis=0)
    n = X.shape[0]
    centers = make_centers(base, k, m)
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    opt = reference_optimum(C, cap)
    for method in ("exact", "emd"):
        res = balanced_assign(X, centers, method=method)
        check_exact(res, X, centers, cap, opt, C=C)


@pytest.mark.parametrize("n", [30, 31, 3000])
@pytest.mark.parametrize("same_centers", [False, True])
def test_exact_all_points_identical(n: int, same_centers: bool) -> None:
    """Every point identical: each column of C is constant, so only the sizes matter."""
    k = 3
    X = np.tile([[0.5, -1.0]], (n, 1))
    centers = (
        np.tile([[0.5, -1.0]], (k, 1))
        if same_centers
        else np.array([[0.0, 0.0], [1.0, -1.0], [3.0, 2.0]])
    )
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    opt = reference_optimum(C, cap)
    # the optimum gives every column its lower bound and the n mod k extra points to the
    # cheapest columns
    order = np.argsort(C[0], kind="stable")
    counts = cap.lower.copy()
    counts[order[: n - cap.lower.sum()]] += 1
    expected = float((C[0] * counts).sum())
    assert opt == pytest.approx(expected, rel=1e-12, abs=1e-12)
    res = balanced_assign(X, centers)
    check_exact(res, X, centers, cap, opt, C=C)


@pytest.mark.parametrize("n", [1, 7, 300, 3000])
def test_exact_single_cluster(n: int) -> None:
    X = make_data("gaussian", n, 2, n)
    centers = np.array([[0.3, -0.2]])
    res = balanced_assign(X, centers)
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, 1, sizes=None, size_min=None, size_max=None)
    np.testing.assert_array_equal(res.labels, np.zeros(n))
    np.testing.assert_array_equal(res.sizes, [n])
    check_exact(res, X, centers, cap, float(C.sum()), C=C)


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("n", [12, 25, 40])
def test_exact_k_equals_n_is_an_assignment_problem(n: int, d: int) -> None:
    X = make_data("uniform", n, d, n * d)
    centers = make_data("uniform", n, d, n * d + 1)
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, n, sizes=None, size_min=None, size_max=None)
    opt, P = emd_optimum(C, np.ones(n))
    for method in ("exact", "emd"):
        res = balanced_assign(X, centers, method=method)
        check_exact(res, X, centers, cap, opt, C=C)
        np.testing.assert_array_equal(np.sort(res.labels), np.arange(n))  # a permutation
        np.testing.assert_array_equal(res.labels, np.argmax(P, axis=1))  # the unique optimum


def test_exact_large_against_emd() -> None:
    """n = 20000, k = 10: the sample's potentials, then shortest paths on every row."""
    n, k, d = 20000, 10, 2
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=2.0, random_state=42)
    centers = make_centers(X, k, 42)
    C = reference_cost(X, centers)
    t0 = time.perf_counter()
    opt, P = emd_optimum(C, np.full(k, n // k))
    t_emd = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = balanced_assign(X, centers)
    t_ours = time.perf_counter() - t0
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    check_exact(res, X, centers, cap, opt, C=C)
    assert res.n_iter > 0  # points were moved along shortest paths: the solver's own work
    np.testing.assert_array_equal(res.labels, np.argmax(P, axis=1))  # generic: unique optimum
    print(f"n={n} k={k}: ot.emd {t_emd:.2f} s, balanced_assign {t_ours:.2f} s")


@settings(max_examples=30, deadline=None, database=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    k=st.integers(1, 6),
    d=st.integers(1, 3),
    grid=st.booleans(),
)
def test_exact_random_problems_match_emd(seed: int, n: int, k: int, d: int, grid: bool) -> None:
    """Random sizes (zeros allowed), gaussian or small-integer-grid points (many ties)."""
    k = min(k, n)
    rng = np.random.default_rng(seed)
    if grid:
        X = rng.integers(0, 3, size=(n, d)).astype(np.float64)
        centers = rng.integers(0, 3, size=(k, d)).astype(np.float64)
    else:
        X = rng.standard_normal((n, d))
        centers = rng.standard_normal((k, d))
    sizes = rng.multinomial(n, rng.dirichlet(np.ones(k)))
    C = reference_cost(X, centers)
    opt, _ = emd_optimum(C, sizes)
    res = balanced_assign(X, centers, sizes=sizes)
    check_exact(res, X, centers, Capacities(sizes, sizes), opt, C=C)


@settings(max_examples=30, deadline=None, database=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40), k=st.integers(2, 5))
def test_exact_random_intervals_match_highs(seed: int, n: int, k: int) -> None:
    k = min(k, n)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    centers = rng.standard_normal((k, 2))
    lower = rng.integers(0, n // k + 1, size=k)
    upper = np.maximum(lower + rng.integers(0, n + 1, size=k), 1)
    if upper.sum() < n:
        upper[np.argmin(upper)] += n - upper.sum()
    cap = resolve_capacities(n, k, sizes=None, size_min=lower, size_max=upper)
    C = reference_cost(X, centers)
    opt, _ = lp_optimum(C, cap.lower, cap.upper)
    res = balanced_assign(X, centers, size_min=lower, size_max=upper)
    check_exact(res, X, centers, cap, opt, C=C)


# --------------------------------------------------------------------------- chunking, dtype


# Every block is one call of each (numba-parallel) kernel per pass, so tiny blocks are only
# used on the smaller problems; n > 2048 exercises the Newton + band-repair path.
@pytest.mark.parametrize(
    "n, block_rows",
    [(300, 1), (301, 1), (300, 7), (2500, 7), (2501, 333), (2500, 333), (2500, 2499)],
)
def test_block_rows_do_not_change_the_result(n: int, block_rows: int) -> None:
    k = 4
    X = make_data("gaussian", n, 2, 5)
    centers = make_centers(X, k, 5)
    whole = balanced_assign(X, centers)
    split = balanced_assign(X, centers, block_rows=block_rows)
    np.testing.assert_array_equal(split.labels, whole.labels)
    np.testing.assert_array_equal(split.potentials, whole.potentials)
    np.testing.assert_array_equal(split.sizes, whole.sizes)
    assert split.objective == pytest.approx(whole.objective, rel=1e-12)
    assert split.certificate.optimal and split.certificate.violations == 0
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    check_exact(split, X, centers, cap, reference_optimum(C, cap), C=C)


@pytest.mark.parametrize("block_rows", [None, 333])
@pytest.mark.parametrize("n, k", [(300, 3), (3000, 4), (2999, 6)])
def test_float32_input(n: int, k: int, block_rows: int | None) -> None:
    X = make_data("blobs", n, 2, n).astype(np.float32)
    centers = make_centers(X.astype(np.float64), k, n)
    res = balanced_assign(X, centers, block_rows=block_rows)
    # the costs the solver sees: float32 distances to float32 centers
    C32 = ot.dist(X, centers.astype(np.float32)).astype(np.float64)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    opt = reference_optimum(C32, cap)
    assert res.objective == pytest.approx(opt, rel=1e-6)
    np.testing.assert_array_equal(res.sizes, np.bincount(res.labels, minlength=k))
    assert np.all(res.sizes >= cap.lower) and np.all(res.sizes <= cap.upper)
    assert res.certificate.optimal and res.certificate.violations == 0
    assert res.objective == pytest.approx(C32[np.arange(n), res.labels].sum(), rel=1e-6)
    assert np.all(np.isfinite(res.potentials)) and res.potentials.dtype == np.float64
    whole = balanced_assign(X, centers)
    np.testing.assert_array_equal(res.labels, whole.labels)


# --------------------------------------------------------------------------- warm starts


@pytest.mark.parametrize("move", [0.0, 0.01, 0.1, 0.5])
def test_warm_start_gives_the_cold_optimum(move: float) -> None:
    n, k = 4000, 5
    X = make_data("gaussian", n, 2, 11)
    centers = make_centers(X, k, 11)
    first = balanced_assign(X, centers)
    moved = centers + move * np.random.default_rng(12).standard_normal(centers.shape)
    warm = balanced_assign(X, moved, potentials=first.potentials)
    cold = balanced_assign(X, moved)
    C = reference_cost(X, moved)
    cap = resolve_capacities(n, k, sizes=None, size_min=None, size_max=None)
    opt, P = emd_optimum(C, cap.lower)
    check_exact(warm, X, moved, cap, opt, C=C)
    check_exact(cold, X, moved, cap, opt, C=C)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    np.testing.assert_array_equal(warm.labels, cold.labels)
    np.testing.assert_array_equal(warm.labels, np.argmax(P, axis=1))
    if move == 0.0:  # the certified potentials of the same problem need no shortest path
        assert warm.n_iter == 0
        np.testing.assert_array_equal(warm.labels, first.labels)


@pytest.mark.parametrize("potentials", ["zeros", "huge", "list"])
def test_any_warm_start_is_repaired_to_the_optimum(potentials: str) -> None:
    n, k = 3000, 4
    X = make_data("uniform", n, 3, 13)
    centers = make_centers(X, k, 13)
    cold = balanced_assign(X, centers)
    v0 = {
        "zeros": np.zeros(k),
        "huge": 50.0 * np.random.default_rng(0).standard_normal(k),
        "list": cold.potentials.tolist(),
    }[potentials]
    res = balanced_assign(X, centers, potentials=v0, size_min=700, size_max=800)
    C = reference_cost(X, centers)
    cap = resolve_capacities(n, k, sizes=None, size_min=700, size_max=800)
    check_exact(res, X, centers, cap, lp_optimum(C, cap.lower, cap.upper)[0], C=C)


# --------------------------------------------------------------------------- errors


@pytest.fixture
def small() -> tuple[np.ndarray, np.ndarray]:
    X = make_data("gaussian", 30, 2, 0)
    return X, X[:3].copy()


def _with(X: np.ndarray, i: int, value: float) -> np.ndarray:
    X = X.copy()
    X.flat[i] = value
    return X


@pytest.mark.parametrize(
    "change, exc, match",
    [
        ({"X": "nan"}, ValueError, r"^X: .*NaN"),
        ({"X": "inf"}, ValueError, r"^X: .*infinity"),
        ({"X": "1d"}, ValueError, r"^X: .*2D array"),
        ({"centers": "wide"}, ValueError, r"centers must have shape \(n_clusters, 2\)"),
        ({"centers": "1d"}, ValueError, r"centers must have shape \(n_clusters, 2\)"),
        ({"centers": "empty"}, ValueError, r"centers must have shape \(n_clusters, 2\)"),
        ({"centers": "nan"}, ValueError, r"centers contains NaN"),
        ({"centers": "text"}, TypeError, r"centers must be a numeric array"),
        ({"centers": "too_many"}, ValueError, r"n_clusters=31 is larger than .* n_samples=30"),
        ({"sizes": [10, 10, 9]}, ValueError, r"sizes must sum to the number of samples \(30\)"),
        ({"sizes": [-1, 16, 15]}, ValueError, r"sizes must be non-negative"),
        ({"sizes": [10.5, 9.5, 10]}, ValueError, r"sizes must hold whole numbers"),
        ({"sizes": [10, 10, 10], "size_min": 5}, ValueError, r"either sizes or size_min"),
        ({"size_min": [11, 11, 11]}, ValueError, r"size_min is infeasible"),
        ({"size_max": [9, 9, 9]}, ValueError, r"size_max is infeasible"),
        ({"size_min": 12, "size_max": 11}, ValueError, r"size_min exceeds size_max"),
        ({"method": "lp"}, ValueError, r"method must be one of \['exact', 'sinkhorn', 'emd'\]"),
        ({"method": None}, ValueError, r"method must be one of"),
        ({"rounding": "round"}, ValueError, r"rounding must be one of \['argmax', 'exact'\]"),
        ({"reg": 0.0}, ValueError, r"reg must be finite and > 0"),
        ({"reg": -1e-2}, ValueError, r"reg must be finite and > 0"),
        ({"reg": float("nan")}, ValueError, r"reg must be finite and > 0"),
        ({"reg": "small"}, TypeError, r"reg must be a real number"),
        ({"sinkhorn_tol": 0}, ValueError, r"sinkhorn_tol must be finite and > 0"),
        ({"sinkhorn_max_iter": 0}, ValueError, r"sinkhorn_max_iter must be finite and > 0"),
        ({"sinkhorn_max_iter": 10.0}, TypeError, r"sinkhorn_max_iter must be a whole number"),
        ({"max_band": 0}, ValueError, r"max_band must be finite and > 0"),
        ({"potentials": [0.0, 0.0]}, ValueError, r"potentials must be a finite vector of length 3"),
        ({"potentials": [0, np.nan, 0]}, ValueError, r"potentials must be a finite vector"),
        ({"potentials": [[0, 0, 0]]}, ValueError, r"potentials must be a finite vector"),
    ],
)
def test_invalid_arguments(small, change: dict, exc: type, match: str) -> None:
    X, centers = small
    kwargs = dict(change)
    x_kind = kwargs.pop("X", None)
    c_kind = kwargs.pop("centers", None)
    if x_kind == "nan":
        X = _with(X, 5, np.nan)
    elif x_kind == "inf":
        X = _with(X, 5, np.inf)
    elif x_kind == "1d":
        X = X[:, 0]
    if c_kind == "wide":
        centers = np.zeros((3, 3))
    elif c_kind == "1d":
        centers = np.zeros(3)
    elif c_kind == "empty":
        centers = np.zeros((0, 2))
    elif c_kind == "nan":
        centers = _with(centers, 1, np.nan)
    elif c_kind == "text":
        centers = [["a", "b"]]
    elif c_kind == "too_many":
        centers = np.zeros((31, 2))
    with pytest.raises(exc, match=match):
        balanced_assign(X, centers, **kwargs)


@pytest.mark.parametrize("method, rounding", [("exact", "argmax"), ("sinkhorn", "exact")])
def test_max_band_too_small_raises(method: str, rounding: str) -> None:
    # four identical points, two clusters of two: points outside the band all take the same
    # label, so a band of one point can never be completed into a balanced assignment
    X = np.ones((4, 2))
    centers = np.array([[0.0, 0.0], [2.0, 1.0]])
    with pytest.raises(RuntimeError, match=r"max_band=1"):
        balanced_assign(X, centers, method=method, rounding=rounding, max_band=1)
    res = balanced_assign(X, centers, method=method, rounding=rounding, max_band=2)
    assert res.certificate.optimal
    np.testing.assert_array_equal(res.sizes, [2, 2])


def test_max_band_small_but_sufficient(small) -> None:
    # the band only has to hold the points in doubt: a cap below n is fine when they fit
    # (here: warm potentials a little off, a few points to move)
    X, centers = small
    cold = balanced_assign(X, centers)
    reduced = reference_cost(X, centers) - cold.potentials
    ordered = np.sort(reduced, axis=1)
    gaps = (ordered[:, 1] - ordered[:, 0])[cold.labels == 0]
    nudged = cold.potentials.copy()
    nudged[0] -= np.sort(gaps)[1] * 1.01  # the two points of cluster 0 nearest a boundary leave
    assert np.bincount(np.argmin(reduced + (cold.potentials - nudged), axis=1))[0] == 8
    res = balanced_assign(X, centers, potentials=nudged, max_band=5)
    assert res.band_size <= 5
    assert res.certificate.optimal
    np.testing.assert_array_equal(res.sizes, [10, 10, 10])
    np.testing.assert_array_equal(res.labels, cold.labels)


@pytest.mark.parametrize("max_band", [1000, 2048])
def test_max_band_is_enough_from_optimal_potentials(max_band: int) -> None:
    # from the optimal potentials no point is in doubt: a cap below the default first band
    # (2048 rows) must not raise
    n, k = 3000, 4
    X = make_data("gaussian", n, 2, 17)
    centers = make_centers(X, k, 17)
    cold = balanced_assign(X, centers)
    warm = balanced_assign(X, centers, potentials=cold.potentials, max_band=max_band)
    assert warm.band_size <= max_band
    np.testing.assert_array_equal(warm.labels, cold.labels)
    assert warm.certificate.optimal


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_integer_input_is_converted(dtype) -> None:
    rng = np.random.default_rng(4)
    X = rng.integers(0, 10, size=(50, 2)).astype(dtype)
    centers = [[0, 0], [5, 5]]
    res = balanced_assign(X, centers)
    X64, centers64 = X.astype(np.float64), np.asarray(centers, dtype=np.float64)
    ref = balanced_assign(X64, centers64)
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.objective == ref.objective
    C = reference_cost(X64, centers64)
    cap = resolve_capacities(50, 2, sizes=None, size_min=None, size_max=None)
    check_exact(res, X64, centers64, cap, emd_optimum(C, np.array([25, 25]))[0], C=C)


@pytest.mark.parametrize("method", ["exact", "emd"])
@pytest.mark.parametrize("shift, scale", [(1e6, 1.0), (-1e8, 1.0), (0.0, 1e3), (3.0, 1e-3)])
def test_translation_and_scale_invariance(shift: float, scale: float, method: str) -> None:
    """Moving or scaling X and the centers together does not change the optimum; far from
    the origin the costs are differences, not ``|x|^2 - 2 x.mu + |mu|^2`` (no cancellation)."""
    n, k = 2500, 5
    X = make_data("gaussian", n, 3, 19)
    centers = make_centers(X, k, 19)
    base = balanced_assign(X, centers, method=method)
    moved = balanced_assign(scale * X + shift, scale * centers + shift, method=method)
    np.testing.assert_array_equal(moved.labels, base.labels)
    assert moved.objective == pytest.approx(scale**2 * base.objective, rel=1e-8)
    assert moved.certificate.optimal and moved.certificate.violations == 0


# --------------------------------------------------------------------------- paper, Thm 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generic_optimum_is_unique_and_integral(seed: int) -> None:
    """Luo & Mixon Thm 5: for generic data and centers at distinct data points, the LP
    optimum is unique and integral, so the exact solver's labels are *the* optimum."""
    n, k, d = 60, 3, 2
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    centers = X[rng.choice(n, size=k, replace=False)]
    C = reference_cost(X, centers)
    opt, P = emd_optimum(C, np.full(k, n // k))
    np.testing.assert_allclose(P, np.round(P), atol=1e-12)  # integral
    # uniqueness: minimise and maximise a random linear functional over the optimal face
    A_eq, b_eq, _, _ = lp_matrices(n, k, np.zeros(k), np.zeros(k))
    cols = sp.kron(np.ones((1, n)), sp.eye(k), format="csr")
    face_A = sp.vstack([A_eq, cols, sp.csr_matrix(C.ravel())], format="csr")
    face_b = np.concatenate([b_eq, np.full(k, n // k), [opt]])
    r = rng.standard_normal(n * k)
    extremes = []
    for sign in (1.0, -1.0):
        out = linprog(sign * r, A_eq=face_A, b_eq=face_b, bounds=(0, None), method="highs")
        assert out.status == 0, out.message
        extremes.append(out.x)
    low, high = (float(r @ x) for x in extremes)
    assert high - low <= 1e-6 * np.abs(r).sum()
    np.testing.assert_allclose(extremes[0], P.ravel(), atol=1e-6)
    np.testing.assert_allclose(extremes[1], P.ravel(), atol=1e-6)
    res = balanced_assign(X, centers)
    np.testing.assert_array_equal(res.labels, np.argmax(P, axis=1))
    assert res.objective == pytest.approx(opt, rel=1e-12)


# --------------------------------------------------------------------------- regressions


@pytest.mark.parametrize(
    "kwargs",
    [{"sizes": [10, 1, 1, 0]}, {"size_min": [10, 1, 1, 0]}],
)
def test_identical_points_emit_no_runtime_warning(kwargs) -> None:
    """Regression: every plan row one-hot made Newton's system singular and its direction NaN
    ('invalid value encountered in matmul' in solvers/newton.py)."""
    X = np.zeros((12, 2))
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = balanced_assign(X, centers, **kwargs)
    C = reference_cost(X, centers)
    cap = resolve_capacities(12, 4, **{"sizes": None, "size_min": None, "size_max": None, **kwargs})
    check_exact(res, X, centers, cap, reference_optimum(C, cap), C=C)
    np.testing.assert_array_equal(res.sizes, [10, 1, 1, 0])


@pytest.mark.parametrize("method", ["exact", "emd"])
@pytest.mark.parametrize("n, scale", [(300, 1e-7), (2000, 1e-6)])
def test_small_scale_data_is_solved_exactly(n: int, scale: float, method: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    centers = X[:5] * 1.01
    base = balanced_assign(X, centers, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # assert on the values below
        small = balanced_assign(scale * X, scale * centers, method=method)
    assert small.certificate.optimal
    assert small.objective == pytest.approx(scale**2 * base.objective, rel=1e-9)
    np.testing.assert_array_equal(small.labels, base.labels)


@pytest.mark.parametrize("scale", [1e-150, 1e-156])
def test_subnormal_costs_with_many_ties(scale: float) -> None:
    # costs down to ~1e-312 (subnormal), points on a 3 x 3 grid: the Newton curvature 1/eps
    # can overflow; the solver must skip such steps, not fail, and still prove its answer
    rng = np.random.default_rng(5)
    X = rng.integers(0, 3, size=(300, 2)).astype(np.float64) * scale
    centers = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy underflow on the way
        res = balanced_assign(X, centers)
    np.testing.assert_array_equal(res.sizes, [75, 75, 75, 75])
    assert res.certificate.optimal
