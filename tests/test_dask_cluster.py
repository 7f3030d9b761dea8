"""The Dask engine on a real multi-process cluster under stress: a worker killed in the middle
of a fit, and a Zarr store several times larger than the cluster's memory (slow)."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading

import dask.array as da
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from dask_cases import worker_troubles  # noqa: E402

from ballot_dask import BalancedKMeans  # noqa: E402


def _blobs(n: int, d: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.uniform(-6, 6, size=(k, d))
    return means[rng.integers(k, size=n)] + rng.standard_normal((n, d))


class _IterationWatcher(logging.Handler):
    """Sets an event when the fit logs its ``at``-th Lloyd iteration."""

    def __init__(self, at: int) -> None:
        super().__init__(logging.INFO)
        self.at = at
        self.reached = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"iteration (\d+):", record.getMessage())
        if match and int(match.group(1)) >= self.at:
            self.reached.set()


def test_fit_survives_a_killed_worker():
    n, d, k = 240_000, 6, 8
    # no cluster structure: Lloyd's iterations go on slowly, so the kill lands mid-fit
    X = np.random.default_rng(0).standard_normal((n, d))
    init = X[np.random.default_rng(10).choice(n, k, replace=False)]
    params = dict(init=init, tol=0, max_iter=30)
    reference = BalancedKMeans(k, **params).fit(X)
    assert reference.n_iter_ >= 8  # long enough to be interrupted

    logger = logging.getLogger("ballot_dask")
    watcher = _IterationWatcher(at=3)
    logger.addHandler(watcher)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            Xd = da.from_array(X, chunks=(20_000, d))
            outcome: dict[str, object] = {}

            def fit() -> None:
                try:
                    outcome["model"] = BalancedKMeans(k, **params).fit(Xd)
                    outcome["labels"] = outcome["model"].labels_.compute()
                except BaseException as exc:  # reported by the main thread
                    outcome["error"] = exc

            before = client.run(os.getpid)
            runner = threading.Thread(target=fit, daemon=True)
            runner.start()
            assert watcher.reached.wait(240), "the fit never reached its third iteration"
            victim = sorted(before.values())[0]
            os.kill(victim, signal.SIGKILL)
            assert "model" not in outcome  # killed in the middle of the fit, not after it
            runner.join(600)
            assert not runner.is_alive(), "the fit did not finish after the worker was killed"
            client.wait_for_workers(2, timeout=60)
            after = client.run(os.getpid)
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)

    assert "error" not in outcome, outcome.get("error")
    assert victim not in after.values()  # the nanny started a new worker process
    model = outcome["model"]
    np.testing.assert_array_equal(outcome["labels"], reference.labels_)
    np.testing.assert_allclose(
        model.cluster_centers_, reference.cluster_centers_, rtol=0, atol=1e-8
    )
    np.testing.assert_array_equal(model.sizes_, reference.sizes_)
    assert model.n_iter_ == reference.n_iter_
    assert model.certificate_.optimal


def _write_mixture_store(path, n: int, d: int, k: int, rows: int, seed: int) -> None:
    """A float32 Zarr array written chunk by chunk (never whole in memory): the paper's
    balanced Gaussian mixture with overlapping components (means drawn from N(0, 0.25 I), unit
    noise; row ``i`` belongs to component ``i % k``)."""
    rng = np.random.default_rng(seed)
    means = (0.5 * rng.standard_normal((k, d))).astype(np.float32)
    store = zarr.create_array(
        str(path), shape=(n, d), chunks=(rows, d), dtype="float32", compressors=None
    )
    for i, start in enumerate(range(0, n, rows)):
        stop = min(start + rows, n)
        chunk_rng = np.random.default_rng([seed, i])
        block = chunk_rng.standard_normal((stop - start, d), dtype=np.float32)
        block += means[np.arange(start, stop) % k]
        store[start:stop] = block


@pytest.mark.slow
def test_zarr_store_larger_than_cluster_memory(tmp_path):
    n, d, k, rows = 20_000_000, 32, 8, 100_000  # 2.56 GB of float32
    limit = 400_000_000  # per worker: the store is 3.2 times the cluster's memory
    path = tmp_path / "X.zarr"
    _write_mixture_store(path, n, d, k, rows, seed=11)
    X = da.from_zarr(str(path))
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
        assert X.nbytes >= 3 * 2 * limit
        workers = set(client.scheduler_info()["workers"])
        model = BalancedKMeans(k, random_state=0, tol=0, max_iter=4).fit(X)
        labels = model.labels_
        counts = da.bincount(labels, minlength=k).compute()  # per chunk, then summed
        assert set(client.scheduler_info()["workers"]) == workers  # none died or restarted
        troubles = worker_troubles(client)
    assert not troubles, troubles
    np.testing.assert_array_equal(counts, np.full(k, n // k))
    np.testing.assert_array_equal(model.sizes_, np.full(k, n // k))
    assert model.certificate_.optimal
    assert labels.chunks[0] == X.chunks[0]
    # streamed: every pass over the cost blocks read X again, so passes over X >= cost passes
    assert model.n_passes_["x"] >= model.n_passes_["cost"]
