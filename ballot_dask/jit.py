"""The compiler of the per-chunk kernels: numba's ``njit``, with the cache in its own place.

numba caches compiled functions beside their source (``ballot_dask/__pycache__``) by default.
That is wrong for an installed package: site-packages may be read-only (a container's worker
user), and cache files left in an installed package directory outlive ``pip uninstall`` and
turn ``ballot_dask`` into a namespace package that shadows a later editable install.  The
kernels are therefore cached in the directory :func:`cache_dir` names, chosen in this order:

1. ``NUMBA_CACHE_DIR``, numba's own setting, when set;
2. ``ballot.kernel-cache`` (``DASK_BALLOT__KERNEL_CACHE``): a path, or ``false`` for no cache;
3. ``<temp dir>/ballot-dask-<uid>/kernels``, private to the user (mode 0700).

Nothing is written to the package directory nor to the home directory.  A directory that is
not the user's own, or that others may write to, is not used (a cache holds code that is
loaded on import): the kernels are then compiled in every process.  The setting is read when
:mod:`ballot_dask.kernels` is first imported (in every Dask worker too).

Within that directory the kernels go to ``src-<stamp>``, :func:`source_stamp` of the
package's sources.  numba checks a cached kernel against its own source file only, but a
kernel inlines functions and constants from other modules (the sparse pass inlines the exact
pass's per-row step): after a change to one of those alone, it would load stale code (a
histogram read with other bins than it was filled with, a solver that never ends).  Any
change to any source file therefore starts a fresh cache; the older ``src-*`` directories
may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core.cpu_options import ParallelOptions

from . import config

__all__ = ["cache_dir", "njit", "read_only", "source_stamp"]


def _private_dir(path: str) -> bool:
    """Create ``path`` (mode 0700) if needed; True when it is ours and no one else may write."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    return not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def cache_dir() -> str | None:
    """Where compiled kernels are cached (``None``: not cached); see the module docstring."""
    if numba.config.CACHE_DIR:  # type: ignore[attr-defined]
        return str(numba.config.CACHE_DIR)  # type: ignore[attr-defined]
    value = config.get("kernel-cache")
    if value is False or (isinstance(value, str) and value.strip().lower() in ("false", "no")):
        return None
    if value in (None, "auto") or (isinstance(value, str) and not value.strip()):
        user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        base = os.path.join(tempfile.gettempdir(), f"ballot-dask-{user}")
        path = os.path.join(base, "kernels")
        if not (_private_dir(base) and _private_dir(path)):
            warnings.warn(
                f"the kernel cache {path} is not private to this user; the compiled kernels "
                "are not cached (set ballot.kernel-cache or NUMBA_CACHE_DIR to a directory "
                "of your own)",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        return path
    return os.path.abspath(os.path.expanduser(str(value)))


def source_stamp(root: str | None = None) -> str:
    """A fingerprint of the sources under ``root`` (default: this package): every ``.py``
    file's relative path, size and modification time."""
    root = os.path.dirname(os.path.abspath(__file__)) if root is None else root
    digest = hashlib.sha1()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                info = os.stat(path)
                entry = f"{os.path.relpath(path, root)}:{info.st_size}:{info.st_mtime_ns}\n"
                digest.update(entry.encode())
    return digest.hexdigest()[:16]


def _kernel_dir() -> str | None:
    """Where this version of the sources caches its kernels: ``cache_dir()/src-<stamp>``."""
    base = cache_dir()
    return None if base is None else os.path.join(base, f"src-{source_stamp()}")


_CACHE = _kernel_dir()


def read_only(a: Any) -> Any:
    """``a`` as a read-only view (``a`` itself when it is read-only already).

    numba compiles a kernel once per argument type, and a read-only array is another type
    than a writable one.  The arrays a Dask worker receives are read-only (deserialised
    buffers); those of an in-memory fit are not.  Every input array of a kernel (X, a cost
    block) goes in through this view, so that both share one compiled kernel per dtype
    instead of two (the full test suite compiles 83 signatures instead of 101).
    """
    if not isinstance(a, np.ndarray) or not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def _prange_only() -> ParallelOptions:
    """numba's parallel options with the ``prange`` loops alone made parallel.  An options
    object, not a dict: numba empties the dict it is given when it compiles the first
    signature, so that every later signature would be compiled with all options on."""
    off = ("comprehension", "reduction", "inplace_binop", "setitem", "numpy", "stencil")
    return ParallelOptions({"prange": True, "fusion": False, **dict.fromkeys(off, False)})


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)`` with the compiled code cached in :func:`cache_dir`.

    ``parallel=True`` makes the ``prange`` loops parallel and nothing else (each kernel
    splits its rows between threads itself).  numba's own ``parallel=True`` also turns every
    array allocation and array expression (the per-lane sums' ``np.zeros``) into a parallel
    loop, which the parallel passes then try to fuse: loops of a few thousand entries that
    gain nothing from threads, for some 3-6 s more compile time on the exact pass.
    """
    if options.get("parallel") is True:
        options = {**options, "parallel": _prange_only()}

    def compile_later(func: Callable[..., Any]) -> Any:
        dispatcher = numba.njit(cache=False, **options)(func)
        if _CACHE is not None:
            # numba's locator for a user-chosen directory reads CACHE_DIR when the cache is
            # created; every other function keeps numba's own choice
            previous = numba.config.CACHE_DIR  # type: ignore[attr-defined]
            numba.config.CACHE_DIR = _CACHE  # type: ignore[attr-defined]
            try:
                dispatcher.enable_caching()
            finally:
                numba.config.CACHE_DIR = previous  # type: ignore[attr-defined]
        return dispatcher

    return compile_later
