"""Give back the pages of the compiler library that a worker maps but no longer runs.

The compiled kernels need LLVM (``libllvmlite.so``, about 180 MB of machine code) to compile
or to load them from the cache, and not afterwards: a loaded kernel is plain machine code.
The pages of the library that were mapped meanwhile stay in the process's resident set, and
how many depends on the page cache, not on the work: about 35 MiB when the library was read
from disk, 75-90 MiB right after ``pip install`` wrote it (the kernel then maps whole large
folios on each fault).  A Dask nanny measures a worker by that resident set, so with 400 MB
workers the difference decides whether a worker pauses.

:func:`release_compiler_pages` drops the library's executable mappings from the resident
set (``madvise(MADV_DONTNEED)``).  Contract:

- only the library's ``r-xp`` mappings: clean pages of a file, never written, which the
  kernel reads back from the page cache if the library runs again (the next compilation);
  no data of the process is touched and nothing is evicted from the page cache;
- Linux only, and only while ``ballot.release-compiler-pages`` is true (the default); any
  failure turns it off for the process, silently: it saves memory and is never needed;
- cheap enough to call after every task (a system call on an already released range).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

from . import config

__all__ = ["compiler_mappings", "compiler_resident", "release_compiler_pages"]

_LIBRARY = "libllvmlite"
_state: dict[str, object] = {"ranges": None, "off": not sys.platform.startswith("linux")}


def compiler_mappings(maps: str = "/proc/self/maps") -> list[tuple[int, int]]:
    """The ``(start, stop)`` addresses of the compiler library's executable mappings."""
    ranges = []
    with open(maps) as lines:
        for line in lines:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[1] == "r-xp":
                if os.path.basename(fields[5].strip()).startswith(_LIBRARY):
                    start, stop = fields[0].split("-")
                    ranges.append((int(start, 16), int(stop, 16)))
    return ranges


def compiler_resident(smaps: str = "/proc/self/smaps") -> int:
    """Bytes of the compiler library's executable mappings now in the resident set."""
    resident, inside = 0, False
    with open(smaps) as lines:
        for line in lines:
            fields = line.split(maxsplit=5)
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                inside = (
                    len(fields) == 6
                    and fields[1] == "r-xp"
                    and os.path.basename(fields[5].strip()).startswith(_LIBRARY)
                )
            elif inside and fields[0] == "Rss:":
                resident += int(fields[1]) * 1024
    return resident


def release_compiler_pages() -> int:
    """Drop the compiler library's executable pages from the resident set; returns the
    bytes of address space released (0 when the library is not loaded or this is off)."""
    if _state["off"] or not config.get("release-compiler-pages"):
        return 0
    try:
        ranges = _state["ranges"]
        if not ranges:
            ranges = _state["ranges"] = compiler_mappings()
        libc = _libc()
        released = 0
        for start, stop in ranges:  # type: ignore[attr-defined]
            if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), _DONTNEED):
                raise OSError(ctypes.get_errno(), "madvise")
            released += stop - start
        return released
    except (OSError, AttributeError, ValueError):
        _state["off"] = True
        return 0


_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)


def _libc() -> ctypes.CDLL:
    libc = _state.get("libc")
    if libc is None:
        libc = _state["libc"] = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]  # type: ignore[attr-defined]
        libc.madvise.restype = ctypes.c_int  # type: ignore[attr-defined]
    return libc  # type: ignore[return-value]
