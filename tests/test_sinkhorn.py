"""E-BalLOT's assignment step (``method="sinkhorn"``) against the exact optimum."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
from references import (
    check_exact,
    count_calls,
    emd_optimum,
    make_data,
    reference_cost,
    reference_optimum,
    row_blocks,
)
from scipy.special import softmax
from sklearn.datasets import make_blobs

from ballot_dask import (
    AssignmentResult,
    BalancedKMeans,
    Capacities,
    balanced_assign,
    resolve_capacities,
)

# --------------------------------------------------------------------------- sinkhorn


@pytest.fixture(scope="module")
def blobs_2000() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    X, _, true_centers = make_blobs(
        n_samples=2000,
        n_features=2,
        centers=5,
        cluster_std=1.0,
        center_box=(-10, 10),
        random_state=0,
        return_centers=True,
    )
    centers = true_centers + 0.3 * np.random.default_rng(0).standard_normal(true_centers.shape)
    C = reference_cost(X, centers)
    opt, _ = emd_optimum(C, np.full(5, 400))
    return X, centers, C, opt


def _check_sinkhorn_common(
    res: AssignmentResult, C: np.ndarray, opt: float, rel: float = 1e-9
) -> None:
    n, k = C.shape
    assert res.method == "sinkhorn"
    assert res.labels.shape == (n,) and res.labels.min() >= 0 and res.labels.max() < k
    np.testing.assert_array_equal(res.sizes, np.bincount(res.labels, minlength=k))
    assert res.sizes.sum() == n
    assert np.all(np.isfinite(res.potentials))
    assert np.isfinite(res.objective) and np.isfinite(res.plan_cost)
    assert np.isfinite(res.marginal_error) and res.marginal_error >= 0
    assert res.objective == pytest.approx(C[np.arange(n), res.labels].sum(), rel=rel)
    # the rounded plan is a feasible transport plan: its cost cannot beat the LP optimum
    assert res.plan_cost >= opt * (1 - rel)


def check_rounded_plan(
    res: AssignmentResult, C: np.ndarray, reg: float, cap: Capacities, rel: float = 1e-9
) -> None:
    """Rebuild E-BalLOT's plan densely from the returned potentials: the Sinkhorn plan
    ``softmax((v - C) / eps)`` (``eps = reg * mean(C)``), rounded onto the transport polytope
    by Altschuler, Weed & Rigollet's Alg. 2.  Its cost is ``plan_cost``, its column sums are
    exactly the target sizes and the labels are its row argmax."""
    n = C.shape[0]
    eps = reg * float(C.mean())
    P = softmax((res.potentials[None, :] - C) / eps, axis=1)
    col = P.sum(axis=0)
    target = cap.target(col)
    with np.errstate(divide="ignore"):
        scale = np.where(col > 0, np.minimum(target / np.where(col > 0, col, 1.0), 1.0), 1.0)
    missing = target - col * scale
    G = P * scale[None, :]
    if missing.sum() > 0:
        G += (1.0 - G.sum(axis=1))[:, None] * (missing / missing.sum())[None, :]
    assert np.all(G >= -1e-12)  # round-off in the rank-one correction
    np.testing.assert_allclose(G.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(G.sum(axis=0), target, rtol=1e-9, atol=1e-9)
    assert np.all(target >= cap.lower - 1e-9) and np.all(target <= cap.upper + 1e-9)
    assert target.sum() == pytest.approx(n, rel=1e-12)
    assert res.plan_cost == pytest.approx(float((G * C).sum()), rel=rel)
    # labels: row argmax of G (a different pick only where two entries tie to round-off)
    picked = G[np.arange(n), res.labels]
    assert np.all(picked >= G.max(axis=1) - 1e-9)


@pytest.mark.parametrize("reg", [1e-1, 1e-2])
@pytest.mark.parametrize("request_kind", ["equal", "sizes", "range", "empty", "empty-range"])
def test_sinkhorn_argmax_rounding(blobs_2000, reg: float, request_kind: str) -> None:
    X, centers, C, _ = blobs_2000
    n, k = C.shape
    kwargs = {
        "equal": {},
        "sizes": {"sizes": [300, 350, 400, 450, 500]},
        "range": {"size_min": 350, "size_max": 450},
        "empty": {"sizes": [0, 500, 500, 500, 500]},
        "empty-range": {"size_min": 0, "size_max": [0, 2000, 2000, 2000, 2000]},
    }[request_kind]
    cap = resolve_capacities(n, k, **{"sizes": None, "size_min": None, "size_max": None, **kwargs})
    opt = reference_optimum(C, cap)
    res = balanced_assign(X, centers, method="sinkhorn", reg=reg, sinkhorn_max_iter=20000, **kwargs)
    _check_sinkhorn_common(res, C, opt)
    assert res.certificate is None
    assert res.n_iter < 20000  # converged (0 iterations when v = 0 already meets the bounds)
    assert res.marginal_error <= 1e-3  # the default sinkhorn_tol
    # argmax labels of a plan that is nearly balanced are nearly balanced
    assert np.abs(res.sizes - np.clip(res.sizes, cap.lower, cap.upper)).sum() <= 0.05 * n
    check_rounded_plan(res, C, reg, cap)
    if request_kind.startswith("empty"):  # a cluster of capacity 0 gets no point
        assert res.sizes[0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_iter", [5, 50])
@pytest.mark.parametrize("reg", [1e-4, 1e-6])
def test_sinkhorn_tiny_reg_has_no_nan(blobs_2000, reg: float, max_iter: int, dtype) -> None:
    """The regime where a naive (non-log-domain) Sinkhorn underflows and loses mass."""
    X, centers, C, opt = blobs_2000
    res = balanced_assign(
        X.astype(dtype), centers, method="sinkhorn", reg=reg, sinkhorn_max_iter=max_iter
    )
    cap = resolve_capacities(2000, 5, sizes=None, size_min=None, size_max=None)
    if dtype == np.float64:
        _check_sinkhorn_common(res, C, opt)
        check_rounded_plan(res, C, reg, cap)
    else:  # the solver sees float32 distances to float32 centers
        C32 = ot.dist(X.astype(dtype), centers.astype(dtype)).astype(np.float64)
        _check_sinkhorn_common(res, C32, reference_optimum(C32, cap), rel=1e-6)
    assert res.n_iter <= max_iter


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"sizes": [300, 350, 400, 450, 500]}, {"size_min": 350, "size_max": 450}, {"reg": 1e-4}],
    ids=["equal", "sizes", "range", "tiny-reg"],
)
def test_sinkhorn_exact_rounding_is_certified(blobs_2000, kwargs) -> None:
    X, centers, C, _ = blobs_2000
    n, k = C.shape
    request = {key: kwargs.get(key) for key in ("sizes", "size_min", "size_max")}
    cap = resolve_capacities(n, k, **request)
    opt = reference_optimum(C, cap)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = balanced_assign(X, centers, method="sinkhorn", rounding="exact", **kwargs)
    assert res.method == "sinkhorn"
    assert res.plan_cost is not None and res.marginal_error is not None
    check_exact(res, X, centers, cap, opt, C=C)
    if cap.is_equality:
        np.testing.assert_array_equal(res.sizes, cap.lower)


def test_sinkhorn_plan_cost_approaches_the_optimum(blobs_2000) -> None:
    X, centers, C, opt = blobs_2000
    excess = []
    for reg in (1e-1, 1e-2, 1e-3):
        res = balanced_assign(X, centers, method="sinkhorn", reg=reg, sinkhorn_max_iter=20000)
        _check_sinkhorn_common(res, C, opt)
        assert res.n_iter < 20000 and res.marginal_error <= 1e-3
        excess.append(res.plan_cost - opt)
    assert excess[0] > excess[1] > excess[2] >= 0
    assert excess[2] <= 0.02 * opt


def test_sinkhorn_small_reg_emits_no_runtime_warning() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    centers = rng.standard_normal((4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = balanced_assign(X, centers, method="sinkhorn", reg=1e-4)
    assert np.all(np.isfinite(res.potentials))


def test_sinkhorn_capped_by_max_iter_warns() -> None:
    from sklearn.exceptions import ConvergenceWarning

    X = make_data("gaussian", 500, 2, 3)
    centers = X[:4].copy()
    with pytest.warns(ConvergenceWarning, match="sinkhorn_max_iter=3"):
        res = balanced_assign(X, centers, method="sinkhorn", reg=1e-3, sinkhorn_max_iter=3)
    assert res.marginal_error > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = balanced_assign(X, centers, method="sinkhorn", reg=1e-1, sinkhorn_max_iter=5000)
    assert res.marginal_error <= 1e-3


# --------------------------------------------------------------------------- Newton


@pytest.mark.parametrize("reg", [1e-2, 1e-3, 1e-4])
@pytest.mark.parametrize("n", [6_000, 6_001])  # k divides n, or not (shares n / k)
def test_newton_reaches_the_entropic_plan_in_few_passes(reg: float, n: int) -> None:
    """Newton on the semi-dual reaches the entropic plan to the paper's criterion (column
    error in the 1-norm) in at most 30 passes from a cold start, down to reg = 1e-4,
    where Sinkhorn's iterations need thousands: the same plan (its cost, its rounding)."""
    X, _ = make_blobs(n_samples=n, n_features=3, centers=6, cluster_std=1.5, random_state=4)
    centers = X[np.random.default_rng(4).choice(n, 6, replace=False)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no ConvergenceWarning
        newton = balanced_assign(
            X, centers, method="sinkhorn", reg=reg, sinkhorn_tol=1e-4, sinkhorn_max_iter=30
        )
    assert newton.marginal_error <= 1e-4
    if reg < 1e-2 or n % 6:
        # Sinkhorn's iterations do not get there in reasonable time; with n = 6001 they
        # solve the problem with sizes in [1000, 1001], Newton the one with shares n / k
        return
    iterations = balanced_assign(
        X,
        centers,
        method="sinkhorn",
        reg=reg,
        sinkhorn_tol=1e-4,
        sinkhorn_algorithm="sinkhorn",
        sinkhorn_max_iter=200_000,
    )
    assert iterations.marginal_error <= 1e-4
    assert newton.n_iter <= 30 < iterations.n_iter  # passes over the data
    # both plans meet the criterion; their rounded costs differ by the rounding of that error
    assert newton.plan_cost == pytest.approx(iterations.plan_cost, rel=1e-3)
    assert np.mean(newton.labels == iterations.labels) > 0.999


def test_newton_warm_start_needs_a_pass_or_two() -> None:
    X, _ = make_blobs(n_samples=5_000, n_features=2, centers=5, random_state=6)
    centers = X[:5]
    first = balanced_assign(X, centers, method="sinkhorn", reg=1e-3)
    again = balanced_assign(X, centers, method="sinkhorn", reg=1e-3, potentials=first.potentials)
    assert again.n_iter <= 2
    np.testing.assert_array_equal(again.labels, first.labels)


def test_sinkhorn_algorithm_is_validated() -> None:
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="sinkhorn_algorithm must be one of"):
        balanced_assign(X, X[:2], method="sinkhorn", sinkhorn_algorithm="auction")


