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


def _warm_runs(client, max_iter: int) -> tuple[int, np.ndarray]:
    with (
        dask.config.set({"ballot.persist": False}),  # streamed: every pass maps over X
        distributed.get_task_stream(client) as stream,
    ):
        model = BalancedKMeans(4, random_state=0, max_iter=max_iter, tol=0).fit(_data())
        labels = np.asarray(model.labels_)
    assert model.certificate_.optimal
    keys = [str(task["key"]) for task in stream.data]
    return sum("warm_task" in key for key in keys), labels


def test_each_kernel_is_warmed_once_on_every_worker_not_once_per_pass(client):
    short, _ = _warm_runs(client, max_iter=2)
    long, labels = _warm_runs(client, max_iter=5)
    assert short > 0 and short % 2 == 0  # one run on each of the two workers
    assert long == short  # more passes, no more warm-ups
    expected = BalancedKMeans(4, random_state=0, max_iter=5, tol=0).fit(np.asarray(_data()))
    np.testing.assert_array_equal(labels, expected.labels_)


def test_a_warm_up_that_fails_does_not_fail_the_pass(client):
    def rows_unless_synthetic(xb, offset):
        if xb.shape[0] == 8:  # the warm-up's synthetic block
            raise RuntimeError("not on these rows")
        return xb.shape[0]

    blocks = DaskBlocks(_data(), 4, persist=False)
    with distributed.get_task_stream(client) as stream:
        assert blocks.reduce_x(rows_unless_synthetic, sum) == 6000
    assert sum("warm_task" in str(task["key"]) for task in stream.data) == 2
