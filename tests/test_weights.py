"""Sample weights: the weighted exact step against LP references, integer weights against
repeated rows, NumPy against Dask, and every bad input's error."""

from __future__ import annotations

import re

import dask.array as da
import numpy as np
import ot
import pytest
from scipy.optimize import linprog

from ballot_dask import BalancedKMeans, balanced_assign
from ballot_dask.solvers.mass_paths import DONE, mass_shortest_paths
from ballot_dask.weights import check_sample_weight, mass_capacities


def _lp(C: np.ndarray, w: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """The weighted transport LP with interval capacities, by HiGHS (the reference)."""
    m, k = C.shape
    rows = np.zeros((m, m * k))
    for i in range(m):
        rows[i, i * k : (i + 1) * k] = 1.0
    cols = np.zeros((2 * k, m * k))
    for j in range(k):
        cols[j, j::k] = 1.0
        cols[k + j, j::k] = -1.0
    res = linprog(
        C.ravel(),
        A_ub=cols,
        b_ub=np.r_[upper, -lower],
        A_eq=rows,
        b_eq=w,
        bounds=(0, None),
        method="highs",
    )
    assert res.status == 0
    return float(res.fun)


def _costs(X: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return ((X[:, None, :] - mu[None]) ** 2).sum(-1)


@pytest.mark.parametrize("seed", range(40))
def test_mass_paths_reach_the_lp_optimum(seed):
    """The mass-moving shortest paths alone (no sample, no band: every row, from the nearest
    labels) reach the LP optimum, with equal, interval and whole-number capacities, fractional,
    whole and zero weights."""
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(2, 50)), int(rng.integers(1, 7))
    X, mu = rng.normal(size=(m, 2)), rng.normal(size=(k, 2))
    C = _costs(X, mu)
    if seed % 3 == 0:
        w = rng.integers(0, 4, size=m).astype(float)
        w[0] += 1.0
    else:
        w = rng.random(m) + 0.01
    total = w.sum()
    if seed % 2 == 0:
        lower = upper = np.full(k, total / k)
    else:
        lower, upper = np.zeros(k), np.full(k, 1.5 * total / k + 0.1)
    result = mass_shortest_paths(
        C, w, C.argmin(axis=1), lower, upper, np.zeros(k), tol=1e-12 * total
    )
    assert result.status == DONE
    objective = float((result.piece_mass * C[result.piece_rows, result.piece_labels]).sum())
    reference = _lp(C, w, lower, upper)
    assert objective == pytest.approx(reference, rel=1e-9, abs=1e-12)
    mass = np.bincount(result.piece_labels, result.piece_mass, minlength=k)
    assert np.all(mass >= lower - 1e-9 * total) and np.all(mass <= upper + 1e-9 * total)
    # every row's pieces carry exactly its weight, one piece per cluster at most
    carried = np.bincount(result.piece_rows, result.piece_mass, minlength=m)
    np.testing.assert_allclose(carried, np.where(w > 0, w, 0.0), rtol=1e-12, atol=1e-12)
    pairs = result.piece_rows * k + result.piece_labels
    assert np.unique(pairs).size == pairs.size


def test_mass_paths_reach_the_lp_optimum_over_many_clusters():
    """Long searches (40 clusters, hundreds of augmentations from the nearest labels): the
    objective is the LP's."""
    rng = np.random.default_rng(7)
    m, k = 600, 40
    X, mu = rng.normal(size=(m, 2)), rng.normal(size=(k, 2))
    C = _costs(X, mu)
    w = rng.random(m) + 0.01
    lower = upper = np.full(k, w.sum() / k)
    result = mass_shortest_paths(
        C, w, C.argmin(axis=1), lower, upper, np.zeros(k), tol=1e-12 * w.sum()
    )
    assert result.status == DONE and result.augmentations > 100
    objective = float((result.piece_mass * C[result.piece_rows, result.piece_labels]).sum())
    assert objective == pytest.approx(_lp(C, w, lower, upper), rel=1e-9)


def test_mass_paths_start_from_every_arcs_cheapest_move():
    """Before any augmentation the slack matrix holds, for every pair of clusters, the
    cheapest move of a weighted row between them (``C_ib - C_ia`` over the rows labelled
    ``a``): a weightless row is no piece, a cluster without rows has no arc out."""
    rng = np.random.default_rng(11)
    m, k = 400, 9
    C = _costs(rng.normal(size=(m, 3)), rng.normal(size=(k, 3)))
    C[200:260] = C[100:160]  # duplicated rows: ties, the first one kept
    w = rng.integers(0, 3, size=m).astype(float)
    labels = C.argmin(axis=1)
    labels[labels == 4] = 5  # cluster 4 empty
    lower = upper = np.full(k, w.sum() / k)
    result = mass_shortest_paths(C, w, labels, lower, upper, np.zeros(k), max_augment=0)
    expected = np.full((k, k), np.inf)
    for a in range(k):
        rows = (labels == a) & (w > 0)
        for b in range(k):
            if b != a and rows.any():
                expected[a, b] = (C[rows, b] - C[rows, a]).min()
    np.testing.assert_array_equal(result.slack, expected)
    assert np.isinf(result.slack[4]).all() and result.augmentations == 0


def _blobs(n: int, k: int, d: int, seed: int, sep: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * sep
    return rng.normal(size=(n, d)) + means[rng.integers(0, k, n)]


@pytest.mark.parametrize(("n", "block_rows"), [(3000, None), (70000, 9000)])
def test_integer_weights_equal_repeated_rows(n, block_rows):
    """With whole-number weights the step's optimum is the repeated rows' (objective to
    1e-9), its sizes theirs, and every share a whole number.  70000 rows take the sampled
    start and the band (more than four times the 16384-row sample)."""
    k = 7
    X = _blobs(n, k, 3, 1)
    rng = np.random.default_rng(2)
    mu = X[rng.choice(n, k, replace=False)]
    w = rng.integers(1, 4, size=n)
    res = balanced_assign(X, mu, sample_weight=w, block_rows=block_rows)
    ref = balanced_assign(np.repeat(X, w, axis=0), mu)
    assert res.certificate.optimal and res.certificate.duality_gap <= 1e-9 * res.objective
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert sorted(res.sizes.tolist()) == sorted(ref.sizes.astype(float).tolist())
    assert np.all(res.split_shares == np.round(res.split_shares))
    if n > 4 * 16384:
        assert res.passes["sample"] >= 1 and res.band_size < n


def test_fractional_weights_against_emd():
    """Fractional weights: the objective of ``ot.emd`` with those marginals, at most k - 1
    split rows whose shares sum to their weight, labels by largest share, sizes exact."""
    n, k = 2500, 5
    X = _blobs(n, k, 2, 4, sep=1.0)
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(k, 2))
    w = rng.random(n) * 2 + 0.05
    res = balanced_assign(X, mu, sample_weight=w)
    C = _costs(X, mu)
    reference = ot.emd2(w, np.full(k, w.sum() / k), C, numItermax=10**7)
    assert res.certificate.optimal
    assert res.objective == pytest.approx(reference, rel=1e-9)
    np.testing.assert_allclose(res.sizes, w.sum() / k, rtol=1e-12)
    assert res.split_rows.size <= k - 1
    np.testing.assert_allclose(res.split_shares.sum(axis=1), w[res.split_rows], rtol=1e-12)
    np.testing.assert_array_equal(res.labels[res.split_rows], res.split_shares.argmax(axis=1))
    # every other row sits wholly in its cluster: the plan's mass per cluster is the sizes
    whole = np.setdiff1d(np.arange(n), res.split_rows)
    mass = np.bincount(res.labels[whole], w[whole], minlength=k) + res.split_shares.sum(0)
    np.testing.assert_allclose(mass, res.sizes, rtol=1e-12)


def test_weighted_size_bounds_against_lp():
    """``size_min``/``size_max`` in units of weight: the LP optimum with those intervals."""
    n, k = 300, 4
    X = _blobs(n, k, 2, 6)
    rng = np.random.default_rng(7)
    mu = rng.normal(size=(k, 2))
    w = rng.random(n) + 0.5
    lo, hi = np.full(k, 0.15 * w.sum()), np.full(k, 0.4 * w.sum())
    res = balanced_assign(X, mu, sample_weight=w, size_min=lo, size_max=hi)
    assert res.certificate.optimal
    assert res.objective == pytest.approx(_lp(_costs(X, mu), w, lo, hi), rel=1e-9)
    assert np.all(res.sizes >= lo - 1e-9) and np.all(res.sizes <= hi + 1e-9)


def test_zero_weights_are_in_no_cluster():
    """Rows of weight 0 change nothing: the objective of the other rows alone."""
    n, k = 2000, 4
    X = _blobs(n, k, 2, 8)
    rng = np.random.default_rng(9)
    mu = rng.normal(size=(k, 2))
    w = rng.integers(0, 3, size=n).astype(float)
    keep = w > 0
    res = balanced_assign(X, mu, sample_weight=w)
    ref = balanced_assign(X[keep], mu, sample_weight=w[keep])
    assert res.certificate.optimal
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)


