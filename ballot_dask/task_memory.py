"""What one task needs against what a worker has: the check a Dask fit makes before its first
round.

A task of the Dask engine reads one chunk of X and runs a kernel on it.  The kernels work in
slabs of a few thousand rows (:mod:`.kernels`, :mod:`.exact_pass`), so their own memory does
not grow with the chunk; the read does.  Reading a chunk from a compressed store holds the
compressed bytes, the decoded chunk and the array handed to the task at once: about three
times the chunk, two for an uncompressed one.  A worker pauses when its process memory crosses
``distributed.worker.memory.pause`` of its limit, and a worker holds its libraries and
compiled kernels (about 200 MB) before any data.

:func:`check_task_memory` compares the largest chunk with the room each worker has below its
pause threshold (its limit times the pause fraction, less the memory it already uses):

- twice the chunk does not fit: :class:`ValueError` (no task can run without pausing);
- three times the chunk does not fit: :class:`RuntimeWarning` (a compressed chunk may pause it).

Both name the chunk size that fits.  Sparse chunks (whose size is not known before they are
read) and workers without a memory limit are not checked.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask
import numpy as np

__all__ = ["check_task_memory", "worker_room"]

#: a chunk's read from a compressed store holds about this many copies of it
_COMPRESSED_READ = 3
#: the same for an uncompressed store (or chunks already in memory)
_PLAIN_READ = 2
#: what a worker holds beside the data once the kernels are loaded, when it reports less
_WORKER_FLOOR = 200 * 2**20


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def _pause_fraction() -> float:
    for key in ("pause", "terminate"):
        value = dask.config.get(f"distributed.worker.memory.{key}", False)
        if value:
            return float(value)
    return 1.0


def worker_room(client: Any) -> list[tuple[str, int, int]]:
    """``(address, limit, room)`` for every worker with a memory limit: ``room`` is what it
    can still take before pausing (its limit times the pause fraction, less the larger of its
    process memory and a loaded worker's floor)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed < 2025: always lists every worker
        info = client.scheduler_info()
    fraction = _pause_fraction()
    rooms = []
    for address, worker in info.get("workers", {}).items():
        limit = int(worker.get("memory_limit") or 0)
        if not limit:
            continue
        used = int((worker.get("metrics") or {}).get("memory") or 0)
        rooms.append((address, limit, int(fraction * limit) - max(used, _WORKER_FLOOR)))
    return rooms


def check_task_memory(client: Any, chunk_rows: int, row_bytes: int, name: str = "X") -> None:
    """Raise or warn (see the module docstring) when a task reading a chunk of ``chunk_rows``
    rows of ``row_bytes`` bytes each does not fit in every worker's room."""
    rooms = worker_room(client)
    if not rooms or chunk_rows <= 0 or row_bytes <= 0:
        return
    address, limit, room = min(rooms, key=lambda r: r[2])
    chunk = chunk_rows * row_bytes
    fits_plain = max(int(room // (_PLAIN_READ * row_bytes)), 0)
    fits_compressed = max(int(room // (_COMPRESSED_READ * row_bytes)), 0)
    where = (
        f"worker {address} has {_mb(max(room, 0))} below its pause threshold "
        f"(limit {_mb(limit)}, pause at {_pause_fraction():.0%}, about {_mb(_WORKER_FLOOR)} "
        "held by its libraries and kernels)"
    )
    if _PLAIN_READ * chunk > room:
        fix = (
            f"rechunk {name} to at most {fits_plain:,} rows per chunk ({name}.rechunk({{0: "
            f"{max(fits_plain, 1)}}})) or give the workers more memory"
            if fits_plain
            else "give the workers more memory"
        )
        raise ValueError(
            f"{name}'s largest chunk ({chunk_rows:,} rows, {_mb(chunk)}) does not fit in a "
            f"task: reading it takes about {_mb(_PLAIN_READ * chunk)} and {where}; {fix}"
        )
    if _COMPRESSED_READ * chunk > room:
        warnings.warn(
            f"{name}'s largest chunk ({chunk_rows:,} rows, {_mb(chunk)}) may pause a worker: "
            f"reading it from a compressed store takes about {_mb(_COMPRESSED_READ * chunk)} "
            f"and {where}; chunks of at most {fits_compressed:,} rows fit",
            RuntimeWarning,
            stacklevel=3,
        )


def largest_chunk(chunks: tuple[int, ...]) -> int:
    """The most rows in one chunk."""
    return int(np.max(chunks)) if len(chunks) else 0
