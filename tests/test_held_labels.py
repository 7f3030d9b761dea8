"""The exact pass's labels held where it ran (:mod:`ballot_dask.held_labels`): a Dask fit over
a persisted X takes its ``labels_`` from them instead of a pass over X, with the same labels."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from dask_cases import CHUNKINGS, _dask, _data, _exact_params
from references import count_calls

from ballot_dask import BalancedKMeans, held_labels
from ballot_dask.dask_blocks import DaskBlocks
from ballot_dask.exact_pass import exact_pass, power_labels
from ballot_dask.solvers import base
from ballot_dask.solvers.base import ExactLabels


@pytest.fixture(autouse=True)
def _empty_holding():
    held_labels._HELD.clear()
    yield
    held_labels._HELD.clear()


def test_take_returns_the_held_block_once_and_a_new_pass_drops_the_old():
    a, b = np.arange(5, dtype=np.int32), np.arange(3, dtype=np.int32)
    held_labels.hold("pass-1", 0, a)
    held_labels.hold("pass-1", 5, b)
    assert held_labels.held_keys() == ["pass-1"]
    assert held_labels.take("pass-1", 5, 4) is None  # another length: not this block's
    with held_labels.warming():  # a warm-up's synthetic rows take nothing
        assert held_labels.take("pass-1", 0, 5) is None
    np.testing.assert_array_equal(held_labels.take("pass-1", 5, 3), b)  # still held
    np.testing.assert_array_equal(held_labels.take("pass-1", 0, 5), a)
    assert held_labels.take("pass-1", 0, 5) is None  # taken once
    held_labels.hold("pass-1", 5, b)
    held_labels.hold("pass-2", 0, b)  # a new pass: the last one's labels are dropped
    assert held_labels.held_keys() == ["pass-2"]
    assert held_labels.take("pass-1", 5, 3) is None
    np.testing.assert_array_equal(held_labels.take("pass-2", 0, 3), b)
    assert held_labels.held_keys() == []  # nothing left once every block was taken
    with held_labels.warming():  # a warm-up on synthetic rows holds nothing
        held_labels.hold("pass-3", 0, a)
    assert held_labels.held_keys() == []


def _band_labeler(X, key):
    """The labeler of a pass over ``X`` in two blocks, its labels held under ``key``, with
    the band's rows given labels of their own (the last cluster)."""
    rng = np.random.default_rng(1)
    k = 6
    centers = X[rng.choice(X.shape[0], k, replace=False)].astype(np.float64)
    v = rng.normal(scale=0.5, size=k)
    rows, labels = [], []
    for offset, block in ((0, X[:700]), (700, X[700:])):
        part = exact_pass(block, centers, v, 0.5, block.shape[0], offset, keep_labels=True)
        held_labels.hold(key, offset, part.labels)
        rows.append(part.rows)
        labels.append(np.full(part.rows.shape[0], k - 1))
    rows, labels = np.concatenate(rows), np.concatenate(labels)
    assert 0 < rows.shape[0] < X.shape[0] // 2  # a band, and fixed rows
    return ExactLabels(centers, v, rows, labels, held_key=key), rows


def test_exact_labels_take_the_held_labels_and_else_compute_the_same(monkeypatch):
    X = _data()[:1500]
    labeler, rows = _band_labeler(X, "pass-a")
    c, v, first = labeler.centers, labeler.potentials, labeler.rows < 700
    expected = np.concatenate(
        [
            power_labels(X[:700], c, v, labeler.rows[first], labeler.labels[first]),
            power_labels(X[700:], c, v, labeler.rows[~first] - 700, labeler.labels[~first]),
        ]
    )
    computed = count_calls(monkeypatch, base, "power_labels")
    held = np.concatenate([labeler(X[:700], 0), labeler(X[700:], 700)])
    assert computed == []  # both blocks from the held labels: no costs computed
    np.testing.assert_array_equal(held, expected)
    assert (held[rows] == 5).all()
    # taken once: the same call again computes them, equal
    again = np.concatenate([labeler(X[:700], 0), labeler(X[700:], 700)])
    assert len(computed) == 2
    np.testing.assert_array_equal(again, expected)
    # a held block whose band row the labeler does not override is not used
    labeler, rows = _band_labeler(X, "pass-b")
    short = ExactLabels(
        labeler.centers, labeler.potentials, rows[1:], labeler.labels[1:], held_key="pass-b"
    )
    computed.clear()
    out = short(X[:700], 0)
    assert len(computed) == 1 and out.min() >= 0


