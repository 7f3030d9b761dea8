"""Sparse X (``scipy.sparse`` in memory, Dask arrays of CSR chunks) gives the dense answer.

Every fit here runs twice, on a sparse matrix and on its dense copy, from the same
``random_state`` (or the same initial centers on Dask): the labels must be equal, the centers
within 1e-8 and the objective within 1e-10 of each other (the costs differ only by round-off:
``||x||^2 - 2 x.mu + ||mu||^2`` from the nonzeros on the sparse path, direct differences or a
centred expansion on the dense one).  The data are TF-IDF-like: nonnegative, a few nonzeros
per row, rows L2-normalised, with topics of unequal sizes so that balancing moves points.
"""

from __future__ import annotations

import functools
import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from ballot_dask import BalancedKMeans, balanced_assign, certify
from ballot_dask.sparse import as_csr, column_stats

N, D, K = 2400, 60, 4
#: parameters that make Sinkhorn converge in few passes, so the sparse/dense pairs stay fast
SINKHORN = {"method": "sinkhorn", "reg": 0.05, "sinkhorn_tol": 1e-3}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _topic_matrix(n: int, d: int, k: int, seed: int, density: float) -> sp.csr_matrix:
    """Rows of ``k`` topics (shares 40/30/20/10 %...), each with three words of its topic's
    columns, background words at ``density`` and a word every row has (column 0),
    L2-normalised (float64 CSR).

    The common word keeps the transport problems nondegenerate: with sparse centers (data
    rows, as k-means++ picks them), rows orthogonal to two centers would otherwise cost the
    same difference ``||mu_a||^2 - ||mu_b||^2`` to move between them, so any two could trade
    places and the LP's optimum would not be unique (sparse and dense costs, equal up to
    round-off, could then pick different optima)."""
    rng = np.random.default_rng(seed)
    share = np.arange(k, 0, -1, dtype=np.float64)
    topic = rng.choice(k, size=n, p=share / share.sum())
    width = (d - 1) // k
    cols = 1 + topic[:, None] * width + rng.integers(0, width, size=(n, 3))
    signal = sp.csr_matrix(
        (
            np.concatenate([rng.uniform(1.0, 2.0, 3 * n), rng.uniform(0.2, 1.0, n)]),
            (
                np.concatenate([np.repeat(np.arange(n), 3), np.arange(n)]),
                np.concatenate([cols.ravel(), np.zeros(n, dtype=np.int64)]),
            ),
        ),
        shape=(n, d),
    )
    words = round(density * n * d)  # background words, drawn with replacement
    background = sp.csr_matrix(
        (rng.random(words), (rng.integers(0, n, words), rng.integers(0, d, words))),
        shape=(n, d),
    )
    X = (signal + background).tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / norms) @ X)


@functools.cache
def _sparse(dtype: str = "float64", n: int = N, d: int = D, k: int = K) -> sp.csr_matrix:
    return _topic_matrix(n, d, k, seed=0, density=0.05).astype(dtype)


def _dense(X: sp.spmatrix) -> np.ndarray:
    return np.ascontiguousarray(X.toarray())


