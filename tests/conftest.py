"""Dask scheduler fixtures shared by the Dask engine's tests."""

from __future__ import annotations

import dask
import pytest

from ballot_dask.dask_blocks import active_client

# --------------------------------------------------------------------------------------------
# schedulers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_client():
    """Two single-threaded worker processes, for the whole module (startup costs seconds).
    The client is not made the global default: the ``scheduler`` fixture installs it."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(params=["threads", "distributed"])
def scheduler(request):
    """The active Dask scheduler while the test runs: ``"threads"`` or the module's cluster."""
    if request.param == "threads":
        with dask.config.set(scheduler="threads"):
            assert active_client() is None
            yield "threads"
    else:
        client = request.getfixturevalue("cluster_client")
        with client.as_current(), dask.config.set(scheduler=client):
            assert active_client() is client
            yield "distributed"


@pytest.fixture
def threads():
    """The threaded scheduler only (tests of errors raised before any computation, and of
    process-local counters)."""
    with dask.config.set(scheduler="threads"):
        yield
