"""A Zarr store larger than the cluster's memory, with zarr's default codecs (zstd) and 16 MB
chunks, against two workers of 400 MB: the fit streams it without a single pause.

Marked ``outofcore``: a separate step of ``.ci/run`` (a few minutes), not the default run.
"""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
import zarr
from dask_cases import worker_troubles

from ballot_dask import BalancedKMeans

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.outofcore


def _write(path, n: int, d: int, k: int, rows: int, seed: int) -> None:
    """float32, zarr's default compressor (zstd), written chunk by chunk: an overlapping
    balanced mixture (means from N(0, 0.25 I), unit noise, row i in component i % k)."""
    rng = np.random.default_rng(seed)
    means = (0.5 * rng.standard_normal((k, d))).astype(np.float32)
    store = zarr.create_array(str(path), shape=(n, d), chunks=(rows, d), dtype="float32")
    for i, start in enumerate(range(0, n, rows)):
        stop = min(start + rows, n)
        block = np.random.default_rng([seed, i]).standard_normal((stop - start, d), np.float32)
        store[start:stop] = block + means[np.arange(start, stop) % k]


def test_zstd_store_larger_than_memory_streams_without_a_pause(tmp_path):
    n, d, k, rows = 16_000_000, 16, 8, 250_000  # 1.02 GB of float32, 16 MB chunks
    limit = 400_000_000
    path = tmp_path / "X.zarr"
    _write(path, n, d, k, rows, seed=5)
    assert zarr.open_array(str(path)).compressors  # compressed (zstd), as zarr writes it
    X = da.from_zarr(str(path))
    assert X.nbytes > 2 * limit
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        workers = set(client.scheduler_info()["workers"])
        pids = client.run(os.getpid)  # a builtin: the workers import nothing of the tests
        model = BalancedKMeans(k, random_state=0, max_iter=3).fit(X)
        counts = da.bincount(model.labels_, minlength=k).compute()
        assert set(client.scheduler_info()["workers"]) == workers  # none died or restarted
        troubles = worker_troubles(client)
        peaks = {pid: _peak_mib(pid) for pid in pids.values()}  # read from this process
    assert not troubles, (peaks, troubles[:5])
    np.testing.assert_array_equal(counts, np.full(k, n // k))
    np.testing.assert_array_equal(model.sizes_, np.full(k, n // k))
    assert model.certificate_.optimal
    assert model.n_passes_["cost"] <= model.n_passes_["x"]  # streamed: costs rebuilt from X


def _peak_mib(pid: int) -> int:
    """A process's peak resident memory (``VmHWM``), in MiB: reported with a failure."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    return -1
