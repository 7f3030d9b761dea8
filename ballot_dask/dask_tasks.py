"""The tasks of the Dask engine (:mod:`.dask_blocks`): what runs on a worker for one chunk.

Each task gets the chunk of X (or its persisted cost block), its row offset and one shared
argument (shipped once per worker), and returns the kernel's small summary.  Contracts:

- a kernel sees rows and their global offset only, so a chunk cut into slabs gives what
  smaller chunks would: a streamed task builds its cost block ``STREAM_SLAB_BYTES`` at a time
  and combines the slabs' results as the chunks' are;
- compiled kernels run on ``ballot.threads-per-task`` threads (:func:`kernel_threads`), and
  after them the worker gives back the compiler's pages (:mod:`.compiler_pages`);
- X is checked for NaN and infinity inside the first pass that reads it
  (:func:`require_finite`), naming the first bad row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

from . import config
from .blocks import sampled_rows
from .compiler_pages import release_compiler_pages
from .costs import cost_block
from .held_labels import warming
from .sparse import as_csr, column_stats, is_sparse, nbytes, nonfinite_row, stack_rows

__all__ = [
    "STATS_SLAB",
    "STREAM_SLAB_BYTES",
    "WARMED",
    "checked_block",
    "chunk_bytes",
    "combine_group",
    "combine_stats",
    "combine_task",
    "concatenate",
    "cost_task",
    "identity",
    "kernel_threads",
    "label_task",
    "mapped_stats_task",
    "on_chunk",
    "paired_pass_task",
    "pass_task",
    "require_finite",
    "stats_task",
    "stream_slab_rows",
    "streamed_label_task",
    "streamed_pass_task",
    "warm_task",
    "x_label_task",
    "x_task",
]


@contextmanager
def kernel_threads() -> Iterator[None]:
    """``ballot.threads-per-task`` threads for the compiled kernels of one task (numba's
    setting is per calling thread, so concurrent tasks do not disturb each other); on exit,
    the pages of the compiler that loaded them are released (:mod:`.compiler_pages`)."""
    wanted = max(1, min(int(config.get("threads-per-task")), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    previous = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        release_compiler_pages()


def require_finite(xb: Any, offset: int) -> None:
    if is_sparse(xb):
        row = nonfinite_row(xb.tocsr())
        if row is not None:
            raise ValueError(
                f"Input X contains NaN or infinity (first at row {row + offset}); remove or "
                "impute those rows before clustering"
            )
        return
    if not np.isfinite(xb).all():
        bad = int(np.flatnonzero(~np.isfinite(xb).all(axis=1))[0]) + offset
        raise ValueError(
            f"Input X contains NaN or infinity (first at row {bad}); remove or impute those "
            "rows before clustering"
        )


def checked_block(xb: Any, check: bool, block_info: Any = None) -> Any:
    """A chunk as it is persisted: checked, and a sparse one as canonical CSR (every pass
    then reads it as it is)."""
    if check:
        require_finite(xb, block_info[0]["array-location"][0][0] if block_info else 0)
    return as_csr(xb) if is_sparse(xb) else xb


def cost_task(xb: np.ndarray, centers: np.ndarray, offset: int, check: bool) -> np.ndarray:
    with kernel_threads():
        if check:
            require_finite(xb, offset)
        return cost_block(xb, centers)


def pass_task(shared: tuple, kernel: Callable[..., Any], xb: Any, cb: Any, offset: int) -> Any:
    """One block of a pass: its cost block (given, or built from X) and the kernel on it."""
    centers, args, with_x, with_offset, check = shared
    with kernel_threads():
        if check and xb is not None:
            require_finite(xb, offset)
        if cb is None:
            cb = cost_block(xb, centers)
        head = (xb, cb) if with_x else (cb,)
        return kernel(*head, *args, *((offset,) if with_offset else ()))


def paired_pass_task(shared: tuple, pair: tuple, offset: int) -> Any:
    """:func:`pass_task` on a chunk's ``(X_b or None, C_b)`` (a round of the client's
    futures, :func:`~ballot_dask.dask_rounds.futures_round`)."""
    kernel, rest = shared
    return pass_task(rest, kernel, pair[0], pair[1], offset)


def streamed_pass_task(shared: tuple, xb: Any, offset: int) -> Any:
    """One block of a streamed pass, slab by slab: each slab's cost block built from X and
    the kernel on it, the slabs' results combined as the chunks' are (a kernel sees rows and
    their offset only, so a chunk cut into slabs gives what smaller chunks would)."""
    kernel, combine, rest = shared
    rows = stream_slab_rows(rest[0].shape[0])
    if xb.shape[0] <= rows:
        return pass_task(rest, kernel, xb, None, offset)
    return combine(
        [
            pass_task(rest, kernel, xb[a : a + rows], None, offset + a)
            for a in range(0, xb.shape[0], rows)
        ]
    )


#: a streamed task's cost block is built and used this many bytes at a time (float64)
STREAM_SLAB_BYTES = 4 * 2**20


def stream_slab_rows(k: int) -> int:
    """Rows per slab of a streamed cost-block pass: ``STREAM_SLAB_BYTES`` of costs."""
    return max(1024, STREAM_SLAB_BYTES // (8 * max(k, 1)))


def x_task(shared: tuple, xb: np.ndarray, offset: int) -> Any:
    """One block of a pass over X alone."""
    kernel, args, check = shared
    with kernel_threads():
        if check:
            require_finite(xb, offset)
        return kernel(xb, *args, offset)


def held_task(shared: tuple, held: Any) -> Any:
    """One held part (:meth:`~ballot_dask.dask_blocks.DaskBlocks.reduce_held`)."""
    kernel, args = shared
    with kernel_threads():
        return kernel(held, *args)


def unit_weights(kernel: Callable[..., Any], xb: Any, *rest: Any) -> Any:
    """``kernel(X_b, ones, *rest)``: a weighted kernel on unweighted data."""
    return kernel(xb, np.ones(xb.shape[0]), *rest)


def xw_task(shared: tuple, xb: np.ndarray, wb: np.ndarray, offset: int) -> Any:
    """One block of a pass over X and its sample weights."""
    kernel, args, check = shared
    with kernel_threads():
        if check:
            require_finite(xb, offset)
        return kernel(xb, np.asarray(wb, dtype=np.float64).reshape(-1), *args, offset)


def combine_task(combine: Callable[[list[Any]], Any], *parts: Any) -> Any:
    return combine(list(parts))


def combine_group(combine: Callable[[list[Any]], Any], parts: list[Any]) -> Any:
    """``combine(parts)``: a node of a round's tree whose parts come as one list."""
    return combine(list(parts))


