"""The paper's theorems as properties of the package, on generated data.

Luo & Mixon, "BalLOT: Balanced k-means clustering with optimal transport" (arXiv:2512.05926).
Theorem 5 (its Theorems 18 and 19): for generic data, every BalLOT assignment step has a unique
and integral optimum. Theorem 17: the objective never increases, by at least the energy of the
centroid move, and the iteration terminates. Theorem 8 and Lemma 20 (Theorem 11(a)): a start in
the stated basin recovers the planted clustering in one step (for k = 2 the radius is sharp).
Theorem 15(a): a diameter pair of two well-separated balls is such a start. The radii and the
separation come from ``examples/paper/_theory.py``, which also draws them on the paper's
figures; each test's docstring names the statement it checks.
"""

from __future__ import annotations

import _models
import _theory
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from references import emd_optimum, lp_matrices, reference_cost
from scipy.optimize import linprog

from ballot_dask import BalancedKMeans, balanced_assign
from ballot_dask.initialization import initial_centers

SETTINGS = settings(max_examples=40, deadline=None, database=None, derandomize=True)


# --------------------------------------------------------------------------------------------
# the LP's optimal face, and data for the theorems' hypotheses
# --------------------------------------------------------------------------------------------


def assert_unique_integral_optimum(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The balanced transport LP ``min <C, F>`` (equal sizes) has one optimum, and it is
    integral; returns its labels. Uniqueness: a random linear functional takes a single value
    on the optimal face (its minimum and maximum there agree)."""
    n, k = X.shape[0], centers.shape[0]
    C = reference_cost(X, centers)
    opt, P = emd_optimum(C, np.full(k, n // k))
    np.testing.assert_allclose(P, np.round(P), atol=1e-12)  # integral
    A_eq, b_eq, _, _ = lp_matrices(n, k, np.zeros(k), np.zeros(k))
    cols = sp.kron(np.ones((1, n)), sp.eye(k), format="csr")
    face_A = sp.vstack([A_eq, cols, sp.csr_matrix(C.ravel())], format="csr")
    face_b = np.concatenate([b_eq, np.full(k, n // k), [opt]])
    r = np.random.default_rng(n * k).standard_normal(n * k)
    values = []
    for sign in (1.0, -1.0):
        out = linprog(sign * r, A_eq=face_A, b_eq=face_b, bounds=(0, None), method="highs")
        assert out.status == 0, out.message
        np.testing.assert_allclose(out.x, P.ravel(), atol=1e-6)
        values.append(float(r @ out.x))
    assert abs(values[0] - values[1]) <= 1e-6 * np.abs(r).sum()
    return np.argmax(P, axis=1)


def unit_ball_points(rng: np.random.Generator, m: int, d: int, on_sphere: float) -> np.ndarray:
    """``m`` points of the closed unit ball, a share ``on_sphere`` of them on its boundary (the
    worst case of Theorem 8's proof)."""
    points = _models.uniform_ball(rng, m, d)
    boundary = rng.random(m) < on_sphere
    points[boundary] /= np.linalg.norm(points[boundary], axis=1, keepdims=True)
    return points


def separated_centers(rng: np.random.Generator, k: int, d: int, delta: float) -> np.ndarray:
    """``k`` random centres in ``R^d`` scaled so that their least pairwise distance is
    ``delta``."""
    centers = rng.standard_normal((k, d))
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=2)
    return centers * delta / gaps[np.triu_indices(k, 1)].min()


# --------------------------------------------------------------------------------------------
# Theorem 5: integral and unique steps on generic data
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(2, 4),
    per_cluster=st.integers(2, 12),
    d=st.integers(1, 3),
)
def test_theorem19_centroids_of_a_balanced_partition_give_a_unique_integral_step(
    seed: int, k: int, per_cluster: int, d: int
) -> None:
    """Theorem 19: centres that are the centroids of any balanced partition of generic data."""
    rng = np.random.default_rng(seed)
    n = k * per_cluster
    X = rng.standard_normal((n, d))
    partition = rng.permutation(np.arange(n) % k)
    centers = np.array([X[partition == j].mean(axis=0) for j in range(k)])
    labels = assert_unique_integral_optimum(X, centers)
    np.testing.assert_array_equal(balanced_assign(X, centers).labels, labels)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 4), per_cluster=st.integers(2, 12))