def test_warm_step_takes_the_mean_cost_from_the_moments() -> None:
    # E-BalLOT's regularisation is reg times the mean cost at the current centers: a warm
    # step of a fit (the engine has measured X's moments) computes it in closed form, with
    # no pass, and it equals POT's mean of the cost matrix
    from ballot_dask.solvers import SolverOptions
    from ballot_dask.solvers.sinkhorn import solve_sinkhorn

    X, _ = make_blobs(6_000, n_features=5, centers=6, random_state=4)
    centers = X[:6] + 0.1
    cap = resolve_capacities(6_000, 6)
    options = SolverOptions(reg=0.05)
    first = solve_sinkhorn(row_blocks(X, centers, prepare=False), cap, options)
    counted = row_blocks(X, centers, prepare=False)
    plain = solve_sinkhorn(counted, cap, options, potentials=first.potentials)
    fitted = row_blocks(X, centers, prepare=True)
    before = fitted.passes.rounds
    warm = solve_sinkhorn(fitted, cap, options, potentials=first.potentials)
    mean_cost = float(ot.dist(X, centers).mean())
    assert warm.eps == pytest.approx(0.05 * mean_cost, rel=1e-12)
    assert plain.eps == pytest.approx(0.05 * mean_cost, rel=1e-12)
    assert fitted.passes.rounds - before == counted.passes.rounds - 1  # one pass saved
    np.testing.assert_allclose(warm.potentials, plain.potentials, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(warm.settle().sizes, plain.settle().sizes)


@pytest.mark.parametrize("move", [0.01, 0.03, 0.1])
def test_a_warm_newton_step_starts_from_the_sample_at_the_last_plan(move: float) -> None:
    # each Newton step leaves the row sample's column targets at which X's plan met the
    # tolerance (its own column sums there, corrected by X's error); the next step, at moved
    # centers, solves the sample for them before its first pass over X: that pass then
    # meets the tolerance where the previous potentials needed a Newton step (two passes)
    from ballot_dask.solvers import SolverOptions
    from ballot_dask.solvers.sinkhorn import solve_sinkhorn

    X, _ = make_blobs(60_000, n_features=4, centers=6, cluster_std=2.0, random_state=3)
    rng = np.random.default_rng(0)
    centers = X[rng.choice(X.shape[0], 6, replace=False)]
    moved = centers + move * rng.standard_normal(centers.shape)
    cap = resolve_capacities(X.shape[0], 6)
    options = SolverOptions(reg=0.05)
    steps, rounds = [], []
    for keep in (True, False):
        blocks = row_blocks(X, centers, prepare=True)
        first = solve_sinkhorn(blocks, cap, options)
        reference = blocks.entropic_reference
        sample = blocks.sample()
        assert reference is not None and sample is not None
        assert reference.shape == (6,) and reference.sum() == pytest.approx(sample.shape[0])
        if not keep:
            blocks.entropic_reference = None
        blocks.set_centers(moved)
        before = blocks.passes.as_dict()
        steps.append(solve_sinkhorn(blocks, cap, options, first.potentials, first.eps))
        rounds.append(blocks.passes.rounds - before["rounds"])
        # the sample's targets for the next step, and (kept) its solve for these or (not
        # kept) the curvature of the Newton step X's first pass needed
        assert blocks.passes.sample - before["sample"] == 2
        assert steps[-1].marginal_error <= options.sinkhorn_tol
    assert rounds == [1, 2]
    # the same entropic plan, to the criterion: the rounded plans' costs agree within it
    assert steps[0].plan_cost == pytest.approx(steps[1].plan_cost, rel=2e-3)


@pytest.mark.parametrize("separation", [2.0, 12.0])
def test_a_cold_newton_step_solves_the_row_sample_first(separation: float) -> None:
    # with a row sample held in memory, a cold step solves the same problem on it (its
    # targets scaled) and starts X's last Newton stage from its potentials: fewer passes over
    # X than staging on X from the top, and the same entropic plan (to the criterion)
    from ballot_dask.solvers.newton import entropic_potentials
    from ballot_dask.solvers.sinkhorn import _sample_blocks

    rng = np.random.default_rng(3)
    n, k, d = 40_000, 8, 4
    means = separation * rng.standard_normal((k, d))
    X = means[rng.integers(k, size=n)] + rng.standard_normal((n, d))
    centers = X[rng.choice(n, k, replace=False)]
    target = np.full(k, n / k)
    C = ot.dist(X, centers)
    eps, spread, tol = 0.01 * float(C.mean()), float(np.median(C)), 1e-3 * n
    plans, counted = [], []
    for with_sample in (False, True):
        blocks = row_blocks(X, centers, prepare=True)
        sample = _sample_blocks(blocks) if with_sample else None
        assert with_sample is (sample is not None)
        before = blocks.passes.as_dict()
        plan = entropic_potentials(
            blocks, target, np.zeros(k), eps, start=spread, tol=tol, max_passes=200, sample=sample
        )
        assert np.abs(plan.column_sums - target).sum() <= tol
        after = blocks.passes.as_dict()
        counted.append({key: after[key] - before[key] for key in after})
        plans.append(plan)
    staged, sampled = counted
    assert sampled["sample"] == 1 and staged["sample"] == 0
    assert sampled["cost"] == plans[1].passes  # every pass over X counted, none hidden
    assert sampled["cost"] <= staged["cost"] - 3, counted
    # one entropic plan, to the criterion: the two plans are a few times tol apart in the
    # entrywise 1-norm (of n), each within tol of the polytope
    P0, P1 = (softmax((plan.potentials - C) / eps, axis=1) for plan in plans)
    assert np.abs(P1 - P0).sum() <= 4 * tol


def test_a_crawling_warm_step_takes_the_samples_corrected_problems() -> None:
    # separated clusters, centers that split some and merge others, a warm start from other
    # centers: Newton's steps crawl (the potentials must cross empty space); with a row
    # sample, the sample's problem with its targets corrected by X's column sums at each pass
    # takes over, and the step meets the criterion in a fraction of the passes over X
    from ballot_dask.solvers.newton import entropic_potentials
    from ballot_dask.solvers.sinkhorn import _sample_blocks

    rng = np.random.default_rng(5)
    n, k, d = 40_000, 8, 4
    means = 12.0 * rng.standard_normal((k, d))
    X = means[rng.integers(k, size=n)] + rng.standard_normal((n, d))
    before, centers = (X[rng.choice(n, k, replace=False)] for _ in range(2))
    target = np.full(k, n / k)
    C = ot.dist(X, centers)
    eps, spread, tol = 0.01 * float(C.mean()), float(np.median(C)), 1e-3 * n
    first = row_blocks(X, before, prepare=True)
    warm = entropic_potentials(
        first, target, np.zeros(k), eps, start=spread, tol=tol, max_passes=300
    ).potentials
    plans, counted = [], []
    for with_sample in (False, True):
        blocks = row_blocks(X, centers, prepare=True)
        sample = _sample_blocks(blocks) if with_sample else None
        plan = entropic_potentials(
            blocks,
            target,
            warm,
            eps,
            start=spread,
            tol=tol,
            max_passes=300,
            warm=True,
            moments=True,
            sample=sample,
        )
        assert np.abs(plan.column_sums - target).sum() <= tol
        assert plan.moments is not None  # the plan's rounding needs them
        assert blocks.passes.cost == plan.passes
        counted.append((plan.passes, blocks.passes.sample))
        plans.append(plan)
    (alone, none), (helped, solves) = counted
    assert none == 0 and solves >= 1
    assert helped <= alone / 2, counted
    P0, P1 = (softmax((plan.potentials - C) / eps, axis=1) for plan in plans)
    assert np.abs(P1 - P0).sum() <= 4 * tol


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rounding_in_closed_form_equals_the_rounding_pass(dtype, sparse) -> None:
    # Newton's passes at the final temperature also measure the plan's moments: the rounded
    # plan's masses, centroid sums and cost follow in closed form (no rounding pass); they
    # equal the rounding pass's, and its labels' cost and counts are measured on settle()
    import scipy.sparse as sp

    from ballot_dask.blocks import RowBlocks
    from ballot_dask.solvers import SolverOptions
    from ballot_dask.solvers.sinkhorn import _combine_rounded, _rounded_summary, solve_sinkhorn

    rng = np.random.default_rng(7)
    n, k, d = 20_000, 7, 5
    X = rng.standard_normal((n, d)).astype(dtype)
    if sparse:
        X[rng.random((n, d)) < 0.5] = 0.0
        X = sp.csr_matrix(X)
    blocks = RowBlocks(X, block_rows=6_000)
    blocks.set_centers(rng.standard_normal((k, d)))
    cap = resolve_capacities(n, k)
    before = blocks.passes.rounds
    step = solve_sinkhorn(blocks, cap, SolverOptions(reg=0.05))
    rounds = blocks.passes.rounds - before
    assert step.pending is not None and np.isnan(step.objective)
    labeler = step.labeler
    mass, sums, cost, hard, counts = blocks.reduce(
        _rounded_summary,
        _combine_rounded,
        labeler.potentials,
        labeler.eps,
        labeler.scale,
        labeler.deficit,
        with_x=True,
    )
    np.testing.assert_allclose(step.mass, mass, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(step.sums, sums, rtol=1e-12, atol=1e-12 * np.abs(sums).max())
    assert step.plan_cost == pytest.approx(cost, rel=1e-12)
    np.testing.assert_allclose(step.mass.sum(), n, rtol=1e-12)
    counted = blocks.passes.rounds
    assert step.settle() is step and step.pending is None
    assert blocks.passes.rounds == counted + 1  # the labels' pass, once
    assert step.objective == hard
    np.testing.assert_array_equal(step.sizes, counts)
    step.settle()
    assert blocks.passes.rounds == counted + 1
    # the step itself made no rounding pass: its rounds are Newton's (and the mean cost's)
    reference = solve_sinkhorn(blocks, cap, SolverOptions(reg=0.05, sinkhorn_algorithm="sinkhorn"))
    assert reference.pending is None  # Sinkhorn's iterations: the rounding pass, as before
    assert rounds >= 2


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_weighted_plan_costs_hold_far_from_the_origin(offset: float) -> None:
    """The plan's cost at every center from its moments (no k x k product in the pass): as
    the dense sum ``w @ (P^T C)`` to 1e-10 with the data and centers 10^4 from the origin,
    separated clusters of unit spread (each expansion's terms of the costs' size); no
    weight, no cost."""
    from ballot_dask.plan_kernels import entropic_moment_terms, weighted_plan_costs

    rng = np.random.default_rng(3)
    k, d, m = 12, 5, 4000
    means = offset + 8.0 * rng.standard_normal((k, d))
    X = means[rng.integers(k, size=m)] + rng.standard_normal((m, d))
    centers = means + 0.3 * rng.standard_normal((k, d))
    C = np.square(X[:, None, :] - centers[None, :, :]).sum(axis=2)  # (no cancellation)
    v, eps = np.zeros(k), 0.5
    _, logcol, _, (px, own, _, _) = entropic_moment_terms(X, C, v, eps)
    P = softmax((v[None, :] - C) / eps, axis=1)
    weights = rng.uniform(0.0, 1.0, size=k)
    got = weighted_plan_costs(px, own, np.exp(logcol), centers, weights)
    np.testing.assert_allclose(got, weights @ (P.T @ C), rtol=1e-10)
    for j in range(k):  # a unit weight: the plan's column j at every center
        unit = np.eye(k)[j]
        want = P[:, j] @ C
        np.testing.assert_allclose(
            weighted_plan_costs(px, own, np.exp(logcol), centers, unit), want, rtol=1e-10
        )
    zero = weighted_plan_costs(px, own, np.exp(logcol), centers, np.zeros(k))
    np.testing.assert_array_equal(zero, np.zeros(k))


def test_an_entropic_fit_measures_only_its_last_labels(monkeypatch) -> None:
    # in a fit, each E-BalLOT step's centroids come from the plan's moments; the rounding
    # pass (the labels' objective and sizes) runs once, for the final step (inertia_,
    # sizes_), whose figures equal the labels' own
    from ballot_dask.solvers import sinkhorn

    passes = count_calls(monkeypatch, sinkhorn, "_rounded_summary")  # one block: one a pass
    X, _ = make_blobs(8_000, n_features=4, centers=5, random_state=2)
    km = BalancedKMeans(5, method="sinkhorn", max_iter=6, tol=0, random_state=0).fit(X)
    assert km.n_iter_ == 6
    assert len(passes) == 1
    labels = km.labels_
    np.testing.assert_array_equal(km.sizes_, np.bincount(labels, minlength=5))
    cost = ((X - km.cluster_centers_[labels]) ** 2).sum()
    assert km.inertia_ == pytest.approx(cost, rel=1e-9)


def _separated_start(n: int = 30_000, k: int = 32, d: int = 16):
    """Separated clusters (means ``6 N(0, I)``) and a k-means++ start, on which E-BalLOT at
    reg 1e-2 cycles between plans that each meet the default tolerance."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(0)
    means = 6.0 * rng.standard_normal((k, d))
    X = means[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return X, kmeans_plusplus(X, k, random_state=0)[0]


def test_e_ballot_on_separated_clusters_tightens_its_tolerance_and_converges(monkeypatch):
    # the rounding moves up to sinkhorn_tol * n of mass to short columns, near or far: on
    # separated clusters the centroids then move back and forth between plans that each meet
    # the tolerance; after a rise of the objective by more than sinkhorn_tol of itself the
    # steps solve to a tenth of it (lloyd._TIGHTER), and the fit converges
    import dask.array as da

    from ballot_dask import lloyd

    X, start = _separated_start()
    params = {"method": "sinkhorn", "reg": 1e-2, "init": start, "max_iter": 30}
    states: list = []
    km = BalancedKMeans(32, random_state=0, **params).fit(X, callback=states.append)
    assert km.converged_ and km.n_iter_ <= 10
    tols = [1e-3 if s.sinkhorn_tol is None else s.sinkhorn_tol for s in states]
    assert states[0].sinkhorn_tol is None and min(tols) <= 1e-4  # (a tenth per rise, 3 at most)
    history = np.asarray(km.objective_history_)
    rises = np.flatnonzero(np.diff(history) > 1e-3 * history[:-1])
    assert rises.size >= 1
    for r in rises:  # each rise tightened the steps after it
        assert tols[r + 1] == pytest.approx(max(tols[r] / 10, 1e-6), rel=1e-12)
    np.testing.assert_array_equal(np.bincount(km.labels_, minlength=32), km.sizes_)
    # the same fit on a Dask array of the same rows
    dk = BalancedKMeans(32, random_state=0, **params).fit(da.from_array(X, chunks=7_500))
    assert dk.n_iter_ == km.n_iter_
    np.testing.assert_allclose(dk.objective_history_, km.objective_history_, rtol=1e-9)
    # without it (the floor at the tolerance itself) the fit cycles until max_iter
    monkeypatch.setattr(lloyd, "_TIGHTEST", 1.0)
    cycling = BalancedKMeans(32, random_state=0, **params).fit(X)
    assert not cycling.converged_ and cycling.n_iter_ == 30
    history = np.asarray(cycling.objective_history_)
    assert np.count_nonzero(np.diff(history) > 1e-3 * history[:-1]) >= 5