def mapped_stats_task(shared: tuple, xb: Any, offset: int) -> tuple:
    return stats_task(xb, offset, *shared)


def stats_task(
    xb: Any, offset: int, check: bool, seed: int, stride: int, shift_stride: int = 0
) -> tuple:
    """Rows, mean and sum of squared deviations of a chunk, its rows in the sample and its
    rows in the shift sample (``shift_stride``: 0 for none, an empty array).

    Float64 work arrays are a slab of rows at a time, so a worker never holds a float64 copy
    of a whole chunk (a sparse chunk's are the size of its nonzeros)."""
    if check:
        require_finite(xb, offset)
    m, d = xb.shape
    if is_sparse(xb):
        xb = as_csr(xb)
        mean, m2 = column_stats(xb)
        return m, mean, m2, xb[sampled_rows(offset, m, stride, seed)], xb[:0]
    mean = xb.sum(axis=0, dtype=np.float64) / max(m, 1)
    m2 = np.zeros(d)
    for start in range(0, m, STATS_SLAB):
        slab = np.asarray(xb[start : start + STATS_SLAB], dtype=np.float64) - mean
        m2 += np.einsum("ij,ij->j", slab, slab)
    keep = sampled_rows(offset, m, stride, seed)
    shifted = sampled_rows(offset, m, shift_stride, seed) if shift_stride else slice(0, 0)
    return m, mean, m2, np.asarray(xb[keep]), np.asarray(xb[shifted])