def _fits(Xd, monkeypatch):
    """The Dask fit with the labels held, and with them off; ``labels_`` computed."""
    held = BalancedKMeans(**_exact_params()).fit(Xd)
    held_out = held.labels_.compute()
    with monkeypatch.context() as m:
        m.setattr(DaskBlocks, "keep_labels", lambda self: False)
        plain = BalancedKMeans(**_exact_params()).fit(Xd)
        plain_out = plain.labels_.compute()
    return held, held_out, plain, plain_out


def test_a_dask_fit_takes_its_labels_from_the_last_pass_on_the_threaded_scheduler(
    threads, monkeypatch
):
    X = _data()
    ref = BalancedKMeans(**_exact_params()).fit(X)
    Xd = _dask(X, CHUNKINGS["odd"])
    computed = count_calls(monkeypatch, base, "power_labels")
    held, held_out, plain, plain_out = _fits(Xd, monkeypatch)
    # held: no chunk's labels computed; off: every chunk's (7), the same labels
    assert len(computed) == Xd.numblocks[0] == 7
    np.testing.assert_array_equal(held_out, ref.labels_)
    np.testing.assert_array_equal(plain_out, ref.labels_)
    assert held.certificate_.optimal
    # one pass over X fewer, in as many rounds
    assert held.n_passes_["x"] == plain.n_passes_["x"] - 1
    assert held.n_passes_["rounds"] == plain.n_passes_["rounds"]
    assert held_labels.held_keys() == []  # every block taken


def _count_computed_labels():
    """On a worker: count the blocks whose labels are computed (rather than taken)."""
    from ballot_dask import held_labels
    from ballot_dask.solvers import base

    real = getattr(base, "_real_power_labels", base.power_labels)
    calls = []

    def counted(*args, **kwargs):
        if not held_labels._WARMING.get():  # (not the warm-up's synthetic rows)
            calls.append(1)
        return real(*args, **kwargs)

    base._real_power_labels, base._computed, base.power_labels = real, calls, counted


def _computed_labels():
    from ballot_dask.solvers import base

    done = len(base._computed)
    base._computed.clear()
    return done


def _restore_labels():
    from ballot_dask.solvers import base

    base.power_labels = base._real_power_labels


def test_a_dask_fit_on_worker_processes_takes_the_same_labels(cluster_client, monkeypatch):
    X = _data()
    ref = BalancedKMeans(**_exact_params()).fit(X)
    cluster_client.run(_count_computed_labels)
    try:
        with cluster_client.as_current(), dask.config.set(scheduler=cluster_client):
            Xd = _dask(X, CHUNKINGS["even"]).persist()
            held = BalancedKMeans(**_exact_params()).fit(Xd)
            held_out = held.labels_.compute()
            on_held = sum(cluster_client.run(_computed_labels).values())
            with monkeypatch.context() as m:
                m.setattr(DaskBlocks, "keep_labels", lambda self: False)
                plain = BalancedKMeans(**_exact_params()).fit(Xd)
                plain_out = plain.labels_.compute()
            on_plain = sum(cluster_client.run(_computed_labels).values())
    finally:
        cluster_client.run(_restore_labels)
    # every chunk's labels computed without held labels; with them, the chunks' tasks ran
    # where their pass did and took them (a task the scheduler moved to the other worker
    # would compute its chunk's, the same labels: the placement is the scheduler's)
    assert on_plain == Xd.numblocks[0] == 4
    assert on_held < on_plain // 2
    np.testing.assert_array_equal(held_out, ref.labels_)
    np.testing.assert_array_equal(plain_out, ref.labels_)
    np.testing.assert_allclose(held.cluster_centers_, ref.cluster_centers_, rtol=1e-8, atol=1e-8)
    assert held.n_passes_["x"] == plain.n_passes_["x"] - 1
    assert held.n_passes_["rounds"] == plain.n_passes_["rounds"]


