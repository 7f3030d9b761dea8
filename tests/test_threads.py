"""Threads of the compiled kernels: one or all for a block, BLAS held to one inside them."""

from __future__ import annotations

import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from ballot_dask import kernels
from ballot_dask.costs import cost_block
from ballot_dask.kernels import (
    _PARALLEL_ROWS,
    _PARALLEL_WORK,
    _threads_for,
    blas_on_one_thread,
)

pytestmark = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads for the compiled kernels"
)


def _blas_threads() -> list[int]:
    libraries = ThreadpoolController().select(user_api="blas").info()
    return [int(lib["num_threads"]) for lib in libraries]


@pytest.fixture
def two_blas_threads():
    """BLAS at two threads (as a fresh process on this machine), restored after."""
    controller = ThreadpoolController()
    if not controller.select(user_api="blas").info():
        pytest.skip("no BLAS library found by threadpoolctl")
    with controller.limit(limits=2, user_api="blas"):
        yield


def test_a_small_block_runs_on_one_thread_and_holds_blas_to_one(two_blas_threads):
    threads = numba.get_num_threads()
    assert threads >= 2
    with _threads_for(1000, blas=True):
        assert numba.get_num_threads() == 1
        assert set(_blas_threads()) == {1}
    assert numba.get_num_threads() == threads
    assert set(_blas_threads()) == {2}


def test_blas_is_held_to_one_thread_when_numba_runs_on_one_already(two_blas_threads):
    # a Dask task's kernels run on ballot.threads-per-task (1) numba threads: their products
    # still must not run on BLAS's own (their rounding followed its thread count)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _threads_for(_PARALLEL_ROWS, blas=True):
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {2}
    finally:
        numba.set_num_threads(previous)


def test_the_controller_holds_scipys_blas_the_kernels_call():
    # in a fresh process whose first use of the controller comes before anything else loaded
    # SciPy's BLAS (numba's np.dot calls it: importing ballot_dask does not load it), the
    # controller still holds it
    script = (
        "import numba, sys\n"
        "from ballot_dask.kernels import _blas_controller, _threads_for\n"
        "libraries = [c.filepath for c in _blas_controller().lib_controllers]\n"
        "from threadpoolctl import ThreadpoolController\n"
        "info = ThreadpoolController().select(user_api='blas').info()\n"
        "found = {lib['filepath'] for lib in info}\n"
        "assert 'scipy.linalg.cython_blas' in sys.modules\n"
        "assert found <= set(libraries), (found, libraries)\n"
        "numba.set_num_threads(1)\n"
        "with _threads_for(10 ** 6, blas=True):\n"
        "    info = ThreadpoolController().select(user_api='blas').info()\n"
        "    assert {lib['num_threads'] for lib in info} == {1}, info\n"
        "print(len(found))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) >= 1


class _CountedController:
    """The BLAS controller, counting the limits set through it."""

    def __init__(self, controller):
        self.controller = controller
        self.limits = 0

    def limit(self, **kwargs):
        self.limits += 1
        return self.controller.limit(**kwargs)


@pytest.fixture
def counted(monkeypatch, two_blas_threads):
    controller = _CountedController(kernels._blas_controller())
    monkeypatch.setattr(kernels, "_blas_controller", lambda: controller)
    return controller


def test_a_region_inside_a_step_s_hold_sets_no_limit_of_its_own(counted):
    # a solver step holds BLAS to one thread; its kernels' regions find it held (one limit
    # set, not one per region), and BLAS stays at one thread until the step's hold ends
    with blas_on_one_thread():
        assert counted.limits == 1
        for _ in range(3):
            with _threads_for(_PARALLEL_ROWS, blas=True):
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}
        with _threads_for(1000, blas=True), _threads_for(1000, blas=True):
            assert set(_blas_threads()) == {1}
        assert counted.limits == 1
    assert set(_blas_threads()) == {2}
    with _threads_for(_PARALLEL_ROWS, blas=True):  # no hold around it: its own
        assert set(_blas_threads()) == {1}
    assert counted.limits == 2
    assert set(_blas_threads()) == {2}


