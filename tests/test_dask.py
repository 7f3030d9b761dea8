"""Tests for the Dask engine: ``BalancedKMeans.fit`` and ``balanced_assign`` on dask arrays.

Every test that computes runs under two schedulers (the ``scheduler`` fixture): the threaded
scheduler, and a real ``distributed.LocalCluster`` of two single-threaded worker processes,
started once for the module.  The Dask results are compared with the NumPy engine's on the same
data and the same initial centers.  The data are small (a few thousand rows): a Dask round costs
tens of milliseconds on the cluster whatever its size.
"""

from __future__ import annotations

import dataclasses
import functools
import threading

import dask
import dask.array as da
import numpy as np
import pytest
from dask_cases import (
    CHUNKINGS,
    D,
    K,
    N,
    _assert_same_fit,
    _dask,
    _data,
    _exact_params,
    _init,
    _numpy_fit,
    _sinkhorn_params,
)
from references import check_exact, count_calls, emd_optimum, lp_optimum, reference_cost

from ballot_dask import BalancedKMeans, balanced_assign, resolve_capacities
from ballot_dask import starts as starts_module
from ballot_dask.dask_blocks import active_client, cluster_memory


def test_distributed_fixture_is_a_real_cluster(cluster_client):
    info = cluster_client.scheduler_info(n_workers=-1)
    workers = info["workers"].values()
    assert len(workers) == 2
    assert all(w["nthreads"] == 1 for w in workers)
    with dask.config.set(scheduler=cluster_client):
        assert active_client() is cluster_client
        # the engine sizes what it persists by the workers' memory limits
        assert cluster_memory() == sum(w["memory_limit"] for w in workers)
        # and work submitted through dask.compute runs in the worker processes
        pids = dask.compute(*[dask.delayed(_pid)(i) for i in range(8)])
    local = _pid(0)
    assert local not in pids


def _pid(_: int) -> int:
    import os

    return os.getpid()


# --------------------------------------------------------------------------------------------
# the exact method: Dask == NumPy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("chunks", list(CHUNKINGS.values()), ids=list(CHUNKINGS))
def test_exact_fit_equals_numpy(scheduler, chunks, dtype):
    X = _data(dtype)
    ref = _numpy_fit(dtype)
    assert ref.converged_ and ref.certificate_.optimal  # tol=0: until the labels stop changing
    Xd = _dask(X, chunks)
    if chunks == CHUNKINGS["column-chunked"]:
        assert len(Xd.chunks[1]) > 1  # the engine must rechunk it by rows
    km = BalancedKMeans(**_exact_params()).fit(Xd)
    assert isinstance(km.labels_, da.Array)
    assert km.labels_.chunks[0] == Xd.chunks[0]
    labels = km.labels_.compute()
    _assert_same_fit(km, ref, labels)
    assert km.certificate_.optimal is True
    assert km.certificate_.violations == 0
    assert km.n_features_in_ == D


def test_large_k_fit_on_candidates_equals_numpy(scheduler, monkeypatch):
    """At k = 128 the exact step's warm bands come back from the workers as candidates
    (each band row's cheapest clusters): the same fit as NumPy's, certified at every step."""
    from sklearn.cluster import kmeans_plusplus
    from test_candidates import count_band_solves

    k = 128
    rng = np.random.default_rng(5)
    X = rng.standard_normal((48 * k, 6)) + 1.5 * rng.standard_normal((k, 6))[np.arange(48 * k) % k]
    init = kmeans_plusplus(X, k, random_state=5)[0]
    params = {"n_clusters": k, "init": init, "tol": 0, "max_iter": 4}
    ref = BalancedKMeans(**params).fit(X)
    restricted = count_band_solves(monkeypatch)
    km = BalancedKMeans(**params).fit(_dask(X, (1000, 6)))
    assert any(restricted), "no band came back as candidates"
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-8, atol=1e-8)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    assert km.certificate_.optimal and ref.certificate_.optimal