def test_dask_equals_numpy(scheduler):
    """The Dask engine (weights chunked unlike X) gives the NumPy engine's step and fit."""
    n, k = 12000, 6
    X = _blobs(n, k, 3, 10)
    rng = np.random.default_rng(11)
    w = rng.random(n) * 3 + 0.1
    mu = X[rng.choice(n, k, replace=False)]
    Xd, wd = da.from_array(X, chunks=2500), da.from_array(w, chunks=4000)
    a, b = balanced_assign(X, mu, sample_weight=w), balanced_assign(Xd, mu, sample_weight=wd)
    assert b.certificate.optimal
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    np.testing.assert_array_equal(np.asarray(b.labels), a.labels)
    np.testing.assert_array_equal(b.split_rows, a.split_rows)
    fa = BalancedKMeans(k, init=mu, max_iter=8).fit(X, sample_weight=w)
    fb = BalancedKMeans(k, init=mu, max_iter=8).fit(Xd, sample_weight=wd)
    np.testing.assert_allclose(fb.cluster_centers_, fa.cluster_centers_, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(fb.labels_), fa.labels_)
    assert fb.inertia_ == pytest.approx(fa.inertia_, rel=1e-12)


def test_streamed_from_zarr_equals_numpy(tmp_path, scheduler):
    """X and its weights streamed from a Zarr store (nothing persisted): the NumPy fit."""
    import dask
    import zarr

    n, k = 9000, 4
    X = _blobs(n, k, 3, 23).astype(np.float32)
    w = np.random.default_rng(24).random(n) + 0.5
    group = zarr.open_group(tmp_path / "data.zarr", mode="w")
    group.create_array("X", data=X, chunks=(2000, 3))
    group.create_array("w", data=w, chunks=(2000,))
    init = X[:k].astype(np.float64)
    ref = BalancedKMeans(k, init=init, max_iter=5).fit(X, sample_weight=w)
    with dask.config.set({"ballot.persist": False}):
        fit = BalancedKMeans(k, init=init, max_iter=5).fit(
            da.from_zarr(tmp_path / "data.zarr" / "X"),
            sample_weight=da.from_zarr(tmp_path / "data.zarr" / "w"),
        )
    np.testing.assert_allclose(fit.cluster_centers_, ref.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(fit.labels_), ref.labels_)
    assert fit.certificate_.optimal


