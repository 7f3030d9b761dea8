"""The warm-up of a Dask fit's kernels on the workers (``DaskBlocks._warm``): once per task
and kernel on every worker, before the first chunk is read; never a cause of failure."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from ballot_dask import BalancedKMeans
from ballot_dask.dask_blocks import DaskBlocks

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _data() -> da.Array:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6000, 4)).astype(np.float32) + np.repeat(np.eye(4) * 3, 1500, 0)
    return da.from_array(X, chunks=1500)


def _warmed(client) -> list[list[tuple[str, str]]]:
    """What each worker warmed up since the last call (and forget it)."""

    def take() -> list[tuple[str, str]]:
        from ballot_dask import dask_tasks

        runs = [tuple(run) for run in dask_tasks.WARMED]
        dask_tasks.WARMED.clear()
        return runs

    return list(client.run(take).values())


def test_each_kernel_is_warmed_once_on_every_worker_not_once_per_pass(client):
    _warmed(client)
    with dask.config.set({"ballot.persist": False}):  # streamed: every pass maps over X
        model = BalancedKMeans(4, random_state=0, max_iter=5, tol=0).fit(_data())
        labels = np.asarray(model.labels_)
    assert model.certificate_.optimal
    first, second = _warmed(client)
    assert first, "nothing warmed up"
    assert sorted(first) == sorted(second)  # every worker warmed the same kernels
    assert len(set(first)) == len(first), first  # each once, however many passes
    assert ("x_task", "ballot_dask.solvers.passes._pass_kernel") in first, first
    expected = BalancedKMeans(4, random_state=0, max_iter=5, tol=0).fit(np.asarray(_data()))
    np.testing.assert_array_equal(labels, expected.labels_)


def test_a_warm_up_that_fails_does_not_fail_the_pass(client):
    def rows_unless_synthetic(xb, offset):
        if xb.shape[0] == 8:  # the warm-up's synthetic block
            raise RuntimeError("not on these rows")
        return xb.shape[0]

    _warmed(client)
    blocks = DaskBlocks(_data(), 4, persist=False)
    assert blocks.reduce_x(rows_unless_synthetic, sum) == 6000
    assert [len(runs) for runs in _warmed(client)] == [1, 1]  # it ran, and failed, on both


#: what :func:`_record` saw (in-process workers: the graph is pickled, this module is not)
SEEN: list[tuple[int, int, np.ndarray]] = []


def _record(shared, block, offset):
    from ballot_dask.dask_tasks import x_label_task

    SEEN.append((shared.rows.size, shared.labels.size, x_label_task(shared, block, offset)))


def test_a_labeler_that_carries_the_band_is_warmed_up_without_it():
    """The exact step's labeler holds the band's rows (MiBs at 10^8 rows); each worker's
    warm-up is its own graph, so it runs on the labeler's ``for_warm_up()`` copy instead."""
    from dask.delayed import delayed

    from ballot_dask.dask_warm import warm_workers
    from ballot_dask.solvers.base import ExactLabels

    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(10**6, 50_000, replace=False))
    labeler = ExactLabels(rng.standard_normal((3, 4)), np.zeros(3), rows, rows % 3)
    SEEN.clear()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        warm_workers(_record, delayed(labeler), labeler, np.float32, 4, False, set())
    assert [(r, n) for r, n, _ in SEEN] == [(0, 0), (0, 0)]  # on both workers, no band
    for *_, labels in SEEN:  # and the same labels as the labeler gives those rows
        np.testing.assert_array_equal(labels, labeler(np.zeros((8, 4), np.float32), 0))