def test_a_streamed_or_sparse_x_holds_no_labels(threads):
    Xd = _dask(_data(), CHUNKINGS["even"])
    assert DaskBlocks(Xd, 4, persist=False).keep_labels() is False
    persisted = DaskBlocks(Xd, 4, persist=True)
    first, second = persisted.keep_labels(), persisted.keep_labels()
    assert isinstance(first, str) and isinstance(second, str) and first != second  # fresh
    sparse = pytest.importorskip("scipy.sparse")
    Xs = da.from_array(sparse.random(200, 5, density=0.3, format="csr", random_state=0))
    assert DaskBlocks(Xs.rechunk((50, 5)), 4, persist=True).keep_labels() is False


def _hold_blocks(offsets):
    from ballot_dask import held_labels

    for offset in offsets:
        held_labels.hold("placed", offset, np.zeros(10, dtype=np.int32))


def _where(block):
    from distributed import get_worker

    return np.array([[get_worker().address]], dtype=object)


def test_labels_tasks_are_placed_on_the_workers_that_hold_their_blocks(cluster_client):
    # tiny blocks: left to itself, the scheduler places these tasks by the workers' load
    first, second = sorted(cluster_client.scheduler_info()["workers"])
    cluster_client.run(_hold_blocks, [0, 30], workers=[first])
    cluster_client.run(_hold_blocks, [10, 20], workers=[second])
    where = held_labels.holders(cluster_client, "placed", [10, 10, 10, 10, 5])
    assert where == {0: first, 1: second, 2: second, 3: first}  # (offset 40: held nowhere)
    assert held_labels.holders(cluster_client, "another-pass", [10] * 4) == {}
    try:
        with cluster_client.as_current(), dask.config.set(scheduler=cluster_client):
            X = da.zeros((45, 2), chunks=(10, 2)).persist()
            for attempt in range(3):
                name = f"placed-{attempt}"
                with held_labels.on_holders(name, where):
                    ran = da.map_blocks(_where, X, chunks=((1,) * 5, (1,)), dtype=object,
                                        name=name)  # fmt: skip
                (ran,) = dask.persist(ran, optimize_graph=False)
                got = ran.compute().ravel().tolist()
                assert got[:4] == [first, second, second, first]
    finally:
        cluster_client.run(held_labels._HELD.clear)


def test_exact_labels_keep_the_band_narrow_and_label_any_block():
    """The band's rows and labels are held in the narrowest unsigned type (the labeler
    travels to every worker); a block past them, or among them, still gets int64 labels."""
    rng = np.random.default_rng(1)
    X, centers, v = rng.standard_normal((1200, 3)), rng.standard_normal((4, 3)), np.zeros(4)
    rows = np.array([3, 250, 40, 199])
    labeler = ExactLabels(centers, v, rows, np.array([1, 2, 3, 0]))
    assert labeler.rows.dtype == np.uint8 and labeler.labels.dtype == np.uint8
    np.testing.assert_array_equal(labeler.rows, [3, 40, 199, 250])
    np.testing.assert_array_equal(labeler.labels, [1, 3, 0, 2])
    for lo, hi in ((0, 300), (300, 1200), (200, 260)):  # past 255: no uint8 overflow
        got = labeler(X[lo:hi], lo)
        inside = (rows >= lo) & (rows < hi)
        expected = power_labels(
            X[lo:hi],
            centers,
            v,
            np.sort(rows[inside]) - lo,
            labeler.labels[np.isin(labeler.rows, rows[inside])],
        )
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
    big = ExactLabels(centers, v, np.array([70_000, 5]), np.array([3, 1]))
    assert big.rows.dtype == np.uint32 and big.labels.dtype == np.uint8
    assert labeler.for_warm_up().rows.size == 0