#: rows of a chunk turned into float64 at a time by :func:`stats_task`
STATS_SLAB = 16384


def combine_stats(parts: list[tuple]) -> tuple:
    """Chan et al.'s pairwise update of counts, means and squared deviations (closed)."""
    n, mean, m2, _, _ = parts[0]
    for m, mean_b, m2_b, _, _ in parts[1:]:
        if m == 0:
            continue
        total = n + m
        delta = mean_b - mean
        mean = mean + delta * (m / total)
        m2 = m2 + m2_b + delta**2 * (n * m / total)
        n = total
    return n, mean, m2, stack_rows([p[3] for p in parts]), stack_rows([p[4] for p in parts])


def streamed_label_task(shared: tuple, xb: Any, offset: int) -> np.ndarray:
    """A streamed chunk's labels, slab by slab (see :func:`streamed_pass_task`)."""
    rows = stream_slab_rows(shared[1].shape[0])
    if xb.shape[0] <= rows:
        return label_task(shared, xb, None, offset)
    return np.concatenate(
        [
            label_task(shared, xb[a : a + rows], None, offset + a)
            for a in range(0, xb.shape[0], rows)
        ]
    )


def label_task(shared: tuple, xb: Any, cb: Any, offset: int) -> np.ndarray:
    labeler, centers = shared
    with kernel_threads():
        if cb is None:
            cb = cost_block(xb, centers)
        return np.asarray(labeler(cb, offset), dtype=np.int64)


def x_label_task(labeler: Callable[[np.ndarray, int], np.ndarray], xb: Any, offset: int) -> Any:
    with kernel_threads():
        return np.asarray(labeler(xb, offset), dtype=np.int64)


#: what this process warmed up, in order: ``(task, kernel)`` names (for diagnostics; the
#: last 1024, so that a long-lived worker running many fits does not accumulate them)
WARMED: deque[tuple[str, str]] = deque(maxlen=1024)


def warm_task(task: Callable[..., Any], shared: Any, block: Any, name: str = "") -> None:
    """``task(shared, block, 0)`` on a few synthetic rows, its result dropped: a worker
    compiles or loads the task's kernels before it holds a chunk of X, then gives back the
    compiler's pages.  Best effort: a failure here is the real task's to report.  ``name``
    (the kernel's) is recorded in :data:`WARMED`."""
    WARMED.append((getattr(task, "__name__", str(task)), name))
    try:
        with warming():  # synthetic rows: no labels held for them
            task(shared, block, 0)
    except Exception:  # the warm-up never fails a fit: the real task reports errors
        pass
    finally:
        release_compiler_pages()


def on_chunk(xb: Any, task: Callable[..., Any], shared: Any, block_info: Any = None) -> Any:
    """``task(shared, X_b, offset)``: the body of :meth:`DaskBlocks._map_x`."""
    return task(shared, xb, block_info[0]["array-location"][0][0])


def on_weighted_chunk(
    xb: Any, wb: np.ndarray, task: Callable[..., Any], shared: Any, block_info: Any = None
) -> Any:
    """``task(shared, X_b, w_b, offset)``: the body of :meth:`DaskBlocks.reduce_xw`."""
    return task(shared, xb, wb, block_info[0]["array-location"][0][0])


def chunk_bytes(xb: Any, offset: int) -> int:
    return nbytes(xb.tocsr()) if is_sparse(xb) else int(xb.nbytes)


def identity(C: np.ndarray) -> np.ndarray:
    return np.asarray(C, dtype=np.float64)


def concatenate(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts)


# -- the estimator's per-chunk maps on new data --------------------------------------------
