"""Large transient arrays allocated without NumPy's huge-page advice.

NumPy advises the kernel to back every array of 4 MiB or more with huge pages
(``madvise(MADV_HUGEPAGE)``).  Where transparent huge pages are set to ``madvise``, a common
default, the kernel then compacts memory, if it must, on the first touch of each 2 MiB page
of such an array, and after the passes of an exact step (hundreds of MB allocated and freed)
it must: the first touch stalls.  :func:`empty_buffer` allocates through the compiled code's
allocator (the system ``malloc``), which gives no advice; the pages come as the host's
defaults give them.  It serves the arrays made once per pass or per step and read a few
times on the client: the cost rows of a band or of the row sample
(:func:`~ballot_dask.exact_pass.band_costs`); a band gathered from its lanes is allocated
the same way (:mod:`ballot_dask.lanes`).  Cost blocks that live through a step and are read
pass after pass (E-BalLOT's, on the workers or in memory) keep NumPy's allocation, whose huge
pages served them better (interleaved runs of ``bench_dask.py``: E-BalLOT's cluster fit took
5.46 s and 5.74 s with its cost blocks allocated here, 5.35 s and 5.29 s by NumPy).

Measured here (2 cores, THP ``madvise``, 10^6 x 64 float32, k = 1024, in memory): a band of
266 653 rows with 32 candidates each, concatenated and copied by NumPy right after its pass,
took 0.38 s, and 0.06-0.08 s allocated here.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import njit

#: arrays below this many bytes are NumPy's own (it gives no advice below 4 MiB)
_ADVISED_FROM = 4 << 20


@njit()
def _raw(nbytes):  # pragma: no cover - compiled
    return np.empty(nbytes, dtype=np.uint8)


def empty_buffer(shape: tuple[int, ...], dtype: np.dtype | type = np.float64) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, as ``np.empty``, from
    the system allocator when it is large (see the module docstring); aligned for its
    dtype, writeable, freed when the last view of it goes."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _ADVISED_FROM:
        return np.empty(shape, dtype=dtype)
    return _raw(nbytes).view(dtype).reshape(shape)


def full_buffer(
    shape: tuple[int, ...], fill_value: float, dtype: np.dtype | type = np.float64
) -> np.ndarray:
    """:func:`empty_buffer` filled with ``fill_value``, as ``np.full``."""
    out = empty_buffer(shape, dtype)
    out.fill(fill_value)
    return out


def least_of(arrays: list[np.ndarray]) -> np.ndarray:
    """The entry-by-entry minimum of equal-shaped float64 ``arrays`` (as ``np.minimum``: a
    NaN anywhere gives NaN) into a new :func:`empty_buffer`, with no stacked copy of them."""
    out = empty_buffer(arrays[0].shape)
    if len(arrays) == 1:
        np.copyto(out, arrays[0])
        return out
    np.minimum(arrays[0], arrays[1], out=out)
    for a in arrays[2:]:
        np.minimum(out, a, out=out)
    return out


__all__ = ["empty_buffer", "full_buffer", "least_of"]