@pytest.mark.parametrize(
    ("init", "k"),
    [("k-means++", K), ("k-means||", K), ("random", K), ("coupon", K), ("diameter", 2)],
)
@pytest.mark.parametrize("chunks", [CHUNKINGS["even"], CHUNKINGS["odd"]], ids=["even", "odd"])
@pytest.mark.parametrize("sample", [None, 1000], ids=["all-rows", "sampled"])
def test_same_seed_same_answer_on_every_engine(scheduler, chunks, init, k, sample):
    """``BalancedKMeans(k, random_state=s)`` with a named init: the same row sample (a hash
    of the row index), the same initial centers, the same labels on NumPy and Dask."""
    X = _data()
    setting = {} if sample is None else {"ballot.init-sample": sample}  # 1000 of 6000 rows
    with dask.config.set(setting):
        ref = BalancedKMeans(k, init=init, random_state=3).fit(X)
        km = BalancedKMeans(k, init=init, random_state=3).fit(_dask(X, chunks))
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-8, atol=1e-8)
    assert km.n_iter_ == ref.n_iter_
    assert km.certificate_.optimal and ref.certificate_.optimal


def test_the_shift_sample_is_the_same_rows_for_any_chunking(threads):
    """The engine's first pass draws the shift sample (hashed rows, one in
    ``blocks.shift_stride``) beside the fit's sample, the same for any chunking; the client
    holds it against the gather budget until it lets it go; none where a pass does not count
    pairs (k > 32)."""
    from ballot_dask.blocks import sampled_rows, shift_stride
    from ballot_dask.dask_blocks import DaskBlocks

    n, k = 270_000, 8
    X = np.random.default_rng(4).standard_normal((n, 3))
    stride = shift_stride(n, k, 4096, 3 * 8, 256 << 20)
    assert stride == 4
    drawn = []
    for rows in (n, 29_989, 50_000):
        blocks = DaskBlocks(_dask(X, (rows, 3)), k)
        before = blocks.band_budget()
        sample, _, _ = blocks.prepare(4096, 11)
        shifted = blocks.shift_sample()
        assert shifted is not None and shifted.flags.c_contiguous
        np.testing.assert_array_equal(shifted, X[sampled_rows(0, n, stride, 11)])
        assert before - blocks.band_budget() == shifted.nbytes
        drawn.append(sample)
    # let go (a band that needs the whole budget): its bytes return to the band
    assert blocks.drop_shift_sample() and blocks.shift_sample() is None
    assert blocks.band_budget() == before and not blocks.drop_shift_sample()
    for other in drawn[1:]:
        np.testing.assert_array_equal(other, drawn[0])
    wide = DaskBlocks(_dask(X, (29_989, 3)), 40)
    wide.prepare(4096, 11)
    assert wide.shift_sample() is None


def test_shift_stride_is_bounded_by_the_rows_and_the_budget():
    from ballot_dask.blocks import shift_stride

    assert shift_stride(10**7, 16, 65_536, 64, 256 << 20) == 5  # half the budget: 2M rows
    assert shift_stride(10**7, 16, 65_536, 64, 1 << 40) == 4  # a quarter of the rows at most
    assert shift_stride(10**8, 16, 65_536, 64, 256 << 20) == 48
    assert shift_stride(4 * 10**6, 16, 65_536, 64, 256 << 20) == 0  # < 16x the fit's sample
    assert shift_stride(5 * 10**6, 16, 65_536, 64, 256 << 20) == 4
    assert shift_stride(10**7, 33, 65_536, 64, 256 << 20) == 0  # no pair histogram
    assert shift_stride(10**7, 1, 65_536, 64, 256 << 20) == 0
    assert shift_stride(10**7, 16, 65_536, 64, 1 << 20) == 0  # the budget holds too few


def test_a_fit_with_a_shift_sample_equals_numpy(scheduler, monkeypatch):
    """A fit large enough for a shift sample (a smaller fit's sample stands in for the
    default 65 536 rows): its steps are shifted by it before their passes, and the labels
    and centers are NumPy's (no shift sample in memory), every step certified."""
    from ballot_dask.solvers import exact

    calls = count_calls(monkeypatch, exact, "_preshift")
    rng = np.random.default_rng(8)
    k = 8
    X = (3.0 * rng.standard_normal((k, 3)))[rng.integers(k, size=270_000)]
    X += rng.standard_normal(X.shape)
    params = {"n_clusters": k, "random_state": 2, "max_iter": 6, "tol": 0}
    with dask.config.set({"ballot.init-sample": 4096}):
        ref = BalancedKMeans(**params).fit(X)
        assert not calls  # in memory: no shift sample
        km = BalancedKMeans(**params).fit(_dask(X, (29_989, 3)))
    assert len(calls) >= km.n_iter_  # every step after the first sample's potentials
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-8, atol=1e-8)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    assert km.certificate_.optimal and ref.certificate_.optimal