@pytest.mark.parametrize("dask_input", [False, True])
def test_fit_with_integer_weights_equals_fit_on_repeated_rows(dask_input):
    """A weighted fit is the repeated rows' fit: same objective (1e-9), centers (1e-8)."""
    n, k = 6000, 5
    X = _blobs(n, k, 3, 12)
    rng = np.random.default_rng(13)
    w = rng.integers(1, 4, size=n)
    init = X[rng.choice(n, k, replace=False)]
    data, weights = X, w
    if dask_input:
        data, weights = da.from_array(X, chunks=1700), da.from_array(w, chunks=2000)
    fit = BalancedKMeans(k, init=init, max_iter=40).fit(data, sample_weight=weights)
    ref = BalancedKMeans(k, init=init, max_iter=40).fit(np.repeat(X, w, axis=0))
    assert fit.certificate_.optimal
    assert fit.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    np.testing.assert_allclose(fit.cluster_centers_, ref.cluster_centers_, atol=1e-8)
    assert sorted(fit.sizes_.tolist()) == sorted(ref.sizes_.astype(float).tolist())
    labels = np.asarray(fit.labels_)
    # the largest shares, weighted, differ from the sizes only by the split rows' other shares
    assert np.abs(np.bincount(labels, w, minlength=k) - fit.sizes_).sum() <= 2 * w.max() * k