def test_theorem5_generic_centres_give_a_unique_integral_step(
    seed: int, k: int, per_cluster: int
) -> None:
    """Theorem 5: centres that are generic points of ``R^d`` (not data points)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((k * per_cluster, 2))
    centers = 2.0 * rng.standard_normal((k, 2))
    labels = assert_unique_integral_optimum(X, centers)
    np.testing.assert_array_equal(balanced_assign(X, centers).labels, labels)


@pytest.mark.parametrize("init", ["k-means++", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem5_every_iteration_of_a_fit_is_unique_and_integral(seed: int, init: str) -> None:
    """Theorem 5: every step of a whole fit from data points (Theorem 18 for the first step,
    Theorem 19 for the others)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((48, 2)) + np.repeat(2.0 * rng.standard_normal((3, 2)), 16, axis=0)
    states: list = []
    km = BalancedKMeans(3, init=init, tol=0.0, random_state=seed).fit(X, callback=states.append)
    assert len(states) == km.n_iter_ >= 2
    for state in states:
        assert_unique_integral_optimum(X, state.previous)  # the centres the step assigned to
    labels = assert_unique_integral_optimum(X, km.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, labels)


# --------------------------------------------------------------------------------------------
# Theorem 17: the objective falls by the energy of each centroid move; finite termination
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(2, 6),
    per_cluster=st.integers(1, 60),
    d=st.integers(1, 4),
    kind=st.sampled_from(["gaussian", "duplicates", "grid"]),
    init=st.sampled_from(["k-means++", "random", "far"]),
)
def test_theorem17_objective_falls_by_the_centroid_move_until_termination(
    seed: int, k: int, per_cluster: int, d: int, kind: str, init: str
) -> None:
    """Theorem 17, from any start (data with ties included): with ``F_t`` the t-th plan and
    ``mu_t`` the centres it was computed for, the recorded objective is
    ``f_t = f(F_t, mu_{t+1})``, and the proof's telescoping step gives
    ``f_t - f_{t+1} >= (n / k) sum_j |mu_{t+2, j} - mu_{t+1, j}|^2`` (the update lowers the cost
    by the mass times the squared move, the next assignment does not raise it). The centres
    then stop moving; on generic data the fit terminates."""
    rng = np.random.default_rng(seed)
    n = k * per_cluster
    X = rng.standard_normal((n, d))
    if kind == "duplicates":
        X = X[np.arange(n) % max(1, n // 3)]
    elif kind == "grid":
        X = np.round(2.0 * X) / 2.0
    start: str | np.ndarray = init
    if init == "far":  # centres far from the data: a long first move
        start = 10.0 * rng.standard_normal((k, d))
    states: list = []
    km = BalancedKMeans(k, init=start, tol=0.0, max_iter=300, random_state=seed)
    km.fit(X, callback=states.append)
    history = np.asarray(km.objective_history_)
    # rounding: the recorded objective is a difference of costs of at most this size
    reach = float(np.abs(X).max() + np.abs(states[0].previous).max())
    slack = 1e-12 * n * d * reach**2
    for t in range(len(states) - 1):
        energy = (n // k) * states[t + 1].shift
        assert history[t] - history[t + 1] >= energy - slack, t
    np.testing.assert_array_equal(km.sizes_, np.full(k, per_cluster))
    # the centres stop moving (exactly so in exact arithmetic, where swapping identical
    # points between clusters leaves every centroid unchanged)
    assert states[-1].shift <= slack
    if kind == "gaussian":  # generic data: a unique optimum per step, so the loop ends
        assert km.converged_
        assert km.n_iter_ < 300
    # a fixed point: one more step from the final centres keeps the labels' cost
    again = balanced_assign(X, km.cluster_centers_)
    assert again.objective == pytest.approx(km.inertia_, rel=1e-9, abs=1e-12)


def test_theorem17_fit_with_duplicated_points_terminates() -> None:
    """Theorem 17 holds regardless of the data: BalLOT terminates. Three distinct values,
    each three or four times, two clusters."""
    X = np.random.default_rng(0).standard_normal((10, 1))[np.arange(10) % 3]
    km = BalancedKMeans(2, init="k-means++", tol=0.0, max_iter=300, random_state=0).fit(X)
    assert km.converged_
    assert km.n_iter_ < 300


# --------------------------------------------------------------------------------------------
# Theorem 8 and Lemma 20: one-step recovery from the basin
# --------------------------------------------------------------------------------------------


def facing_points(gamma: np.ndarray) -> np.ndarray:
    """For each ball, the ``k - 1`` points of its sphere facing the other centres (the points
    nearest to being misclustered), shape (k, k - 1, d)."""
    towards = gamma[None, :, :] - gamma[:, None, :]
    k = gamma.shape[0]
    off = ~np.eye(k, dtype=bool)
    unit = towards[off].reshape(k, k - 1, -1)
    return gamma[:, None, :] + unit / np.linalg.norm(unit, axis=2, keepdims=True)


def start_moves(gamma: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """Unit moves of the centres: random, or each towards / away from the next centre, or
    along the tangent of the cycle of centres (adversarial cases of Theorem 8's proof)."""
    k, d = gamma.shape
    if how == "random":
        return _models.uniform_sphere(rng, k, d)
    towards = np.roll(gamma, -1, axis=0) - gamma
    towards /= np.linalg.norm(towards, axis=1, keepdims=True)
    if how == "towards":
        return towards
    if how == "away":
        return -towards
    tangent = towards[:, ::-1] * np.array([1.0, -1.0] + [0.0] * (d - 2))  # rotated by 90 deg
    return tangent / np.linalg.norm(tangent, axis=1, keepdims=True)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(2, 4),
    d=st.integers(2, 3),
    delta=st.floats(2.05, 8.0),
    per_cluster=st.integers(0, 30),
    fraction=st.floats(0.0, 0.999),
    on_sphere=st.floats(0.0, 1.0),
    how=st.sampled_from(["random", "towards", "away", "tangent"]),
)
def test_theorem8_a_start_within_the_radius_recovers_in_one_step(
    seed: int,
    k: int,
    d: int,
    delta: float,
    per_cluster: int,
    fraction: float,
    on_sphere: float,
    how: str,
) -> None:
    """Theorem 8: unit-ball clusters whose centres are at least ``delta`` apart, a start with
    every ``|mu_j - gamma_j| < r(delta, k)``: the first step gives every point the label of
    its own ball (``r = delta/2 - 1``, or ``sqrt(delta^2/4 - 1)`` for k = 2). Each ball holds
    the points of its sphere facing the other centres, and random points."""
    rng = np.random.default_rng(seed)
    gamma = separated_centers(rng, k, d, delta)
    planted = np.repeat(np.arange(k), per_cluster)
    X = np.vstack(
        [
            gamma[planted] + unit_ball_points(rng, k * per_cluster, d, on_sphere),
            facing_points(gamma).reshape(-1, d),
        ]
    )
    planted = np.concatenate([planted, np.repeat(np.arange(k), k - 1)])
    radius = float(_theory.theorem8_radius(delta, k))
    assume(radius > 1e-3)
    start = gamma + fraction * radius * start_moves(gamma, how, rng)
    np.testing.assert_array_equal(balanced_assign(X, start).labels, planted)


def _lemma20_instance(delta: float, rho: float, extra: int, seed: int) -> tuple:
    """Two unit discs ``delta`` apart with the worst pair of points for a start whose direction
    ``u`` has cosine ``rho`` with the planted one: ``gamma_1 - u`` and ``gamma_2 + u``, whose
    projections on ``u`` are ``rho * delta - 2`` apart."""
    rng = np.random.default_rng(seed)
    gamma = _models.pair_centers(delta)
    u = np.array([rho, np.sqrt(1.0 - rho**2)])
    X = np.vstack(
        [
            gamma[0] - u,
            gamma[0] + _models.uniform_ball(rng, extra, 2),
            gamma[1] + u,
            gamma[1] + _models.uniform_ball(rng, extra, 2),
        ]
    )
    planted = np.repeat([0, 1], extra + 1)
    # centres moved by r along the normal of u so that mu_1 - mu_2 is parallel to u
    w = gamma[0] - gamma[1]
    move = ((w @ u) * u - w) / 2.0
    return X, planted, gamma + np.array([move, -move]), float(np.linalg.norm(move))


@pytest.mark.parametrize("delta", [2.2, 3.0, 5.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_theorem8_radius_for_two_clusters_is_sharp(delta: float, seed: int) -> None:
    """Theorem 8 (k = 2) and Lemma 20: starts just inside the radius ``sqrt(delta^2/4 - 1)``
    (``rho * delta`` just above 2) recover; the worst start just outside it (``rho * delta``
    just below 2) swaps the two extreme points."""
    radius = float(_theory.theorem8_radius(delta, 2))
    for factor, recovers in ((0.999, True), (1.001, False)):
        # a move of r turns the direction by asin(2r / delta)
        rho = np.cos(np.arcsin(min(2.0 * factor * radius / delta, 1.0)))
        X, planted, start, moved = _lemma20_instance(delta, rho, 20, seed)
        assert moved == pytest.approx(factor * radius, rel=1e-9)
        assert bool(_theory.lemma20_recovers(rho, delta)) is recovers
        labels = balanced_assign(X, start).labels
        assert np.array_equal(labels, planted) is recovers


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(2, 6),
    delta=st.floats(2.05, 6.0),
    excess=st.floats(1e-3, 1.0),
    per_cluster=st.integers(1, 40),
    shift=st.floats(-5.0, 5.0),
)
def test_theorem11a_cosine_above_two_over_delta_recovers_in_one_step(
    seed: int, d: int, delta: float, excess: float, per_cluster: int, shift: float
) -> None:
    """Lemma 20 / Theorem 11(a): k = 2, any start whose direction has cosine ``rho`` with the
    planted one and ``rho * delta > 2`` (wherever its midpoint is) recovers in one step."""
    rng = np.random.default_rng(seed)
    rho = min(2.0 / delta + excess * (1.0 - 2.0 / delta), 1.0)
    assume(rho * delta > 2.0 + 1e-9)
    gamma = _models.pair_centers(delta, d)
    planted = np.repeat([0, 1], per_cluster)
    X = gamma[planted] + unit_ball_points(rng, 2 * per_cluster, d, 0.5)
    normal = rng.standard_normal(d)
    normal[0] = 0.0
    normal /= np.linalg.norm(normal)
    u = rho * np.eye(d)[0] + np.sqrt(1.0 - rho**2) * normal
    start = shift * rng.standard_normal(d) + np.array([u, -u]) * rng.uniform(0.1, 3.0)
    np.testing.assert_array_equal(balanced_assign(X, start).labels, planted)


# --------------------------------------------------------------------------------------------
# Theorem 15(a): the diameter pair
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 4),
    per_cluster=st.integers(2, 40),
    excess=st.floats(1e-3, 3.0),
    on_sphere=st.floats(0.0, 1.0),
)
def test_theorem15a_diameter_pair_recovers_two_balls_in_one_step(
    seed: int, d: int, per_cluster: int, excess: float, on_sphere: float
) -> None:
    """Theorem 15(a): two clusters in unit balls centred at their own centroids, the centroids
    more than ``2 sqrt 2`` apart: started at a farthest pair of points (``init="diameter"``),
    the first step recovers the clusters."""
    rng = np.random.default_rng(seed)
    delta = _theory.THEOREM_15A_SEPARATION + excess
    clusters = []
    for _ in range(2):
        points = unit_ball_points(rng, per_cluster, d, on_sphere)
        points -= points.mean(axis=0)  # the ball's centre is the cluster's centroid
        points /= np.linalg.norm(points, axis=1).max()  # the farthest point on the sphere
        clusters.append(points)
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    X = np.vstack([clusters[0], delta * direction + clusters[1]])
    planted = np.repeat([0, 1], per_cluster)
    start = initial_centers(X, 2, "diameter", np.random.RandomState(0))
    labels = balanced_assign(X, start).labels
    assert np.array_equal(labels, planted) or np.array_equal(labels, 1 - planted)
    # every point is then nearer its own centroid: the clustering is also BalLOT's fixed point
    km = BalancedKMeans(2, init="diameter", tol=0.0).fit(X)
    assert np.array_equal(km.labels_, labels)
