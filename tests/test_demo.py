"""The demo's summary is computed on the cluster: the client never receives X."""

from __future__ import annotations

import dask
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


def _outgoing(dask_worker) -> int:
    return dask_worker.transfer_outgoing_bytes_total


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
        sent = sum(client.run(_outgoing).values())
    np.testing.assert_array_equal(figures["sizes"], np.full(k, n // k))
    assert figures["optimal"]
    assert figures["kmeans_sizes"].sum() == n
    assert 0.5 < figures["ari"] <= 1.0
    # the fit's sample and bands, the plotted 20000 rows and the k-vectors: well below X
    assert sent < x_bytes / 2, (sent, x_bytes)
