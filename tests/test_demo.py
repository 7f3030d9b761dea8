"""The demo's summary is computed on the cluster: the client never receives X."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix

from ballot_dask.demo import adjusted_rand_index, run_demo


@pytest.mark.parametrize("seed", range(4))
def test_adjusted_rand_index_from_the_table_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, 500)
    b = np.where(rng.random(500) < 0.7, a, rng.integers(0, 4, 500))
    table = contingency_matrix(a, b)
    assert adjusted_rand_index(table) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index(contingency_matrix(a, a)) == 1.0


def _transfers(dask_worker) -> list[int]:
    """Bytes of each transfer the worker sent (to the client: it is the only worker)."""
    return [int(entry["total"]) for entry in dask_worker.transfer_outgoing_log]


def test_demo_never_sends_x_to_the_client(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    n, d, k = 300_000, 8, 4
    x_bytes = n * d * 8
    # one worker: everything it sends goes to the client
    with (
        dask.config.set({"ballot.init-sample": 8192}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        figures = run_demo(
            client, n=n, k=k, d=d, model="gmm", delta=4.0, chunks=100_000, seed=0,
            plot=tmp_path / "demo.png", quiet=True,
        )  # fmt: skip
        (sent,) = client.run(_transfers).values()
        # the probe can see X go: half of it computed on the client is one transfer of
        # half X's bytes
        X = da.random.default_rng(0).standard_normal((n, d), chunks=(100_000, d))
        X.persist()[: n // 2].compute()
        (probe,) = client.run(_transfers).values()
    np.testing.assert_array_equal(figures["sizes"], np.full(k, n // k))
    assert figures["optimal"]
    assert figures["kmeans_sizes"].sum() == n
    assert 0.5 < figures["ari"] <= 1.0
    # every round returns the fit's sample, a band of doubtful rows, the plotted 20000 rows
    # or k-vectors: each well below X. Over the fit the bands add up (each iteration has its
    # own), but not to X
    assert sent and max(sent) < x_bytes / 4, (max(sent), x_bytes)
    assert sum(sent) < x_bytes, (sum(sent), x_bytes)
    assert max(probe[len(sent) :]) >= x_bytes / 2