def test_every_scheduler_gives_the_same_fit(scheduler):
    """The reductions combine the chunks in a fixed order: the scheduler does not matter.

    Labels, sizes and pass counts are identical; centers and potentials agree to round-off
    (the cost kernel may vectorise a row's sum differently with the memory alignment of a
    chunk, which differs between a worker process and the client: a last-bit effect)."""
    Xd = _dask(_data(), CHUNKINGS["odd"])
    km = BalancedKMeans(**_exact_params()).fit(Xd)
    with dask.config.set(scheduler="sync"):
        ref = BalancedKMeans(**_exact_params()).fit(Xd)
        ref_labels = ref.labels_.compute()
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-12, atol=0)
    np.testing.assert_allclose(km.potentials_, ref.potentials_, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(km.labels_.compute(), ref_labels)
    np.testing.assert_array_equal(km.sizes_, ref.sizes_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    assert km.n_passes_ == ref.n_passes_


# --------------------------------------------------------------------------------------------
# Sinkhorn (E-BalLOT): Dask ~ NumPy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounding", ["argmax", "exact"])
def test_sinkhorn_fit_matches_numpy(scheduler, rounding):
    # Measured (n = 6000..8000, k = 5, several chunkings, float32/64): the labels are identical
    # and the centers agree to ~1e-14 relative; the bounds below leave room for a summation
    # order that moves Sinkhorn's stopping test by one iteration.
    ref = _numpy_fit("float64", "sinkhorn", rounding)
    Xd = _dask(_data(), CHUNKINGS["odd"])
    km = BalancedKMeans(**_sinkhorn_params(rounding)).fit(Xd)
    assert isinstance(km.labels_, da.Array)
    labels = km.labels_.compute()
    assert np.mean(labels != ref.labels_) <= 1e-3
    scale = float(np.abs(ref.cluster_centers_).max())
    np.testing.assert_allclose(
        km.cluster_centers_, ref.cluster_centers_, rtol=1e-6, atol=1e-6 * scale
    )
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)
    np.testing.assert_array_equal(km.sizes_, np.bincount(labels, minlength=K))
    if rounding == "exact":
        # exactly the requested sizes, certified
        np.testing.assert_array_equal(km.sizes_, np.full(K, N // K))
        assert km.certificate_ is not None and km.certificate_.optimal
    else:
        # row argmax: nearly, not exactly, balanced (this is what makes the test meaningful)
        assert not np.array_equal(ref.sizes_, np.full(K, N // K))
        assert np.abs(km.sizes_ - N // K).max() <= 0.05 * N / K


# --------------------------------------------------------------------------------------------
# types: dask in, dask out; numpy in, numpy out
# --------------------------------------------------------------------------------------------


@functools.cache
def _new_data(dtype: str = "float64") -> np.ndarray:
    X = 4.0 * np.random.default_rng(5).standard_normal((2500, D))
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dask_in_dask_out(scheduler, dtype):
    X = _data(dtype)
    Xd = _dask(X, CHUNKINGS["odd"])
    km = BalancedKMeans(**_exact_params()).fit(Xd)
    ref = _numpy_fit(dtype)
    for name in ("cluster_centers_", "potentials_", "sizes_"):
        assert type(getattr(km, name)) is np.ndarray, name
    assert km.cluster_centers_.dtype == np.dtype(dtype)
    assert isinstance(km.labels_, da.Array) and km.labels_.dtype == np.int64
    assert km.labels_.chunks[0] == Xd.chunks[0]

    Xn = _new_data(dtype)
    Xnd = _dask(Xn, (700, D))  # other chunks than the training data's
    for method in ("power", "nearest"):
        pred = km.predict(Xnd, method=method)
        assert isinstance(pred, da.Array)
        assert pred.chunks == (Xnd.chunks[0],)
        expected = ref.predict(Xn, method=method)
        np.testing.assert_array_equal(pred.compute(), expected)
        # the dask-fitted model on numpy data: numpy labels, the same
        from_numpy = km.predict(Xn, method=method)
        assert type(from_numpy) is np.ndarray
        np.testing.assert_array_equal(from_numpy, expected)
        score = km.score(Xnd, method=method)
        assert type(score) is float
        assert score == pytest.approx(ref.score(Xn, method=method), rel=1e-9)
        assert score == pytest.approx(km.score(Xn, method=method), rel=1e-9)
    # power labels keep the fitted balance, nearest ones do not have to: they differ here
    assert not np.array_equal(ref.predict(Xn), ref.predict(Xn, method="nearest"))

    dist = km.transform(Xnd)
    assert isinstance(dist, da.Array)
    assert dist.chunks == (Xnd.chunks[0], (K,))
    expected = ref.transform(Xn)
    assert dist.dtype == expected.dtype
    np.testing.assert_allclose(dist.compute(), expected, rtol=1e-12 if dtype == "float64" else 0)

    # the training data: predict(X) under the fitted potentials gives the fitted labels
    # (up to the exactly-solved band rows sitting on ties), and fit_predict is the labels
    np.testing.assert_array_equal(km.predict(Xd).compute(), ref.predict(X))
    fp = BalancedKMeans(**_exact_params()).fit_predict(Xd)
    assert isinstance(fp, da.Array)
    np.testing.assert_array_equal(fp.compute(), ref.labels_)


def test_numpy_in_numpy_out():
    ref = _numpy_fit()
    assert type(ref.labels_) is np.ndarray
    X = _new_data()
    assert type(ref.predict(X)) is np.ndarray
    assert type(ref.transform(X)) is np.ndarray
    assert type(ref.score(X)) is float
    res = balanced_assign(_data(), _init())
    assert type(res.labels) is np.ndarray


def test_numpy_fitted_model_on_dask_data(scheduler):
    ref = _numpy_fit()
    Xn = _new_data()
    Xnd = _dask(Xn, (600, D))
    pred = ref.predict(Xnd)
    assert isinstance(pred, da.Array) and pred.chunks == (Xnd.chunks[0],)
    np.testing.assert_array_equal(pred.compute(), ref.predict(Xn))
    assert ref.score(Xnd) == pytest.approx(ref.score(Xn), rel=1e-9)


# --------------------------------------------------------------------------------------------
# passes over the data
# --------------------------------------------------------------------------------------------


class _ChunkReads:
    """Counts the chunks of a dask array actually computed (threaded scheduler: one process)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if block.shape[0]:  # not dask's meta inference on an empty block
            with self._lock:
                self.count += 1
        return block


def test_pass_counts_persisted(scheduler):
    ref = _numpy_fit()
    km = BalancedKMeans(**_exact_params()).fit(_dask(_data(), CHUNKINGS["odd"]))
    passes, ref_passes = km.n_passes_, ref.n_passes_
    assert set(passes) == {"x", "cost", "rounds", "sample"}
    # the exact step computes its costs inside its pass over X: no cost block is ever built
    assert passes["cost"] == ref_passes["cost"] == 0
    # about one read of X and one round per Lloyd iteration (a second when the band must
    # widen), plus the first pass (finiteness, variance, sample); the labels, persisted, take
    # a round but no read (the last pass held them, see tests/test_held_labels.py)
    assert km.n_iter_ + 1 <= passes["x"] <= 1.3 * km.n_iter_ + 1
    assert passes["rounds"] == passes["x"] + 1


def test_passes_count_the_reads_of_x(threads):
    """``n_passes_["x"]`` is what is read: persisted, the source is read once (the first pass,
    which persists X); streamed, once per counted pass."""
    Xd = _dask(_data(), CHUNKINGS["odd"])
    n_chunks = Xd.numblocks[0]
    for persist in (True, False):
        reads = _ChunkReads()
        counted = Xd.map_blocks(reads, dtype=Xd.dtype)
        with dask.config.set({"ballot.persist": persist}):
            km = BalancedKMeans(**_exact_params()).fit(counted)
        if persist:
            assert reads.count == n_chunks
        else:
            assert reads.count == km.n_passes_["x"] * n_chunks
        np.testing.assert_array_equal(km.labels_.compute(), _numpy_fit().labels_)


def test_streaming_fit(scheduler):
    ref = _numpy_fit()
    with dask.config.set({"ballot.persist": False}):
        km = BalancedKMeans(**_exact_params()).fit(_dask(_data(), CHUNKINGS["odd"]))
    _assert_same_fit(km, ref, km.labels_.compute())
    assert km.certificate_.optimal
    passes = km.n_passes_
    # streamed, the labels stay lazy: the fit makes every pass of the numpy fit but the
    # labelling one (computing labels_ later is that pass); each Lloyd iteration reads the
    # store once, in one round
    assert passes["cost"] == 0
    assert km.n_iter_ + 1 <= passes["x"] <= 1.3 * km.n_iter_ + 1
    assert passes["rounds"] == passes["x"]


@pytest.mark.parametrize("rounding", ["argmax", "exact"])
def test_streamed_cost_passes_work_in_slabs(threads, rounding, monkeypatch):
    """Streamed, a pass over cost blocks builds and uses them a slab of rows at a time
    (``STREAM_SLAB_BYTES``): cut into slabs of 1024 rows, every chunk gives the fit NumPy
    gives, E-BalLOT's many cost passes and the lazy labels included."""
    from ballot_dask import dask_tasks

    monkeypatch.setattr(dask_tasks, "STREAM_SLAB_BYTES", 1024 * 8 * K)
    seen: list[int] = []
    pass_task = dask_tasks.pass_task

    def counting(shared, kernel, xb, cb, offset):
        seen.append(xb.shape[0])
        return pass_task(shared, kernel, xb, cb, offset)

    monkeypatch.setattr(dask_tasks, "pass_task", counting)
    ref = _numpy_fit("float64", "sinkhorn", rounding)
    X = _dask(_data(), (2500, D))  # 2500 rows: slabs of 1024, 1024 and 452
    with dask.config.set({"ballot.persist": False}):
        km = BalancedKMeans(**_sinkhorn_params(rounding)).fit(X)
    assert km.n_passes_["cost"] > 0
    assert seen and set(seen) == {1024, 452, 1000}  # the last chunk (1000 rows) is one slab
    labels = km.labels_.compute()  # the streamed labels, slab by slab too
    assert np.mean(labels != ref.labels_) <= 1e-3
    scale = float(np.abs(ref.cluster_centers_).max())
    np.testing.assert_allclose(
        km.cluster_centers_, ref.cluster_centers_, rtol=1e-6, atol=1e-6 * scale
    )
    np.testing.assert_array_equal(km.sizes_, np.bincount(labels, minlength=K))
    np.testing.assert_array_equal(km.predict(X).compute(), km.predict(_data()))


# --------------------------------------------------------------------------------------------
# Zarr input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persist", ["auto", False])
def test_zarr_store(scheduler, tmp_path, persist):
    zarr = pytest.importorskip("zarr")
    X = _data()
    path = str(tmp_path / "x.zarr")
    store = zarr.create_array(store=path, shape=X.shape, chunks=(1200, D), dtype=X.dtype)
    store[:] = X
    np.testing.assert_array_equal(zarr.open_array(path, mode="r")[:], X)
    Xd = da.from_zarr(path)
    assert Xd.chunks == ((1200,) * 5, (D,))
    with dask.config.set({"ballot.persist": persist}):
        km = BalancedKMeans(**_exact_params()).fit(Xd)
    assert isinstance(km.labels_, da.Array)
    assert km.labels_.chunks[0] == Xd.chunks[0]
    _assert_same_fit(km, _numpy_fit(), km.labels_.compute())
    assert km.certificate_.optimal
    np.testing.assert_array_equal(km.predict(Xd).compute(), _numpy_fit().predict(X))


# --------------------------------------------------------------------------------------------
# balanced_assign on a dask array
# --------------------------------------------------------------------------------------------

# (n, capacities): equal sizes, floor/ceil sizes (k does not divide n), explicit, bounds
ASSIGN_CASES = {
    "equal": (N, {}),
    "floor-ceil": (N - 3, {}),
    "explicit": (N, {"sizes": [600, 900, 1200, 1500, 1800]}),
    "bounds": (N, {"size_min": 1000, "size_max": 1300}),
}


@functools.cache
def _reference_optimum(case: str) -> float:
    n, capacities = ASSIGN_CASES[case]
    C = reference_cost(_data()[:n], _init())
    cap = resolve_capacities(n, K, **capacities)
    if cap.is_equality:
        return emd_optimum(C, cap.lower)[0]
    return lp_optimum(C, cap.lower, cap.upper)[0]


@pytest.mark.parametrize("case", list(ASSIGN_CASES))
def test_balanced_assign_equals_numpy(scheduler, case):
    n, capacities = ASSIGN_CASES[case]
    X, centers = _data()[:n], _init()
    ref = balanced_assign(X, centers, **capacities)
    Xd = _dask(X, (997, D))
    res = balanced_assign(Xd, centers, **capacities)
    assert isinstance(res.labels, da.Array)
    assert res.labels.chunks == (Xd.chunks[0],)
    labels = res.labels.compute()
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(res.sizes, ref.sizes)
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert res.certificate.optimal and res.certificate.violations == 0
    assert set(res.passes) == {"x", "cost", "rounds", "sample"}
    assert res.passes["cost"] == ref.passes["cost"]
    # and an optimum of the LP: the reference solvers' (POT's network simplex, HiGHS)
    cap = resolve_capacities(n, K, **capacities)
    check_exact(dataclasses.replace(res, labels=labels), X, centers, cap, _reference_optimum(case))


def test_balanced_assign_emd_on_dask(scheduler):
    n = 2000
    X, centers = _data()[:n], _init()
    Xd = _dask(X, (600, D))
    res = balanced_assign(Xd, centers, method="emd")
    ref = balanced_assign(X, centers, method="emd")
    exact = balanced_assign(Xd, centers)
    assert isinstance(res.labels, da.Array) and res.labels.chunks == (Xd.chunks[0],)
    labels = res.labels.compute()
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(labels, exact.labels.compute())
    np.testing.assert_array_equal(res.sizes, np.full(K, n // K))
    assert res.certificate.optimal
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert res.objective == pytest.approx(exact.objective, rel=1e-9)


def test_balanced_assign_sinkhorn_on_dask(scheduler):
    X, centers = _data(), _init()
    params = {"method": "sinkhorn", "reg": 0.1, "sinkhorn_tol": 1e-2}
    ref = balanced_assign(X, centers, **params)
    res = balanced_assign(_dask(X, (1500, D)), centers, **params)
    labels = res.labels.compute()
    assert np.mean(labels != ref.labels) <= 1e-3
    assert res.objective == pytest.approx(ref.objective, rel=1e-6)
    assert res.marginal_error <= 1e-2
    rounded = balanced_assign(_dask(X, (1500, D)), centers, rounding="exact", **params)
    np.testing.assert_array_equal(np.bincount(rounded.labels.compute(), minlength=K), N // K)
    assert rounded.certificate.optimal
    assert rounded.objective == pytest.approx(balanced_assign(X, centers).objective, rel=1e-9)


# --------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------


@pytest.fixture
def init_centers(monkeypatch):
    """The initial centers each fit starts from, as chosen by the estimator."""
    seen: list[np.ndarray] = []
    original = starts_module.initial_centers

    def recording(*args, **kwargs):
        centers = original(*args, **kwargs)
        seen.append(np.array(centers))
        return centers

    monkeypatch.setattr(starts_module, "initial_centers", recording)
    return seen


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_named_init_is_deterministic_and_chunking_free(scheduler, init_centers, init):
    X = _data()
    params = {"n_clusters": K, "init": init, "random_state": 3, "max_iter": 30}
    # a sample smaller than the data, so the hashed row sample is at work (stride > 1)
    with dask.config.set({"ballot.init-sample": 1000}):
        a = BalancedKMeans(**params).fit(_dask(X, (997, D)))
        b = BalancedKMeans(**params).fit(_dask(X, (997, D)))
        c = BalancedKMeans(**params).fit(_dask(X, (1400, 2)))
        d = BalancedKMeans(**{**params, "random_state": 4}).fit(_dask(X, (997, D)))
    first, second, rechunked, other_seed = init_centers
    # the same chunking: the same bits all along
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_.compute(), b.labels_.compute())
    # another chunking: the same initial centers (the sample is a hash of the row index), then
    # the same labels; the centers' sums run over other chunks, so they agree to round-off only
    np.testing.assert_array_equal(first, rechunked)
    np.testing.assert_array_equal(a.labels_.compute(), c.labels_.compute())
    np.testing.assert_allclose(a.cluster_centers_, c.cluster_centers_, rtol=1e-12, atol=1e-12)
    # another seed: another start (the recorded centers do depend on the seed)
    assert not np.array_equal(first, other_seed)
    assert d.certificate_.optimal
    # both strategies pick rows of the sample, hence of X
    for row in first:
        assert np.any(np.all(X == row, axis=1))