def test_weighted_fit_predict_and_score():
    """``fit_predict`` takes the weights; ``score`` weighs each row's cost."""
    n, k = 4000, 4
    X = _blobs(n, k, 2, 14)
    w = np.random.default_rng(15).random(n) + 0.2
    km = BalancedKMeans(k, random_state=0)
    labels = km.fit_predict(X, sample_weight=w)
    np.testing.assert_array_equal(labels, km.labels_)
    assert km.split_rows_ is not None and km.split_rows_.size <= k - 1
    costs = _costs(X, km.cluster_centers_)
    chosen = costs[np.arange(n), km.predict(X, method="nearest")]
    assert km.score(X, sample_weight=w, method="nearest") == pytest.approx(-(chosen * w).sum())
    balanced = km.score(X, sample_weight=w, method="balanced")
    same = balanced_assign(X, km.cluster_centers_.astype(np.float64), sample_weight=w)
    assert balanced == pytest.approx(-same.objective, rel=1e-12)
    # a constant weight scales the objective
    assert km.score(X, sample_weight=2.0) == pytest.approx(2 * km.score(X), rel=1e-12)


@pytest.mark.parametrize("dask_input", [False, True])
def test_sparse_equals_dense(dask_input, threads):
    """CSR input with weights: the dense input's step and fit (labels, centers to 1e-8)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(21)
    n, k = 5000, 4
    dense = sp.random(n, 40, density=0.3, format="csr", random_state=22, dtype=np.float64)
    assert np.all(np.diff(dense.indptr) > 0)  # no empty rows: no tied cost rows
    X = dense.toarray()
    w = rng.random(n) + 0.3
    data = dense
    if dask_input:
        data = da.from_array(dense, chunks=(1300, -1), asarray=False)
    init = X[rng.choice(n, k, replace=False)]
    a = BalancedKMeans(k, init=init, max_iter=6).fit(X, sample_weight=w)
    b = BalancedKMeans(k, init=init, max_iter=6).fit(data, sample_weight=w)
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(b.labels_), a.labels_)
    assert b.certificate_.optimal


def test_unit_weights_change_nothing():
    n, k = 3000, 4
    X = _blobs(n, k, 2, 16)
    a = BalancedKMeans(k, random_state=1).fit(X)
    b = BalancedKMeans(k, random_state=1).fit(X, sample_weight=np.ones(n))
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-12)
    np.testing.assert_array_equal(b.labels_, a.labels_)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (lambda n: -np.ones(n), ValueError, "must be non-negative"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], ValueError, "must be finite"),
        (lambda n: np.r_[np.inf, np.ones(n - 1)], ValueError, "finite"),
        (lambda n: np.ones(n - 1), ValueError, r"one weight per row of X, shape \(50,\)"),
        (lambda n: np.ones((n, 1)), ValueError, "one weight per row"),
        (lambda n: np.zeros(n), ValueError, "zero everywhere"),
        (lambda n: np.array(["a"] * n), TypeError, "must hold numbers"),
        (lambda n: np.ones(n, dtype=bool), TypeError, "must hold numbers"),
        (lambda n: -1.0, ValueError, "non-negative"),
    ],
)
@pytest.mark.parametrize("dask_input", [False, True])
def test_bad_weights(weights, error, match, dask_input):
    X = _blobs(50, 2, 2, 17)
    w = weights(50)
    if dask_input and isinstance(w, np.ndarray) and w.dtype.kind in "fb":
        w = da.from_array(w, chunks=20)
    with pytest.raises(error, match=match):
        BalancedKMeans(2).fit(da.from_array(X, chunks=20) if dask_input else X, sample_weight=w)


def test_weighted_request_errors():
    X = _blobs(60, 3, 2, 18)
    w = np.full(60, 0.5)
    with pytest.raises(ValueError, match=r"finite: row 3 is nan \(1 such rows\)"):
        balanced_assign(X, X[:3], sample_weight=np.r_[w[:3], np.nan, w[4:]])
    with pytest.raises(ValueError, match=r"non-negative: row 1 is -2.0 \(2 such rows\)"):
        balanced_assign(X, X[:3], sample_weight=np.r_[w[:1], -2.0, -1.0, w[3:]])
    with pytest.raises(ValueError, match="method='exact' only"):
        BalancedKMeans(3, method="sinkhorn").fit(X, sample_weight=w)
    with pytest.raises(ValueError, match="method='exact' only"):
        balanced_assign(X, X[:3], sample_weight=w, method="emd")
    with pytest.raises(ValueError, match=r"k-means\|\| does not take sample_weight|k-means\|\|"):
        BalancedKMeans(3, init="k-means||").fit(X, sample_weight=w)
    with pytest.raises(ValueError, match="sum to the total weight"):
        balanced_assign(X, X[:3], sample_weight=w, sizes=[20, 20, 20])
    with pytest.raises(ValueError, match="size_min is infeasible"):
        balanced_assign(X, X[:3], sample_weight=w, size_min=11)


def test_mass_capacities_defaults():
    X = np.zeros((10, 1))
    whole = check_sample_weight(np.arange(1, 11), X)
    cap = mass_capacities(whole, 4)  # 55 units: 13 or 14 each, as 55 repeated rows
    assert cap.lower.tolist() == [13.0] * 4 and cap.upper.tolist() == [14.0] * 4
    half = check_sample_weight(np.full(10, 0.5), X)
    cap = mass_capacities(half, 4)
    assert cap.lower.tolist() == [1.25] * 4 and cap.upper.tolist() == [1.25] * 4


# --------------------------------------------------------------------------------------------
# the CLI's --weights
# --------------------------------------------------------------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from ballot_dask.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def weighted_store(tmp_path):
    import zarr

    X = _blobs(3000, 3, 2, 19)
    w = np.random.default_rng(20).integers(1, 4, size=3000).astype(np.float64)
    group = zarr.open_group(tmp_path / "in.zarr", mode="w")
    group.create_array("X", data=X, chunks=(1000, 2))
    group.create_array("w", data=w, chunks=(700,))
    np.save(tmp_path / "w.npy", w)
    return tmp_path, X, w


@pytest.mark.parametrize("spec", ["w", "w.npy"])
def test_cli_fit_with_weights(weighted_store, spec, threads):
    """``--weights`` (an array of the input group, or a .npy): the fit is the estimator's
    with those weights, its sizes masses, its split rows written."""
    import zarr

    root, X, w = weighted_store
    weights = root / spec if spec.endswith(".npy") else spec
    out = root / "fit.zarr"
    result = _cli("fit", root / "in.zarr", "--k", 3, "-o", out, "--weights", weights, "-q")
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    ref = BalancedKMeans(3, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_allclose(group["centers"][:], ref.cluster_centers_, atol=1e-8)
    np.testing.assert_array_equal(group["sizes"][:], ref.sizes_)
    assert group["sizes"][:].sum() == w.sum()
    np.testing.assert_array_equal(group["split_rows"][:], ref.split_rows_)
    assert group.attrs["params"]["weights"] == (str(weights) if spec.endswith(".npy") else "w")
    assert group.attrs["certificate"]["optimal"] is True


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda w: -w, "--weights bad.npy: sample_weight must be non-negative"),
        (lambda w: np.r_[np.nan, w[1:]], "--weights bad.npy: sample_weight must be finite"),
        (lambda w: w[:10], r"--weights bad.npy: one weight per point is needed, shape \(3000,\)"),
        (lambda w: 0 * w, "--weights bad.npy: sample_weight is zero everywhere"),
    ],
)
def test_cli_bad_weights(weighted_store, make, message, threads, monkeypatch):
    root, _, w = weighted_store
    np.save(root / "bad.npy", make(w))
    monkeypatch.chdir(root)
    result = _cli("fit", "in.zarr", "--k", 3, "-o", "fit.zarr", "--weights", "bad.npy")
    assert result.exit_code != 0
    assert result.output.count("\n") == 1, result.output  # one line
    assert re.search(message, result.output), result.output
    assert not (root / "fit.zarr").exists()


def test_cli_weights_errors(weighted_store, threads, monkeypatch):
    root, _, _ = weighted_store
    monkeypatch.chdir(root)
    result = _cli("fit", "in.zarr", "--k", 3, "-o", "fit.zarr", "--weights", "nope")
    assert (
        "--weights nope: input in.zarr: the Zarr group has no array 'nope' (its arrays: X, w)"
        in result.output
    )
    result = _cli(
        "fit", "in.zarr", "--k", 3, "-o", "f.zarr", "--weights", "w", "--method", "sinkhorn"
    )
    assert "--weights needs --method exact" in result.output
    result = _cli("fit", "in.zarr", "--k", 3, "-o", "f.zarr", "--weights", "missing.npy")
    assert "--weights missing.npy: no such file" in result.output


# --------------------------------------------------------------------------------------------
# certify(..., sample_weight=...)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dask_input", [False, True])
def test_certify_weighted_labels(dask_input, threads):
    """A weighted optimum's labels (weights 0 and 1 and whole bounds: no split point) are
    certified; two swapped points (of equal weight) are not; a point of weight 0 may take any
    label."""
    from ballot_dask import certify

    n, k = 3000, 4
    X = _blobs(n, k, 3, 25)
    rng = np.random.default_rng(26)
    mu = rng.normal(size=(k, 3))
    w = (rng.random(n) < 0.8).astype(float)
    lo, hi = np.floor(0.2 * w.sum()), np.ceil(0.3 * w.sum())
    res = balanced_assign(X, mu, sample_weight=w, size_min=lo, size_max=hi)
    assert res.split_rows.size == 0
    data = da.from_array(X, chunks=700) if dask_input else X
    weights = da.from_array(w, chunks=900) if dask_input else w

    def check(labels):
        return certify(data, mu, labels, sample_weight=weights, size_min=lo, size_max=hi)

    good = check(res.labels)
    assert good.optimal and good.duality_gap <= good.gap_tolerance
    a = np.flatnonzero((res.labels == 0) & (w == 1.0))[0]
    b = np.flatnonzero((res.labels == 1) & (w == 1.0))[0]
    swapped = res.labels.copy()
    swapped[a], swapped[b] = 1, 0
    assert not check(swapped).optimal  # same masses, a negative cycle
    weightless = res.labels.copy()
    zero = np.flatnonzero(w == 0)[:5]
    weightless[zero] = (weightless[zero] + 1) % k
    assert check(weightless).optimal


def test_a_warm_weighted_step_takes_the_band_the_last_one_needed():
    """A warm weighted step's first band is as wide as the previous step's imbalance needed,
    so that it settles in one pass over X (k = 192 on 30 000 rows, 64 band rows a cluster:
    iterations 5-8 took two passes each when the band started at 64 a cluster)."""
    rng = np.random.default_rng(5)
    n, k, d = 30_000, 192, 8
    X = rng.normal(size=(n, d)) + (rng.normal(size=(k, d)) * 2.0)[rng.integers(0, k, n)]
    w = rng.integers(1, 4, n).astype(float)
    init = X[rng.choice(n, k, replace=False)]
    fits = [
        BalancedKMeans(k, init=init, max_iter=it, tol=0).fit(X, sample_weight=w) for it in (4, 8)
    ]
    assert fits[1].n_iter_ == 8 and fits[1].certificate_.optimal
    assert fits[1].n_passes_["x"] - fits[0].n_passes_["x"] <= 5  # 8 before
