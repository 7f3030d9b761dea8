"""The heaviest kernels (the exact pass, E-BalLOT's pass) compiled ahead in a child process, on a
cold kernel cache (:mod:`.ahead`)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from ballot_dask import ahead, jit
from ballot_dask.exact_pass import _exact_pass, exact_pass, pass_signature
from ballot_dask.progress import cli_logging


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_signature_compiled_ahead_is_the_one_a_pass_runs(dtype) -> None:
    # a pass with every option the fits use (weights, candidates, an allowance, labels kept)
    # and a read-only block, as a Dask worker receives it, runs the one signature
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 5)).astype(dtype)
    centers = rng.standard_normal((7, 5))
    frozen = X.copy()
    frozen.flags.writeable = False
    exact_pass(X, centers, np.zeros(7), 0.5, 100)
    before = set(_exact_pass.overloads)
    exact_pass(
        frozen,
        centers,
        rng.standard_normal(7),
        np.inf,
        50,
        7,
        weights=rng.random(3000),
        width=3,
        pair_scale=0.1,
        allowance=np.full((7, 7), 0.2),
        keep_labels=True,
    )
    assert pass_signature(dtype) in _exact_pass.overloads
    assert set(_exact_pass.overloads) == before


def test_a_cold_process_loads_the_pass_its_child_compiled(tmp_path) -> None:
    # an empty kernel cache: the child compiles the float32 pass into it and the pass of
    # this process waits for it and loads it (a cache hit, no compile of its own)
    script = textwrap.dedent(
        """
        import json
        import logging
        import numpy as np
        from ballot_dask import ahead
        from ballot_dask.exact_pass import _exact_pass, exact_pass, pass_signature

        logging.basicConfig(level=logging.INFO)
        X = np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32)
        started = [ahead.start(X), ahead.start(X)]  # the second: still compiling
        children = len(ahead._PENDING)
        exact_pass(X, X[:4].astype(np.float64), np.zeros(4), np.inf, 100)
        signature = pass_signature(np.float32)
        print(json.dumps({
            "started": started,
            "children": children,
            "hits": _exact_pass.stats.cache_hits[signature],
            "misses": _exact_pass.stats.cache_misses[signature],
            "left": len(ahead._PENDING),
            "again": ahead.start(X),
        }))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("DASK_BALLOT__COMPILE_AHEAD", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "compiling the kernels for float32 data" in done.stderr
    assert done.stderr.count("compiling the kernels") == 1
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "started": [True, True],
        "children": 1,
        "hits": 1,
        "misses": 0,
        "left": 0,
        "again": False,
    }


def test_a_cold_process_loads_the_entropic_pass_its_child_compiled(tmp_path) -> None:
    # E-BalLOT's pass, with the plan's moments (float32 rows) and without: the child compiles
    # both into an empty cache, and the passes of this process load them (cache hits)
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        from ballot_dask import ahead
        from ballot_dask.entropic_pass import (
            NO_ROWS, _entropic, entropic_signatures, run_entropic,
        )

        X = np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32)
        started = ahead.start(X, "entropic")
        C = np.random.default_rng(1).random((500, 4))
        with_rows = run_entropic(C, np.zeros(4), 0.5, True, X)
        without = run_entropic(C, np.zeros(4), 0.5, False, NO_ROWS)
        signatures = entropic_signatures(np.float32)
        print(json.dumps({
            "started": started,
            "signatures": len(signatures),
            "hits": [_entropic.stats.cache_hits[s] for s in signatures],
            "misses": [_entropic.stats.cache_misses[s] for s in signatures],
            "left": len(ahead._PENDING),
            "again": ahead.start(X, "entropic"),
            "columns": [float(with_rows[1].sum()), float(without[1].sum())],
        }))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("DASK_BALLOT__COMPILE_AHEAD", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # each row of the plan sums to 1: the columns' direct sums hold every row's mass
    assert found["columns"] == pytest.approx([500.0, 500.0], rel=1e-12)
    del found["columns"]
    assert found == {
        "started": True,
        "signatures": 2,
        "hits": [1, 1],
        "misses": [0, 0],
        "left": 0,
        "again": False,
    }


def test_only_named_kernels_are_compiled_ahead() -> None:
    with pytest.raises(ValueError, match="kernel must be one of"):
        ahead.start(np.zeros((4, 2)), "sinkhorn")
    assert {k for kernels in ahead.FOR_METHOD.values() for k in kernels} == set(ahead.KERNELS)


def test_no_child_where_it_would_not_help(monkeypatch) -> None:
    X = np.zeros((10, 2), dtype=np.float64)
    key = ("exact", np.dtype(np.float64).str)
    exact_pass(X, np.zeros((2, 2)), np.zeros(2), 0.0, 0)  # compiled (or loaded) here
    assert not ahead.start(X)  # in this process already
    # from here as on a cold cache: each case below would otherwise start a child
    monkeypatch.setattr(ahead, "_compiled_or_cached", lambda kernel, dtype: False)
    assert not ahead.start(np.zeros((10, 2), dtype=np.int64))  # converted before a pass
    assert not ahead.start(sp.random(10, 2, format="csr"))  # the sparse pass: its own kernel
    assert not ahead.start(da.from_array(sp.random(10, 2, format="csr"), chunks=5))
    with dask.config.set({"ballot.compile-ahead": False}):
        assert not ahead.start(X)
    with monkeypatch.context() as patched:
        patched.setattr(jit, "_CACHE", None)  # kernel cache off: the child's work is lost
        assert not ahead.start(X)
    with monkeypatch.context() as patched:
        patched.setattr(sys, "executable", "")  # an embedded interpreter
        assert not ahead.start(X)
    assert key not in ahead._PENDING
    # otherwise a child is started (here it finds the pass in the cache, and ends)
    assert ahead.start(X)
    assert key in ahead._PENDING
    ahead.wait_for_pass(np.float64)
    assert key not in ahead._PENDING


def test_a_child_that_fails_or_hangs_leaves_the_pass_to_its_caller(monkeypatch, caplog) -> None:
    X = np.random.default_rng(1).standard_normal((200, 3))
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    monkeypatch.setitem(ahead._PENDING, ("exact", np.dtype(np.float64).str), failed)
    with caplog.at_level(logging.DEBUG, logger="ballot_dask.ahead"):
        found = exact_pass(X, X[:3], np.zeros(3), np.inf, 200)
    assert "exit code 3" in caplog.text
    assert not ahead._PENDING
    assert found.counts.sum() + found.rows.shape[0] == 200
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setitem(ahead._PENDING, ("exact", np.dtype(np.float64).str), hung)
    monkeypatch.setattr(ahead, "_TIMEOUT", 0.5)
    exact_pass(X, X[:3], np.zeros(3), np.inf, 200)
    assert hung.returncode is not None  # killed, not left behind
    assert not ahead._PENDING


@pytest.mark.parametrize(("mode", "shown"), [("tty", True), ("log", True), ("quiet", False)])
def test_the_command_line_says_that_the_kernels_are_compiling(mode, shown) -> None:
    # on a terminal the display replaces the INFO lines, but not this one: up to a minute
    # with nothing else on the screen
    stream = io.StringIO()
    with cli_logging(mode, stream):
        logging.getLogger("ballot_dask.ahead").info("compiling the kernels for float32 data")
        logging.getLogger("ballot_dask").info("iteration 1: objective 3.0")
        logging.getLogger("ballot_dask").warning("a warning")
    written = stream.getvalue()
    assert ("compiling the kernels for float32 data" in written) is shown
    assert ("iteration 1" in written) is (mode == "log")
    assert "a warning" in written
