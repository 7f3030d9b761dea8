"""The exact pass compiled ahead, in a second process, while a cold fit compiles the rest.

The first exact fit after an install (or after any change to the sources, which starts a
fresh kernel cache, :mod:`ballot_dask.jit`) compiles its kernels before it computes much:
about 55 s here, of which the exact pass (:func:`~ballot_dask.exact_pass.exact_pass`) takes
28 s for one dtype.  The fit needs that pass only after it has compiled the others (the
costs, the top-two search, the repair's shortest paths: about 25 s), and numba compiles
under one lock a process, so the two cannot overlap in one process.

:func:`start` (called when a fit starts) therefore compiles the pass for X's dtype in a
child process, into the kernel cache, when the cache is on and does not hold it yet; the
first pass of the fit waits for the child (:func:`wait_for_pass`) and loads the pass from
the cache.  Nothing else changes: the same kernel, compiled once.  A child that fails or
does not finish in ``_TIMEOUT`` seconds leaves the pass to be compiled where it is called,
as without this; a child whose fit ended first (or never needed the pass) still completes
the cache for the next one.  Starting a child logs an INFO line on the
``ballot_dask.ahead`` logger (the command line shows it on a terminal too).
``ballot.compile-ahead: false`` turns it off.  Dask workers compile or load their own
kernels as before (on one machine they share the cache, so they load it).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import Any

import numba
import numpy as np
from scipy.sparse import issparse

from . import config

__all__ = ["start", "wait_for_pass"]

logger = logging.getLogger(__name__)

#: seconds a pass waits for the child at most (then compiles the pass itself)
_TIMEOUT = 600.0
#: the children compiling, by dtype (``np.dtype.str``)
_PENDING: dict[str, subprocess.Popen] = {}
_LOCK = threading.Lock()

_CHILD = "import sys; from ballot_dask.ahead import _compile; sys.exit(_compile(sys.argv[1]))"


def start(X: Any) -> bool:
    """Compile the exact pass for X's dtype in a child process, into the kernel cache, unless
    it is there (or in this process) already, X is sparse (its pass is another kernel), the
    cache is off, the machine has one core or ``ballot.compile-ahead`` is false.  ``X``: a
    NumPy, scipy.sparse or Dask array.  Returns whether a child was started (or is still
    compiling)."""
    dtype = np.dtype(X.dtype)
    sparse = issparse(X) or issparse(getattr(X, "_meta", None))
    if sparse or dtype not in (np.float32, np.float64) or not config.get("compile-ahead"):
        return False
    from . import jit

    disabled = numba.config.DISABLE_JIT  # type: ignore[attr-defined]
    if jit._CACHE is None or disabled or (os.cpu_count() or 1) < 2 or not sys.executable:
        return False  # (no interpreter to start: an embedded Python)
    with _LOCK:
        if dtype.str in _PENDING:
            return True
        if _compiled_or_cached(dtype):
            return False
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.dirname(jit._CACHE))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, dtype.str],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as error:  # no process to spare: compiled where it is called
            logger.debug("exact pass not compiled ahead: %s", error)
            return False
        _PENDING[dtype.str] = child
        logger.info(
            "compiling the kernels for %s data (first use after an install or upgrade: "
            "30-60 s on 2 cores; cached in %s afterwards)",
            dtype.name,
            os.path.dirname(jit._CACHE),
        )
        return True


def wait_for_pass(dtype: Any) -> None:
    """Before the exact pass on X of ``dtype`` runs: wait for the child compiling it, if
    any (at most ``_TIMEOUT`` seconds), so that the pass loads from the cache."""
    if not _PENDING:  # in a Dask worker, and once the child is done
        return
    with _LOCK:  # the other threads wait here too, rather than compile the pass again
        child = _PENDING.get(np.dtype(dtype).str)
        if child is None:
            return
        try:
            code = child.wait(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        del _PENDING[np.dtype(dtype).str]
    if code != 0:
        logger.debug("compiling the exact pass ahead failed (exit code %s)", code)


def _compiled_or_cached(dtype: np.dtype) -> bool:
    """Whether this process has the exact pass for ``dtype`` or the kernel cache holds it.
    The cache's index is numba's own; if it cannot be read, as if the pass were there (so no
    child: the pass is then compiled where it is called, as without this module)."""
    from .exact_pass import _exact_pass, pass_signature

    signature = pass_signature(dtype)
    if signature in _exact_pass.overloads:
        return True
    try:
        cache = _exact_pass._cache
        key = cache._index_key(signature, _exact_pass.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # another numba's internals
        return True


def _compile(dtype: str) -> int:
    """In the child: run the exact pass on a few rows of ``dtype`` (compiling it, and the
    gather of its band rows, into the cache).  Returns 0 when the pass the fit will call is
    now compiled."""
    from .exact_pass import _exact_pass, exact_pass, pass_signature

    X = np.zeros((4, 2), dtype=np.dtype(dtype))
    exact_pass(X, np.zeros((2, 2)), np.zeros(2), np.inf, 4)
    return 0 if pass_signature(X.dtype) in _exact_pass.overloads else 1