def _centers(X: sp.spmatrix, k: int = K, seed: int = 1) -> np.ndarray:
    """k rows of X, moved a little (no cost ties)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(X.shape[0], k, replace=False)
    return X[rows].toarray() + 0.01 * rng.random((k, X.shape[1]))


@functools.cache
def _dense_fit(dtype: str, method: str, init: str) -> BalancedKMeans:
    params = SINKHORN if method == "sinkhorn" else {"method": "exact"}
    return BalancedKMeans(K, init=init, random_state=0, **params).fit(_dense(_sparse(dtype)))


def _assert_same_fit(km: BalancedKMeans, ref: BalancedKMeans, labels: np.ndarray) -> None:
    np.testing.assert_array_equal(labels, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=0, atol=1e-8)
    assert km.cluster_centers_.dtype == ref.cluster_centers_.dtype
    np.testing.assert_array_equal(km.sizes_, ref.sizes_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert km.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(km.objective_history_, ref.objective_history_, rtol=1e-10)
    np.testing.assert_allclose(km.potentials_, ref.potentials_, rtol=0, atol=1e-8)
    if ref.method == "exact":
        assert ref.certificate_.optimal
        assert km.certificate_.optimal


def _assert_same_certificate(cert, ref) -> None:
    """Certificates of the same labels from sparse and dense costs (equal up to round-off)."""
    assert cert.optimal == ref.optimal
    assert cert.violations == ref.violations
    assert cert.duality_gap == pytest.approx(ref.duality_gap, rel=1e-9, abs=1e-12)
    assert cert.tolerance == pytest.approx(ref.tolerance, rel=1e-12)


# --------------------------------------------------------------------------------------------
# in memory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["k-means++", "random"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_sparse_fit_equals_dense_fit(method, dtype, init):
    ref = _dense_fit(dtype, method, init)
    params = SINKHORN if method == "sinkhorn" else {"method": "exact"}
    km = BalancedKMeans(K, init=init, random_state=0, **params).fit(_sparse(dtype))
    _assert_same_fit(km, ref, km.labels_)
    assert isinstance(km.labels_, np.ndarray)
    if method == "exact":
        np.testing.assert_array_equal(np.bincount(km.labels_, minlength=K), np.full(K, N // K))


@pytest.mark.parametrize(
    ("init", "k"), [("k-means||", K), ("coupon", K), ("diameter", 2), ("array", K)]
)
def test_every_init_starts_a_sparse_fit_where_it_starts_the_dense_one(init, k):
    X = _sparse()
    start = _centers(X, k) if init == "array" else init
    sparse_fit = BalancedKMeans(k, init=start, random_state=3, max_iter=5).fit(X)
    dense_fit = BalancedKMeans(k, init=start, random_state=3, max_iter=5).fit(_dense(X))
    _assert_same_fit(sparse_fit, dense_fit, sparse_fit.labels_)


@pytest.mark.parametrize(
    "convert",
    [sp.csr_array, sp.csc_matrix, sp.coo_array, sp.lil_matrix],
    ids=["csr_array", "csc", "coo", "lil"],
)
def test_other_scipy_formats_are_fitted_as_csr(convert):
    X = _sparse()
    ref = _dense_fit("float64", "exact", "random")
    km = BalancedKMeans(K, init="random", random_state=0).fit(convert(X))
    _assert_same_fit(km, ref, km.labels_)


def test_sparse_centers_are_taken_as_dense():
    X = _sparse()
    start = _centers(X)
    km = BalancedKMeans(K, init=sp.csr_matrix(start), max_iter=3).fit(X)
    ref = BalancedKMeans(K, init=start, max_iter=3).fit(X)
    _assert_same_fit(km, ref, km.labels_)
    res = balanced_assign(X, sp.csr_matrix(start))
    np.testing.assert_array_equal(res.labels, balanced_assign(X, start).labels)
    assert certify(X, sp.csr_matrix(start), res.labels).optimal


def test_duplicate_entries_are_summed_not_squared_apart():
    # a CSR matrix holding column entries twice (valid scipy, not canonical): the squared
    # norms must square the sums, as the dense copy does
    X = _sparse()
    coo = X.tocoo()
    half = coo.data / 2.0
    order = np.argsort(np.concatenate([coo.row, coo.row]), kind="stable")
    rows = np.concatenate([coo.row, coo.row])[order]
    cols = np.concatenate([coo.col, coo.col])[order]
    data = np.concatenate([half, half])[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=X.shape[0]))])
    doubled = sp.csr_matrix((data, cols, indptr), shape=X.shape)
    assert not doubled.has_canonical_format
    km = BalancedKMeans(K, init="random", random_state=0).fit(doubled)
    _assert_same_fit(km, _dense_fit("float64", "exact", "random"), km.labels_)


def test_int64_indices_are_taken_as_int32_and_fit_as_the_same_matrix(monkeypatch):
    # scipy keeps int64 index arrays it is given: the kernels would be compiled for them
    # again (scikit-learn's estimator checks pass them); they are fitted as int32, with the
    # data shared and the same fit
    X = as_csr(_sparse())  # canonical (sorted indices)
    wide = X.copy()  # (as the checks make them: scipy's constructor would take int32)
    wide.indices, wide.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    assert wide.has_canonical_format
    assert wide.indices.dtype == wide.indptr.dtype == np.int64
    narrow = as_csr(wide)
    assert narrow.indices.dtype == narrow.indptr.dtype == np.int32
    assert np.shares_memory(narrow.data, wide.data) and narrow.has_canonical_format
    assert (narrow != X).nnz == 0
    assert as_csr(narrow) is narrow  # already int32: no copy
    km = BalancedKMeans(K, init="random", random_state=0).fit(wide)
    _assert_same_fit(km, _dense_fit("float64", "exact", "random"), km.labels_)
    # an index range beyond int32 keeps its int64 indices
    from ballot_dask import sparse as sparse_module

    monkeypatch.setattr(sparse_module, "_INT32_MAX", X.nnz)
    assert as_csr(wide).indices.dtype == np.int64


def test_a_row_sample_of_sparse_rows_gives_the_dense_fit():
    # a lowered ballot.init-sample: the initialisation and the exact step's first potentials
    # run on a hashed row sample (kept sparse), the same rows as the dense fit's
    X = _topic_matrix(20_000, 40, 5, seed=4, density=0.05)
    with dask.config.set({"ballot.init-sample": 5000}):
        km = BalancedKMeans(5, random_state=0, max_iter=6).fit(X)
        ref = BalancedKMeans(5, random_state=0, max_iter=6).fit(_dense(X))
    _assert_same_fit(km, ref, km.labels_)


def test_transform_predict_and_score_accept_sparse():
    X = _sparse()
    km = _dense_fit("float64", "exact", "k-means++")
    np.testing.assert_allclose(km.transform(X), km.transform(_dense(X)), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    np.testing.assert_array_equal(
        km.predict(X, method="nearest"), km.predict(_dense(X), method="nearest")
    )
    assert km.score(X) == pytest.approx(km.score(_dense(X)), rel=1e-10)
    assert km.transform(_sparse("float32")).dtype == np.float32  # X's dtype, as for dense X


def test_column_statistics_of_a_sparse_block_are_the_dense_ones():
    X = _sparse()
    mean, m2 = column_stats(X)
    np.testing.assert_allclose(mean, _dense(X).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m2 / N, _dense(X).var(axis=0), rtol=1e-10, atol=1e-15)


# --------------------------------------------------------------------------------------------
# balanced_assign and certify
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"method": "exact"},
        {"method": "exact", "block_rows": 700},
        {"method": "exact", "size_min": 500, "size_max": 700},
        {"method": "emd"},
        {"method": "sinkhorn", "reg": 0.05},
        {"method": "sinkhorn", "reg": 0.05, "rounding": "exact"},
    ],
    ids=["exact", "blocks", "ranges", "emd", "sinkhorn", "sinkhorn-exact"],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_balanced_assign_sparse_equals_dense(dtype, params):
    X = _sparse(dtype)
    centers = _centers(X)
    res = balanced_assign(X, centers, **params)
    ref = balanced_assign(_dense(X), centers, **params)
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(res.sizes, ref.sizes)
    assert res.objective == pytest.approx(ref.objective, rel=1e-10)
    if ref.certificate is not None:
        assert ref.certificate.optimal and res.certificate.optimal
    if ref.plan_cost is not None:
        assert res.plan_cost == pytest.approx(ref.plan_cost, rel=1e-10)


def test_certify_sparse_equals_dense():
    X = _sparse()
    centers = _centers(X)
    labels = balanced_assign(_dense(X), centers).labels
    good = certify(X, centers, labels)
    assert good.optimal
    _assert_same_certificate(good, certify(_dense(X), centers, labels))
    # two points of different clusters swap: sizes still right, optimality lost
    swapped = labels.copy()
    i, j = np.flatnonzero(labels == 0)[0], np.flatnonzero(labels == 1)[0]
    swapped[[i, j]] = swapped[[j, i]]
    bad, ref = certify(X, centers, swapped), certify(_dense(X), centers, swapped)
    assert not bad.optimal and bad.duality_gap > 0
    _assert_same_certificate(bad, ref)


# --------------------------------------------------------------------------------------------
# Dask arrays of CSR chunks
# --------------------------------------------------------------------------------------------


def _sparse_dask(X: sp.csr_matrix, rows: int) -> da.Array:
    Xd = da.from_array(X, chunks=(rows, X.shape[1]), asarray=False)
    assert sp.issparse(Xd._meta)
    return Xd


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_dask_sparse_fit_equals_numpy_dense_fit(scheduler, method):
    X = _sparse()
    params = {"init": _centers(X), "tol": 0, "max_iter": 20}
    params.update(SINKHORN if method == "sinkhorn" else {})
    ref = BalancedKMeans(K, **params).fit(_dense(X))
    km = BalancedKMeans(K, **params).fit(_sparse_dask(X, 700))  # a short last chunk
    assert isinstance(km.labels_, da.Array)
    assert km.labels_.chunks[0] == (700, 700, 700, 300)
    _assert_same_fit(km, ref, km.labels_.compute())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("init", ["k-means++", "k-means||", "random"])
def test_dask_sparse_fit_equals_dask_dense_fit_from_the_same_seed(threads, init, dtype):
    # a named init on Dask runs on the engine's row sample: the same rows, sparse or dense
    X = _sparse(dtype)
    km = BalancedKMeans(K, init=init, random_state=5).fit(_sparse_dask(X, 1000))
    ref = BalancedKMeans(K, init=init, random_state=5).fit(da.from_array(_dense(X), 1000))
    _assert_same_fit(km, ref, km.labels_.compute())


def test_dask_chunks_made_sparse_by_map_blocks(threads):
    X = _sparse()
    source = da.from_array(_dense(X), chunks=(600, D)).map_blocks(sp.csr_matrix)
    assert sp.issparse(source._meta)
    init = _centers(X)
    km = BalancedKMeans(K, init=init, max_iter=5).fit(source)
    ref = BalancedKMeans(K, init=init, max_iter=5).fit(_dense(X))
    _assert_same_fit(km, ref, km.labels_.compute())
    # transform of the sparse chunks: the dense distances, chunk by chunk
    np.testing.assert_allclose(km.transform(source).compute(), ref.transform(_dense(X)), atol=1e-8)


@pytest.mark.parametrize("persist", [True, False], ids=["persisted", "streamed"])
def test_dask_sparse_fit_persisted_or_streamed(threads, persist):
    X = _sparse("float32")
    init = _centers(X)
    with dask.config.set({"ballot.persist": persist}):
        km = BalancedKMeans(K, init=init, max_iter=5).fit(_sparse_dask(X, 800))
    ref = BalancedKMeans(K, init=init, max_iter=5).fit(_dense(X))
    _assert_same_fit(km, ref, km.labels_.compute())


def test_dask_csc_chunks_are_converted(threads):
    X = _sparse()
    source = da.from_array(X.tocsc(), chunks=(600, D), asarray=False)
    assert source._meta.format == "csc"
    init = _centers(X)
    km = BalancedKMeans(K, init=init, max_iter=5).fit(source)
    ref = BalancedKMeans(K, init=init, max_iter=5).fit(_dense(X))
    _assert_same_fit(km, ref, km.labels_.compute())


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_dask_sparse_balanced_assign_and_certify(threads, method):
    X = _sparse()
    centers = _centers(X)
    res = balanced_assign(_sparse_dask(X, 500), centers, method=method, reg=0.05)
    ref = balanced_assign(_dense(X), centers, method=method, reg=0.05)
    labels = res.labels.compute()
    np.testing.assert_array_equal(labels, ref.labels)
    assert res.objective == pytest.approx(ref.objective, rel=1e-10)
    cert = certify(_sparse_dask(X, 500), centers, res.labels)
    assert cert.optimal == (method == "exact")
    _assert_same_certificate(cert, certify(_dense(X), centers, ref.labels))


def test_dask_sparse_band_is_sized_by_the_nonzeros(threads):
    # d = 5000: a dense row takes 40 kB, so a 1 MiB band budget holds 13 of them and the
    # exact repair gives up; the sparse rows take about 250 bytes (the chunks' bytes are
    # counted), 2000 of them fit, and the repair finds its band
    X = _topic_matrix(6000, 5000, 4, seed=6, density=0.002)
    near = BalancedKMeans(4, random_state=0, max_iter=5).fit(X).cluster_centers_
    centers = near + 1e-3 * np.random.default_rng(2).random(near.shape)
    with dask.config.set({"ballot.band-memory": "1 MiB"}):
        res = balanced_assign(_sparse_dask(X, 1500), centers)
        with pytest.raises(RuntimeError, match="memory budget"):
            balanced_assign(da.from_array(_dense(X), chunks=(1500, 5000)), centers)
    ref = balanced_assign(_dense(X), centers)
    np.testing.assert_array_equal(res.labels.compute(), ref.labels)
    assert res.certificate.optimal
    assert res.passes["x"] >= 2  # the chunks' bytes were counted in a pass of their own


# --------------------------------------------------------------------------------------------
# never densified
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_a_very_wide_sparse_matrix_is_never_densified(method):
    # 4000 x 200000 at 0.001 % plus one topic word a row: 6.4 GB dense, 130 kB sparse.  The
    # fit's Python-side allocations (tracemalloc: NumPy and SciPy arrays) stay far below one
    # dense copy; the compiled kernels' own buffers are slabs of rows x k and the (k, d) sums
    n, d, k = 4000, 200_000, 4
    X = _topic_matrix(n, d, k, seed=7, density=1e-5)
    dense_bytes = n * d * 8
    params = SINKHORN if method == "sinkhorn" else {}
    BalancedKMeans(k, random_state=0, max_iter=2, **params).fit(X[:200])  # compile first
    tracemalloc.start()
    try:
        km = BalancedKMeans(k, random_state=0, max_iter=10, **params).fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < dense_bytes / 50, f"peak {peak / 2**20:.0f} MiB"
    assert km.cluster_centers_.shape == (k, d)
    if method == "exact":
        np.testing.assert_array_equal(np.bincount(km.labels_, minlength=k), np.full(k, n // k))
        assert km.certificate_.optimal


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_pydata_sparse_arrays_are_refused_with_the_fix():
    sparse = pytest.importorskip("sparse")
    X = sparse.COO.from_scipy_sparse(_sparse())
    for call in (
        lambda: BalancedKMeans(K).fit(X),
        lambda: balanced_assign(X, _centers(_sparse())),
        lambda: certify(X, _centers(_sparse()), np.zeros(N, dtype=int)),
    ):
        with pytest.raises(TypeError, match=r"X is a sparse\..*COO.*X\.tocsr\(\)"):
            call()


def test_pydata_sparse_dask_chunks_are_refused_with_the_fix():
    sparse = pytest.importorskip("sparse")
    X = da.from_array(sparse.COO.from_scipy_sparse(_sparse()), chunks=(600, D))
    with pytest.raises(TypeError, match=r"X has chunks of type sparse\..*COO.*tocsr"):
        BalancedKMeans(K).fit(X)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_sparse_data_is_refused(value):
    X = _sparse().copy()
    X.data[7] = value
    with pytest.raises(ValueError, match="Input X contains"):
        BalancedKMeans(K).fit(X)
    with pytest.raises(ValueError, match="X: Input X contains"):
        balanced_assign(X, _centers(_sparse()))


def test_nan_in_dask_sparse_chunks_is_refused_with_its_row(threads):
    X = _sparse().copy()
    row = 1234
    X.data[X.indptr[row]] = np.nan
    with pytest.raises(ValueError, match=f"NaN or infinity \\(first at row {row}\\)"):
        BalancedKMeans(K).fit(_sparse_dask(X, 500))


def test_dask_sparse_chunks_split_along_columns_are_refused():
    X = da.from_array(_sparse(), chunks=(600, 20), asarray=False)
    with pytest.raises(ValueError, match=r"X has scipy.sparse chunks split along its columns"):
        BalancedKMeans(K).fit(X)
    with pytest.raises(ValueError, match=r"rechunk\(\{1: -1\}\)"):
        balanced_assign(X, _centers(_sparse()))


def test_complex_sparse_data_is_refused():
    X = _sparse().astype(np.complex128)
    with pytest.raises(ValueError, match="Complex data not supported"):
        BalancedKMeans(K).fit(X)


def test_as_csr_copies_only_what_it_must_change():
    X = _sparse()
    assert as_csr(X) is X
    assert as_csr(X.tocsc()).format == "csr"
