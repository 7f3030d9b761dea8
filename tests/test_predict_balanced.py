"""Prediction of new data: the ``balanced`` rule (exact sizes for the batch, by the fit's own
exact solver), its sizes (equal shares or the fitted proportions), and the soft memberships of
``predict_proba`` (rows of the entropic plan).

The references are independent of the package where one exists: ``scipy``'s assignment solver
on columns repeated by the sizes, brute force over injective labelings, ``scipy.special.softmax``.
"""

from __future__ import annotations

import functools
import itertools
import sys

import dask.array as da
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.special import softmax
from sklearn.exceptions import NotFittedError

from ballot_dask import BalancedKMeans, balanced_assign
from ballot_dask.capacities import apportion
from ballot_dask.prediction import batch_capacities

# --------------------------------------------------------------------------------------------
# data and fits (cached: the tests never mutate a fitted estimator)
# --------------------------------------------------------------------------------------------


def _gauss(seed: int, n: int, d: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


@functools.cache
def _fit(k: int = 4, **params) -> BalancedKMeans:
    return BalancedKMeans(k, random_state=0, **params).fit(_gauss(0, 1200))


def _sqdist(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return cdist(X, centers, "sqeuclidean")


def _objective(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    return float(_sqdist(X, centers)[np.arange(len(X)), labels].sum())


def _optimum_with_sizes(C: np.ndarray, sizes: np.ndarray) -> float:
    """The transport optimum with these exact sizes: an assignment problem whose columns are
    the clusters repeated ``sizes_j`` times (scipy's Hungarian-type solver)."""
    columns = np.repeat(np.arange(C.shape[1]), sizes)
    rows, cols = linear_sum_assignment(C[:, columns])
    return float(C[rows, columns[cols]].sum())


# --------------------------------------------------------------------------------------------
# balanced: equal shares
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [400, 401, 403])
def test_balanced_predict_gives_equal_shares_floor_and_ceil(m):
    km = _fit()
    Y = _gauss(1, m) * 1.5  # a batch from another distribution: power would not balance it
    labels = km.predict(Y, method="balanced")
    counts = np.bincount(labels, minlength=4)
    q, r = divmod(m, 4)
    assert sorted(counts.tolist()) == [q] * (4 - r) + [q + 1] * r
    # the same labels and objective as the assignment step on the batch, equal sizes
    reference = balanced_assign(Y, km.cluster_centers_, method="exact")
    np.testing.assert_array_equal(labels, reference.labels)
    assert reference.certificate.optimal
    score = km.score(Y, method="balanced")
    assert score == pytest.approx(-reference.objective, rel=1e-12)
    assert score == pytest.approx(-_objective(Y, km.cluster_centers_, labels), rel=1e-12)


@pytest.mark.parametrize("m", [60, 62])
def test_balanced_predict_is_the_transport_optimum(m):
    # the LP chooses which clusters take the extra points: the optimum is the best of the
    # exact-size problems over those choices
    km = _fit(3)
    Y = _gauss(2, m)
    C = _sqdist(Y, km.cluster_centers_)
    q, r = divmod(m, 3)
    best = min(
        _optimum_with_sizes(C, np.array([q + (j in extra) for j in range(3)]))
        for extra in itertools.combinations(range(3), r)
    )
    assert -km.score(Y, method="balanced") == pytest.approx(best, rel=1e-12)


def test_balanced_predict_balances_where_power_does_not():
    km = _fit()
    Y = _gauss(3, 2000) + np.array([1.5, 0.0])  # shifted: the cells hold unequal shares
    power = np.bincount(km.predict(Y), minlength=4)
    assert power.max() - power.min() > 200  # measured: 1310 - 30
    assert np.bincount(km.predict(Y, method="balanced"), minlength=4).tolist() == [500] * 4
    # the balanced objective is at least the unconstrained (nearest) one
    assert km.score(Y, method="balanced") <= km.score(Y, method="nearest")


# --------------------------------------------------------------------------------------------
# balanced: fitted proportions
# --------------------------------------------------------------------------------------------


def test_fitted_proportions_scale_the_fitted_sizes_by_largest_remainder():
    km = _fit(sizes=(120, 240, 360, 480))
    np.testing.assert_array_equal(km.sizes_, [120, 240, 360, 480])
    Y = _gauss(4, 257)
    # quotas 25.7, 51.4, 77.1, 102.8: floors sum to 255, the two largest remainders (0.8, 0.7)
    # take the two points left
    expected = [26, 51, 77, 103]
    labels = km.predict(Y, method="balanced", proportions="fitted")
    assert np.bincount(labels, minlength=4).tolist() == expected
    reference = balanced_assign(Y, km.cluster_centers_, sizes=expected, method="exact")
    np.testing.assert_array_equal(labels, reference.labels)
    score = km.score(Y, method="balanced", proportions="fitted")
    assert score == pytest.approx(-reference.objective, rel=1e-12)
    C = _sqdist(Y, km.cluster_centers_)
    assert -score == pytest.approx(_optimum_with_sizes(C, np.array(expected)), rel=1e-12)


def test_proportions_may_be_weights():
    km = _fit()
    Y = _gauss(5, 100)
    labels = km.predict(Y, method="balanced", proportions=[0.1, 0.2, 0.3, 0.4])
    assert np.bincount(labels, minlength=4).tolist() == [10, 20, 30, 40]
    labels = km.predict(Y, method="balanced", proportions=[0, 1, 0, 1])
    assert np.bincount(labels, minlength=4).tolist() == [0, 50, 0, 50]


@pytest.mark.parametrize(
    ("weights", "n", "expected"),
    [
        ([500, 300, 200], 7, [4, 2, 1]),
        ([1, 1, 1], 2, [1, 1, 0]),  # equal remainders: the lowest index first
        ([1, 1, 1], 3, [1, 1, 1]),
        ([0, 5], 3, [0, 3]),
        ([1, 2], 3, [1, 2]),  # exact quotas stay exact (no 0.9999 rounding down)
        ([0.1, 0.2, 0.7], 10, [1, 2, 7]),  # 0.1 + 0.2 != 0.3 in floating point: still exact
        ([3, 3, 3, 1], 1, [1, 0, 0, 0]),
        ([7, 5], 0, [0, 0]),
    ],
)
def test_apportion_cases(weights, n, expected):
    assert apportion(weights, n).tolist() == expected


@pytest.mark.parametrize("seed", range(5))
def test_apportion_sums_to_n_within_floor_and_ceil_of_the_quotas(seed):
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 1000, size=rng.integers(1, 20))
    weights[0] += 1  # a positive sum
    for n in (1, 2, 17, 1000, 123_457):
        sizes = apportion(weights, n)
        assert sizes.sum() == n and sizes.dtype == np.int64
        quota = weights * n / weights.sum()
        assert np.all(sizes >= np.floor(quota) - 1e-9) and np.all(sizes <= np.ceil(quota) + 1e-9)


# --------------------------------------------------------------------------------------------
# balanced: the training constraints never apply to a batch
# --------------------------------------------------------------------------------------------

CONSTRAINED = [
    {"size_min": 500},
    {"size_max": 700},
    {"size_min": [100, 900], "size_max": [300, 1100]},
    {"sizes": (250, 950)},
]


@pytest.mark.parametrize("m", [1, 2, 3, 7])
@pytest.mark.parametrize("params", CONSTRAINED, ids=lambda p: ",".join(p))
def test_predict_never_fails_after_a_constrained_fit(params, m):
    km = _fit(2, **{key: tuple(v) if isinstance(v, list) else v for key, v in params.items()})
    Y = _gauss(6, m)
    counts = np.bincount(km.predict(Y, method="balanced"), minlength=2)
    assert sorted(counts.tolist()) == [m // 2, m - m // 2]
    fitted = km.predict(Y, method="balanced", proportions="fitted")
    assert np.bincount(fitted, minlength=2).tolist() == apportion(km.sizes_, m).tolist()
    for method in ("power", "nearest"):
        assert km.predict(Y, method=method).shape == (m,)
        assert np.isfinite(km.score(Y, method=method))


def test_batch_smaller_than_k_leaves_clusters_empty():
    km = _fit(5)
    Y = _gauss(7, 3)
    labels = km.predict(Y, method="balanced")
    assert len(set(labels.tolist())) == 3  # at most one point per cluster
    C = _sqdist(Y, km.cluster_centers_)
    best = min(C[[0, 1, 2], list(p)].sum() for p in itertools.permutations(range(5), 3))
    assert -km.score(Y, method="balanced") == pytest.approx(best, rel=1e-12)
    # one point, fitted proportions: the cluster with the largest remainder takes it
    one = km.predict(Y[:1], method="balanced", proportions="fitted")
    assert one.tolist() == [int(np.argmax(apportion(km.sizes_, 1)))]


def test_balanced_predict_runs_the_package_solver_not_pot(monkeypatch):
    from ballot_dask.solvers import SOLVERS

    km = _fit()
    calls = []
    exact = SOLVERS["exact"]

    def spy(*args, **kwargs):
        calls.append(args[1])  # the capacities
        return exact(*args, **kwargs)

    monkeypatch.setitem(SOLVERS, "exact", spy)
    monkeypatch.setitem(sys.modules, "ot", None)  # importing POT now fails
    labels = km.predict(_gauss(8, 202), method="balanced")
    assert sorted(np.bincount(labels).tolist()) == [50, 50, 51, 51]
    assert len(calls) == 1
    assert calls[0].lower.tolist() == [50] * 4 and calls[0].upper.tolist() == [51] * 4


def test_batch_capacities():
    cap = batch_capacities(10, 4)
    assert (cap.lower.tolist(), cap.upper.tolist()) == ([2] * 4, [3] * 4)
    cap = batch_capacities(3, 5)
    assert (cap.lower.tolist(), cap.upper.tolist()) == ([0] * 5, [1] * 5)
    cap = batch_capacities(7, 3, "fitted", np.array([500, 300, 200]))
    assert cap.lower.tolist() == cap.upper.tolist() == [4, 2, 1]


# --------------------------------------------------------------------------------------------
# Dask input: the same labels and objective as in memory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("proportions", ["equal", "fitted"])
def test_dask_balanced_predict_equals_numpy(scheduler, proportions):
    km = _fit(sizes=(120, 240, 360, 480))
    Y = _gauss(9, 1001)
    Yd = da.from_array(Y, chunks=(300, 2))
    labels = km.predict(Yd, method="balanced", proportions=proportions)
    assert isinstance(labels, da.Array) and labels.chunks == (Yd.chunks[0],)
    expected = km.predict(Y, method="balanced", proportions=proportions)
    np.testing.assert_array_equal(labels.compute(), expected)
    numpy_score = km.score(Y, method="balanced", proportions=proportions)
    dask_score = km.score(Yd, method="balanced", proportions=proportions)
    assert dask_score == pytest.approx(numpy_score, rel=1e-12)


def test_dask_batch_smaller_than_k(threads):
    km = _fit(5)
    Y = _gauss(7, 3)
    labels = km.predict(da.from_array(Y, chunks=(2, 2)), method="balanced")
    np.testing.assert_array_equal(labels.compute(), km.predict(Y, method="balanced"))


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Balanced", "exact", "", None])
def test_unknown_method_names_it(method):
    km = _fit()
    for call in (km.predict, km.score):
        with pytest.raises(ValueError, match=r"method must be one of \['power', 'nearest', 'bal"):
            call(_gauss(1, 10), method=method)


@pytest.mark.parametrize(
    ("proportions", "match"),
    [
        ("Fitted", r"proportions must be one of \['equal', 'fitted'\], got 'Fitted'"),
        ("", "proportions must be one of"),
        ([1, 2, 3], r"proportions must be .* one weight per cluster \(shape \(4,\)\)"),
        ([[1, 1, 1, 1]], r"one weight per cluster"),
        ([1, -1, 1, 1], "proportions must be finite and non-negative with a positive sum"),
        ([0, 0, 0, 0], "proportions must be finite and non-negative with a positive sum"),
        ([1, np.nan, 1, 1], "proportions must be finite"),
        (["a", "b", "c", "d"], "proportions must be 'equal', 'fitted' or 4"),
    ],
)
def test_bad_proportions_name_them(proportions, match):
    km = _fit()
    with pytest.raises(ValueError, match=match):
        km.predict(_gauss(1, 10), method="balanced", proportions=proportions)
    with pytest.raises(ValueError, match=match):
        km.score(_gauss(1, 10), method="balanced", proportions=proportions)


@pytest.mark.parametrize("method", ["power", "nearest"])
def test_proportions_only_with_the_balanced_rule(method):
    km = _fit()
    with pytest.raises(ValueError, match=f"proportions applies to method='balanced' only, not "
                                         f"method='{method}'"):  # fmt: skip
        km.predict(_gauss(1, 10), method=method, proportions="fitted")
    with pytest.raises(ValueError, match="proportions applies to method='balanced' only"):
        km.score(_gauss(1, 10), method=method, proportions=[1, 1, 1, 1])


def test_empty_batch_is_refused(threads):
    km = _fit()
    for X in (np.empty((0, 2)), da.zeros((0, 2), chunks=(1, 2))):
        with pytest.raises(ValueError, match="X is empty: method='balanced' needs at least one"):
            km.predict(X, method="balanced")
        with pytest.raises(ValueError, match="X is empty"):
            km.score(X, method="balanced")


def test_balanced_checks_the_fit_and_the_features():
    with pytest.raises(NotFittedError):
        BalancedKMeans(2).predict(_gauss(0, 10), method="balanced")
    with pytest.raises(NotFittedError):
        BalancedKMeans(2).predict_proba(_gauss(0, 10))
    km = _fit()
    with pytest.raises(ValueError, match="X has 3 features, but BalancedKMeans is expecting 2"):
        km.predict(_gauss(1, 10, 3), method="balanced")
    with pytest.raises(ValueError, match="X has 3 features, but BalancedKMeans is expecting 2"):
        km.predict_proba(_gauss(1, 10, 3))
    Y = _gauss(1, 10)
    Y[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        km.predict(Y, method="balanced")


# --------------------------------------------------------------------------------------------
# predict_proba: soft memberships
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "temperature"), [("exact", None), ("exact", 0.3),
                                                     ("sinkhorn", None)])  # fmt: skip
def test_memberships_are_the_softmax_of_reduced_costs(method, temperature):
    km = _fit(method=method)
    Y = _gauss(10, 3000)
    P = km.predict_proba(Y, temperature=temperature)
    assert P.shape == (3000, 4) and P.dtype == np.float64
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(P >= 0) and np.all(P <= 1)
    T = km.temperature_ if temperature is None else temperature
    expected = softmax((km.potentials_ - _sqdist(Y, km.cluster_centers_)) / T, axis=1)
    np.testing.assert_allclose(P, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(P.argmax(axis=1), km.predict(Y, method="power"))


def test_default_temperature_of_a_sinkhorn_fit_is_its_regularisation():
    km = _fit(method="sinkhorn")
    assert km.temperature_ == km.reg_ > 0
    Y = _gauss(11, 500)
    np.testing.assert_array_equal(km.predict_proba(Y), km.predict_proba(Y, temperature=km.reg_))


def test_default_temperature_of_an_exact_fit_is_reg_times_the_training_mean_cost():
    km = _fit(reg=0.05)
    mean_cost = _sqdist(_gauss(0, 1200), km.cluster_centers_).mean()
    assert km.temperature_ == pytest.approx(0.05 * mean_cost, rel=1e-12)
    # the regularisation a Sinkhorn fit takes from the same data (at its own centers)
    sinkhorn = _fit(method="sinkhorn", reg=0.05)
    assert km.temperature_ == pytest.approx(sinkhorn.temperature_, rel=0.01)


def test_memberships_do_not_depend_on_the_batch():
    km = _fit()
    Y = _gauss(12, 400)
    whole = km.predict_proba(Y)
    np.testing.assert_array_equal(km.predict_proba(Y[:7]), whole[:7])
    np.testing.assert_array_equal(km.predict_proba(Y[::-1]), whole[::-1])


@pytest.mark.parametrize("temperature", [1e-30, 1e-300, 5e-324])
def test_tiny_temperature_gives_hard_labels_without_nan(temperature):
    km = _fit()
    Y = _gauss(13, 2000)
    with np.errstate(all="raise"):  # no warning is raised either
        P = km.predict_proba(Y, temperature=temperature)
    assert not np.isnan(P).any()
    one_hot = np.eye(4)[km.predict(Y)]
    np.testing.assert_array_equal(P, one_hot)


def test_huge_temperature_gives_uniform_memberships():
    km = _fit()
    P = km.predict_proba(_gauss(14, 100), temperature=1e300)
    np.testing.assert_allclose(P, 0.25, rtol=1e-15)


def test_exact_ties_split_evenly():
    km = BalancedKMeans(2, init=[[-1.0], [1.0]]).fit([[-2.0], [-1.0], [1.0], [2.0]])
    assert km.potentials_[0] == pytest.approx(km.potentials_[1], abs=1e-12)
    P = km.predict_proba([[0.0]], temperature=1e-300)
    np.testing.assert_allclose(P, [[0.5, 0.5]], atol=1e-12)


@pytest.mark.parametrize(
    ("temperature", "error", "match"),
    [
        (0.0, ValueError, "temperature must be finite and > 0, got 0.0"),
        (-1.0, ValueError, "temperature must be finite and > 0"),
        (np.inf, ValueError, "temperature must be finite and > 0"),
        (np.nan, ValueError, "temperature must be finite and > 0"),
        ("hot", TypeError, "temperature must be a real number"),
        (True, TypeError, "temperature must be a real number"),
    ],
)
def test_bad_temperature_names_it(temperature, error, match):
    with pytest.raises(error, match=match):
        _fit().predict_proba(_gauss(1, 10), temperature=temperature)


def test_memberships_of_float32_input_are_float64():
    km = BalancedKMeans(3, random_state=0).fit(_gauss(15, 300).astype(np.float32))
    P = km.predict_proba(_gauss(16, 50).astype(np.float32))
    assert P.dtype == np.float64
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_dask_memberships_equal_numpy(scheduler):
    km = _fit()
    Y = _gauss(17, 1001)
    Yd = da.from_array(Y, chunks=(300, 2))
    P = km.predict_proba(Yd)
    assert isinstance(P, da.Array) and P.chunks == (Yd.chunks[0], (4,))
    np.testing.assert_array_equal(P.compute(), km.predict_proba(Y))


def test_a_model_without_temperature_asks_for_one():
    km = BalancedKMeans(2)
    km.cluster_centers_ = np.array([[0.0], [1.0]])
    km.potentials_ = np.zeros(2)
    km.n_features_in_ = 1
    with pytest.raises(ValueError, match="temperature: the model has no temperature_"):
        km.predict_proba([[0.5]])
    np.testing.assert_allclose(km.predict_proba([[0.5]], temperature=1.0), [[0.5, 0.5]])