def test_another_thread_s_hold_is_not_relied_on(counted):
    # a Dask task on the threaded scheduler runs in another thread than the step: it sets
    # its own limit whatever the step's thread holds
    seen: list[set[int]] = []

    def task():
        with _threads_for(_PARALLEL_ROWS, blas=True):
            seen.append(set(_blas_threads()))

    with blas_on_one_thread():
        worker = threading.Thread(target=task)
        worker.start()
        worker.join()
        assert seen == [{1}]
        assert counted.limits == 2
        assert set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2}


def test_a_hold_ends_with_its_region_when_the_region_raises(counted):
    with pytest.raises(RuntimeError, match="inside"):
        with _threads_for(_PARALLEL_ROWS, blas=True):
            raise RuntimeError("inside")
    assert set(_blas_threads()) == {2}
    with _threads_for(_PARALLEL_ROWS, blas=True):  # the next region holds it again
        assert set(_blas_threads()) == {1}
    assert counted.limits == 2


def test_a_small_block_of_much_work_runs_in_parallel(two_blas_threads):
    threads = numba.get_num_threads()
    rows = 1000
    cells = -(-_PARALLEL_WORK // rows)
    with _threads_for(rows, blas=True, cells=cells):
        assert numba.get_num_threads() == threads
        assert set(_blas_threads()) == {1}
    with _threads_for(rows, blas=True, cells=cells - 1):
        assert numba.get_num_threads() == 1


def test_a_region_without_blas_leaves_it_alone(two_blas_threads):
    with _threads_for(_PARALLEL_ROWS):
        assert set(_blas_threads()) == {2}
        assert numba.get_num_threads() >= 2
    with _threads_for(10):
        assert set(_blas_threads()) == {2}
        assert numba.get_num_threads() == 1


@pytest.mark.parametrize(("k", "d", "rows"), [(1024, 64, 300), (256, 64, 2000), (16, 32, 5000)])
def test_costs_of_a_small_block_do_not_depend_on_its_threads(monkeypatch, k, d, rows):
    """A block of few rows whose costs are much work runs on every thread, with the same
    costs to the bit as on one thread (each slab's arithmetic is the same)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, d)).astype(np.float32)
    centers = rng.standard_normal((k, d))
    parallel = rows * k * d >= _PARALLEL_WORK
    assert parallel == (k >= 256)
    costs = cost_block(X, centers)
    monkeypatch.setattr("ballot_dask.kernels._PARALLEL_WORK", 1 << 62)  # one thread
    np.testing.assert_array_equal(cost_block(X, centers), costs)
    expected = ((X[:, None, :].astype(np.float64) - centers[None].astype(np.float32)) ** 2).sum(-1)
    np.testing.assert_allclose(costs, expected, rtol=1e-12, atol=1e-9 * float(expected.max()))


def test_a_solver_step_holds_blas_to_one_thread(two_blas_threads):
    from ballot_dask.solvers import SOLVERS, _one_blas_thread
    from ballot_dask.solvers.emd import solve_emd
    from ballot_dask.solvers.exact import solve_exact
    from ballot_dask.solvers.sinkhorn import solve_sinkhorn

    seen: list[list[int]] = []
    probe = _one_blas_thread(lambda *args, **kwargs: seen.append(_blas_threads()) or len(args))
    assert probe(1, 2, key=3) == 2
    assert seen == [[1] * len(seen[0])]
    assert set(_blas_threads()) == {2}  # restored
    wrapped = {name: getattr(step, "__wrapped__", None) for name, step in SOLVERS.items()}
    assert wrapped == {"exact": solve_exact, "sinkhorn": solve_sinkhorn, "emd": solve_emd}
