"""The compiler's pages a worker gives back after its tasks (:mod:`ballot_dask.compiler_pages`):
measured in this process and in the workers of a real LocalCluster, from ``/proc``."""

from __future__ import annotations

import sys

import dask
import dask.array as da
import numpy as np
import pytest

from ballot_dask import BalancedKMeans
from ballot_dask.compiler_pages import (
    compiler_mappings,
    compiler_resident,
    release_compiler_pages,
)
from ballot_dask.jit import njit

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and uses madvise (Linux)"
)

distributed = pytest.importorskip("distributed")


def test_release_drops_the_library_pages_and_the_compiler_still_works():
    import ballot_dask.kernels  # noqa: F401  (loads numba, hence the compiler library)

    assert compiler_mappings(), "the compiler library is mapped once numba is loaded"

    @njit()
    def add(a, b):  # compiled now: the compiler's pages are faulted in
        return a + b

    assert add(2, 3) == 5
    assert compiler_resident() > 1 << 20
    size = sum(stop - start for start, stop in compiler_mappings())
    assert release_compiler_pages() == size
    assert compiler_resident() == 0

    @njit()
    def mul(a, b):  # the compiler runs again from the pages read back
        return a * b

    assert mul(6.0, 7.0) == 42.0
    assert compiler_resident() > 0


def test_release_is_off_when_configured():
    import ballot_dask.kernels  # noqa: F401

    @njit()
    def sub(a, b):
        return a - b

    assert sub(5, 3) == 2
    before = compiler_resident()
    assert before > 0
    with dask.config.set({"ballot.release-compiler-pages": False}):
        assert release_compiler_pages() == 0
    assert compiler_resident() == before


def _fit_on_a_cluster(release: bool) -> list[int]:
    """The compiler's resident bytes in each worker after a fit, with the release on or off
    (the setting reaches the workers through the nannies' copy of the config)."""
    rng = np.random.default_rng(0)
    X = da.from_array(rng.standard_normal((4000, 4)).astype(np.float32), chunks=1000)
    with (
        dask.config.set({"ballot.release-compiler-pages": release}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        model = BalancedKMeans(4, random_state=0, max_iter=3).fit(X)
        assert model.certificate_.optimal
        labels = np.asarray(model.labels_)  # every task has run
        np.testing.assert_array_equal(np.bincount(labels, minlength=4), np.full(4, 1000))
        assert all(client.run(compiler_mappings).values())  # the workers loaded the compiler
        return list(client.run(compiler_resident).values())


def test_workers_give_back_the_compiler_pages_after_their_tasks():
    """After its last task a worker holds a small part of the compiler's machine code, not
    the 35-95 MiB it holds without the release.  Not zero: numba may still run a little of
    the library after a task, when the task's compiled objects are freed."""
    kept = _fit_on_a_cluster(release=False)
    released = _fit_on_a_cluster(release=True)
    assert min(kept) > 16 << 20, kept
    assert max(released) < min(kept) / 4, (released, kept)
