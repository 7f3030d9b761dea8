"""The check a Dask fit makes before its first round: one task's read of the largest chunk
against each worker's room below its pause threshold (a real LocalCluster of small workers)."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from ballot_dask import BalancedKMeans
from ballot_dask.dask_blocks import DaskBlocks
from ballot_dask.task_memory import worker_room

distributed = pytest.importorskip("distributed")

LIMIT = 300_000_000  # pause at 240 MB; a loaded worker is counted as holding 200 MiB


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=LIMIT,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _rows(megabytes: float, d: int = 16) -> int:
    return int(megabytes * 1e6 / (4 * d))


def test_room_is_below_the_pause_threshold(client):
    rooms = worker_room(client)
    assert len(rooms) == 2
    for _, limit, room in rooms:
        assert limit == LIMIT
        assert room == int(0.8 * LIMIT) - 200 * 2**20  # idle workers: the floor counts


def test_a_chunk_no_task_can_read_is_refused_before_any_work(client):
    rows = _rows(20)  # read twice: 40 MB, over the 30 MB of room
    X = da.zeros((2 * rows, 16), chunks=(rows, 16), dtype=np.float32)
    with pytest.raises(ValueError, match=r"X's largest chunk \(312,500 rows") as info:
        BalancedKMeans(4, max_iter=1).fit(X)
    message = str(info.value)
    assert "pause threshold" in message
    fits = (int(0.8 * LIMIT) - 200 * 2**20) // (2 * 64)
    assert f"X.rechunk({{0: {fits}}})" in message
    assert not client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def test_a_chunk_a_compressed_read_may_not_fit_is_warned_about(client):
    rows = _rows(12)  # 24 MB read plainly, 36 MB from a compressed store: over 30 MB
    X = da.zeros((2 * rows, 16), chunks=(rows, 16), dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="may pause a worker"):
        DaskBlocks(X, 4)


def test_a_small_chunk_passes_silently(client):
    rows = _rows(4)
    X = da.zeros((2 * rows, 16), chunks=(rows, 16), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        DaskBlocks(X, 4)
