"""The heaviest kernels compiled ahead, in other processes, while a cold fit compiles the rest.

The first fit after an install (or after any change to the sources, which starts a fresh
kernel cache, :mod:`ballot_dask.jit`) compiles its kernels before it computes much.  Two of
them take most of that time, and a fit needs each only after it has compiled others:

- ``"exact"``: the exact pass (:func:`~ballot_dask.exact_pass.exact_pass`), about 28 s of an
  exact fit's 55 s here for one dtype (the others: the costs, the top-two search, the
  repair's shortest paths, about 25 s);
- ``"entropic"``: E-BalLOT's pass (:func:`~ballot_dask.entropic_pass.run_entropic`), with
  and without the plan's moments: about 48 s of an E-BalLOT fit's 95 s (float32 rows, 16
  features; the fit compiles the exact pass and the repair too, about 45 s).

numba compiles under one lock a process, so two kernels cannot compile side by side in one
process.  :func:`start` (called when a fit starts, for each of its method's kernels,
:data:`FOR_METHOD`) therefore compiles a kernel for X's dtype in a child process, into the
kernel cache, when the cache is on and does not hold it yet; the kernel's first call waits
for the child (:func:`wait_for`) and loads it from the cache.  Nothing else changes: the
same kernel, compiled once.  A child that fails or does not finish in ``_TIMEOUT`` seconds
leaves the kernel to be compiled where it is called, as without this; a child whose fit
ended first (or never needed the kernel) still completes the cache for the next one.
Starting a fit's children logs an INFO line on the ``ballot_dask.ahead`` logger (the
command line shows it on a terminal too).  ``ballot.compile-ahead: false`` turns it off.
Dask workers compile or load their own kernels as before (on one machine they share the
cache, so they load it).
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

__all__ = ["FOR_METHOD", "KERNELS", "start", "wait_for", "wait_for_pass"]

logger = logging.getLogger(__name__)

#: what :func:`start` compiles ahead (see the module docstring) ...
KERNELS = ("exact", "entropic")
#: ... for a fit's ``method`` (none for ``"emd"``), each in its own child.  An E-BalLOT fit
#: runs its own pass first and the exact pass later (float32 rows, 16 features: from an
#: empty cache, 91 s with only its pass compiled aside, of which 40 s waiting for the child
#: and 22 s compiling the exact pass after; 2 cores)
FOR_METHOD = {"exact": ("exact",), "sinkhorn": ("entropic", "exact")}
#: seconds a kernel's first call waits for the child at most (then compiles it itself)
_TIMEOUT = 600.0
#: the children compiling, by kernel and dtype (``np.dtype.str``)
_PENDING: dict[tuple[str, str], subprocess.Popen] = {}
_LOCK = threading.Lock()

_CHILD = (
    "import sys; from ballot_dask.ahead import _compile; "
    "sys.exit(_compile(sys.argv[1], sys.argv[2]))"
)


def start(X: Any, kernel: str = "exact") -> bool:
    """Compile ``kernel`` (one of :data:`KERNELS`) for X's dtype in a child process, into the
    kernel cache, unless it is there (or in this process) already, X is sparse (its passes
    are other kernels), the cache is off, the machine has one core or
    ``ballot.compile-ahead`` is false.  ``X``: a NumPy, scipy.sparse or Dask array.  Returns
    whether a child was started (or is still compiling)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    dtype = np.dtype(X.dtype)
    sparse = issparse(X) or issparse(getattr(X, "_meta", None))
    if sparse or dtype not in (np.float32, np.float64) or not config.get("compile-ahead"):
        return False
    from . import jit

    disabled = numba.config.DISABLE_JIT  # type: ignore[attr-defined]
    if jit._CACHE is None or disabled or (os.cpu_count() or 1) < 2 or not sys.executable:
        return False  # (no interpreter to start: an embedded Python)
    with _LOCK:
        if (kernel, dtype.str) in _PENDING:
            return True
        if _compiled_or_cached(kernel, dtype):
            return False
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.dirname(jit._CACHE))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, kernel, dtype.str],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as error:  # no process to spare: compiled where it is called
            logger.debug("%s pass not compiled ahead: %s", kernel, error)
            return False
        first = not any(key[1] == dtype.str for key in _PENDING)
        _PENDING[kernel, dtype.str] = child
        if not first:  # (said once for the dtype)
            return True
        logger.info(
            "compiling the kernels for %s data (first use after an install or upgrade: "
            "30-60 s on 2 cores; cached in %s afterwards)",
            dtype.name,
            os.path.dirname(jit._CACHE),
        )
        return True


def wait_for(kernel: str, dtype: Any = None) -> None:
    """Before ``kernel`` runs on X of ``dtype`` (``None``: of any dtype): wait for the
    children compiling it, if any (at most ``_TIMEOUT`` seconds each), so that it loads
    from the cache."""
    if not _PENDING:  # in a Dask worker, and once the children are done
        return
    with _LOCK:  # the other threads wait here too, rather than compile the kernel again
        keys = [
            key
            for key in _PENDING
            if key[0] == kernel and (dtype is None or key[1] == np.dtype(dtype).str)
        ]
        for key in keys:
            child = _PENDING[key]
            try:
                code = child.wait(timeout=_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            del _PENDING[key]
            if code != 0:
                logger.debug("compiling the %s pass ahead failed (exit code %s)", kernel, code)


def wait_for_pass(dtype: Any) -> None:
    """:func:`wait_for` the exact pass on X of ``dtype``."""
    wait_for("exact", dtype)


def _compiled(kernel: str, dtype: np.dtype) -> tuple[Any, list[tuple]]:
    """``kernel``'s dispatcher and the signatures a fit on X of ``dtype`` runs it with."""
    if kernel == "exact":
        from .exact_pass import _exact_pass, pass_signature

        return _exact_pass, [pass_signature(dtype)]
    from .entropic_pass import _entropic, entropic_signatures

    return _entropic, entropic_signatures(dtype)


def _compiled_or_cached(kernel: str, dtype: np.dtype) -> bool:
    """Whether this process has ``kernel`` for ``dtype`` or the kernel cache holds it.  The
    cache's index is numba's own; if it cannot be read, as if the kernel were there (so no
    child: it is then compiled where it is called, as without this module)."""
    dispatcher, signatures = _compiled(kernel, dtype)
    if all(signature in dispatcher.overloads for signature in signatures):
        return True
    try:
        cache = dispatcher._cache
        index = cache._cache_file._load_index()
        codegen = dispatcher.targetctx.codegen()
        return all(cache._index_key(signature, codegen) in index for signature in signatures)
    except Exception:  # another numba's internals
        return True


def _compile(kernel: str, dtype: str) -> int:
    """In the child: run ``kernel`` on a few rows of ``dtype`` (compiling it into the cache;
    the exact pass with the gather of its band rows).  Returns 0 when every signature a fit
    runs it with is now compiled."""
    X = np.zeros((4, 2), dtype=np.dtype(dtype))
    if kernel == "exact":
        from .exact_pass import exact_pass

        exact_pass(X, np.zeros((2, 2)), np.zeros(2), np.inf, 4)
    else:
        from .entropic_pass import NO_ROWS, run_entropic

        C = np.ones((4, 2))
        run_entropic(C, np.zeros(2), 1.0, True, X)  # with the plan's moments
        run_entropic(C, np.zeros(2), 1.0, True, NO_ROWS)  # without
    dispatcher, signatures = _compiled(kernel, X.dtype)
    return 0 if all(signature in dispatcher.overloads for signature in signatures) else 1
