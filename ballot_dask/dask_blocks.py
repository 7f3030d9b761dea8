"""The Dask engine: the solvers' passes over the row chunks of a Dask array.

Each pass is one map over the row chunks (the per-block kernels of :mod:`.kernels`) and one
tree reduction of their O(k^2) summaries, computed on whatever scheduler is active (threads, a
``LocalCluster``, a remote scheduler): this module never creates a client.  The only state
sent to the tasks is the centers and the solver's small arguments (potentials, the exact
repair's few rows), once per round.

Memory: X and the cost blocks are persisted in the cluster's memory when they take at most
``ballot.memory-fraction`` of it (:mod:`.config`); otherwise every pass recomputes the cost
block of a chunk from X inside the task that uses it (streaming), slab by slab
(:data:`.dask_tasks.STREAM_SLAB_BYTES`), so that a Zarr store larger than the cluster's
memory is read chunk by chunk.  Every task that reads X reads its own chunk (the read is
fused into the task; the tasks themselves are in :mod:`.dask_tasks`), and a fit on a
distributed cluster first checks that one task's read fits the workers
(:mod:`.task_memory`).  The cost blocks of new centers are built and persisted in the same
round as the first pass over them.  The finiteness of X is checked inside the first pass
that reads it, never in a pass of its own.

Chunks may be ``scipy.sparse`` CSR (one chunk over the columns; :mod:`.sparse`): the first
pass counts their bytes, to decide what to persist and size the exact repair's band.  Over a
persisted X, the exact passes leave their labels on the workers (:mod:`.held_labels`).
"""

from __future__ import annotations

import functools
import operator
import time
import uuid
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from . import config
from .blocks import PassCounter, dense_rows_fit, sample_stride, shift_stride, solver_sample
from .dask_input import row_chunked
from .dask_maps import label_array
from .dask_rounds import (
    active_client,
    chunk_futures,
    cluster_memory,
    combine_levels,
    compute_round,
    futures_round,
    observe_rounds,
    part_futures,
    rounds_observed,
)
from .dask_tasks import (
    checked_block,
    chunk_bytes,
    combine_stats,
    combine_task,
    concatenate,
    cost_task,
    held_task,
    identity,
    label_task,
    mapped_stats_task,
    on_chunk,
    on_weighted_chunk,
    paired_pass_task,
    pass_task,
    stats_task,
    streamed_label_task,
    streamed_pass_task,
    unit_weights,
    x_label_task,
    x_task,
    xw_task,
)
from .dask_warm import warm_workers
from .held_labels import holders, on_holders
from .sparse import is_sparse
from .task_memory import check_task_memory, largest_chunk

__all__ = ["DaskBlocks", "active_client", "cluster_memory", "observe_rounds"]

#: seconds a fit keeps the cluster's memory (:meth:`DaskBlocks.band_budget`) before asking again
_MEMORY_TTL = 1.0


def _token() -> str:
    return uuid.uuid4().hex[:16]


class DaskBlocks:
    """The solvers' engine (:class:`~ballot_dask.blocks.Blocks`) over a row-chunked dask array.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        float32 or float64, chunked by rows (columns are rechunked into one).  Its chunks may
        be ``scipy.sparse`` CSR matrices, one chunk over the columns (:func:`as_dask_data`).
    n_clusters : int
        k, to size the cost blocks when deciding what to persist.
    persist : bool or None, default=None
        Keep X and the cost blocks in the cluster's memory; ``None``: ``ballot.persist``.

    The size of a sparse X is not known before its chunks are read: the engine counts their
    bytes in a round of its own (a pass over X, which also checks it for NaN and inf) when it
    must decide what to persist, or size the exact repair's band.
    """

    gather_is_free = False  # gathered rows travel from the workers

    def __init__(
        self,
        X: da.Array,
        n_clusters: int,
        persist: bool | None = None,
        weights: da.Array | None = None,
        total_weight: float | None = None,
    ) -> None:
        self.X = row_chunked(X)
        self.passes = PassCounter()
        self.offsets = [0, *np.cumsum(self.X.chunks[0]).tolist()][:-1]
        self.lengths = list(self.X.chunks[0])
        self._centers: np.ndarray | None = None
        self._costs: list[Delayed] | None = None  # the current cost blocks, persisted
        self._pending: list[Delayed] | None = None  # cost blocks to persist with the next pass
        self._checked = False
        self._stale = False
        self._sample: Any = None
        self._shift: np.ndarray | None = None  # the shift sample, drawn by prepare
        self.shift_reference: Any = None  # its sizes at the last exact step's optimum
        self.sample_reference: Any = None  # the row sample's, the same
        self.entropic_reference: Any = None  # its column targets at the last entropic plan
        self.entropic_curvature, self.n_clusters = True, int(n_clusters)  # (blocks.Blocks)
        self.moments: tuple[np.ndarray, np.ndarray] | None = None
        self._warmed: set[tuple[Any, Any]] = set()  # (task, kernel code) warmed on the workers
        self._held: list[Delayed] | None = None  # parts held by reduce_x_holding, persisted
        self._held_key: str | None = None  # the last key the passes held labels under
        #: X (persisted) and its chunks as the client's futures (:meth:`_persisted_chunks`)
        self._x_futures: tuple[da.Array, list[Any]] | None = None
        self.sparse = is_sparse(self.X._meta)
        mode = config.persist_mode() if persist is None else bool(persist)
        n, d = self.X.shape
        item = self.X.dtype.itemsize
        self.cost_bytes = n * n_clusters * 8  # cost blocks are float64
        client = active_client()
        if client is not None and not self.sparse:
            check_task_memory(client, largest_chunk(self.X.chunks[0]), d * item)
        self._memory = (time.monotonic(), cluster_memory())
        budget = float(config.get("memory-fraction")) * self._memory[1]
        self.budget = budget
        self._x_parts = self._chunks(self.X)
        self._x_bytes: int | None = None if self.sparse else n * d * item
        if mode is None:
            # X is persisted when it fits (the exact step reads X alone); the cost blocks
            # (for the other solvers' many passes) when they fit beside it
            x_bytes = self.x_bytes()
            self.persist_x = x_bytes <= budget
            self.persist_costs = self.persist_x and self.cost_bytes + x_bytes <= budget
        else:
            self.persist_costs = self.persist_x = mode
        # sample weights: chunked as X's rows, held with it when it is persisted (8 bytes
        # a row)
        self.weights: da.Array | None = None
        self.total_weight = float(n)
        if weights is not None:
            w = weights.astype(np.float64).rechunk((self.X.chunks[0],))
            self.weights = w.persist() if self.persist_x else w
            self.total_weight = (
                float(self.weights.sum().compute()) if total_weight is None else total_weight
            )

    # -- the Blocks interface -------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def centers(self) -> np.ndarray:
        if self._centers is None:
            raise RuntimeError("set_centers() must be called first")
        return self._centers

    @property
    def streamed(self) -> bool:
        """Whether every pass reads X from its storage (X not persisted)."""
        return not self.persist_x

    def sample(self) -> Any:
        """Rows for the exact solver's first potentials: :func:`solver_sample` of the row
        sample drawn by :meth:`prepare` (``None`` before it, or for few rows)."""
        if self._sample is None or self._centers is None:
            return None
        k = self._centers.shape[0]
        # (sparse chunks: their bytes per row would cost a round to count)
        return solver_sample(
            self._sample, self.n_samples, k, lambda: self.sparse or dense_rows_fit(self, k)
        )

    def shift_sample(self) -> np.ndarray | None:
        """The shift sample drawn by :meth:`prepare` (:func:`~.blocks.shift_stride` of X's
        rows, held by the client), or ``None``."""
        return self._shift

    def drop_shift_sample(self) -> bool:
        """Let the shift sample go (its bytes return to :meth:`band_budget`); whether there
        was one."""
        held, self._shift = self._shift is not None, None
        self.shift_reference = None
        return held

    def x_bytes(self) -> int:
        """Bytes of X: known from its shape, or for sparse chunks counted in a round of its
        own the first time they are asked for (a pass over X)."""
        if self._x_bytes is None:
            self._x_bytes = int(self.reduce_x(chunk_bytes, sum))
        return self._x_bytes

    def row_bytes(self) -> int:
        """A gathered row's bytes: 8 per feature (sparse chunks: X's bytes per row)."""
        if self.sparse:
            return -(-self.x_bytes() // max(self.n_samples, 1))
        return 8 * self.n_features

    def band_budget(self) -> int:
        """The smaller of ``ballot.band-memory`` and half of ``ballot.memory-fraction`` of
        the cluster's memory: the rows are first held by the workers, in pieces, then by the
        client; less the shift sample's bytes, which the client holds for the whole fit."""
        fraction = float(config.get("memory-fraction"))
        budget = min(config.band_memory(), int(fraction * self._cluster_memory() / 2))
        return budget - (0 if self._shift is None else self._shift.nbytes)

    def _cluster_memory(self) -> int:
        """:func:`~ballot_dask.dask_rounds.cluster_memory`, asked again after
        ``_MEMORY_TTL`` seconds (each ask is a call to the scheduler, about 1.6 ms; a fit's
        steps ask once each)."""
        asked, memory = self._memory
        if time.monotonic() - asked > _MEMORY_TTL:
            self._memory = (time.monotonic(), memory := cluster_memory())
        return memory

    def set_centers(self, centers: np.ndarray) -> None:
        """Use ``centers`` from now on.  Their cost blocks are made by the first pass that
        reads cost blocks: persisted, built in that pass's round (one pass over X); streamed,
        built again by every pass.  (The exact step reads X alone and never makes them.)"""
        self._centers = np.ascontiguousarray(centers, dtype=self.X.dtype)
        self._costs = None  # release the previous centers' blocks
        self._pending = None
        self._stale = True

    def _schedule_costs(self) -> None:
        """The pending (to be persisted) cost blocks of the current centers."""
        self._stale = False
        if self.persist_costs:
            token = _token()
            centers_key = delayed(self._centers, name=f"ballot-centers-{token}", traverse=False)
            self._pending = [
                delayed(cost_task, pure=False)(
                    xb,
                    centers_key,
                    off,
                    not self._checked,
                    dask_key_name=f"ballot-cost-{token}-{i}",
                )
                for i, (xb, off) in enumerate(zip(self._x_parts, self.offsets, strict=True))
            ]
            self.passes.x += 1

    def reduce(
        self,
        kernel: Callable[..., Any],
        combine: Callable[[list[Any]], Any],
        *args: Any,
        with_x: bool = False,
        with_offset: bool = False,
    ) -> Any:
        """``combine`` of ``kernel([X_b,] C_b, *args[, offset])`` over the chunks: one round."""
        costs = self._cost_parts()
        streamed = costs is None
        reads_x = with_x or streamed
        check = reads_x and not self._checked
        value = (self._centers if streamed else None, args, with_x, with_offset, check)
        if costs is not None and self._pending is not None and self._persisted_chunks():
            # the new centers' cost blocks, persisted now (asynchronously): the pass's tasks
            # then run on them as futures, in the same round
            costs = self._costs = list(dask.persist(*self._pending, optimize_graph=False))
            self._pending = None
        pairs = None if costs is None else self._pairs(reads_x)
        if pairs is not None:
            results = futures_round(paired_pass_task, (kernel, value), pairs, self.offsets, combine)
            self.passes.rounds += 1
            result = combine(results)
        elif costs is None:
            pair = delayed((kernel, combine, value), name=f"ballot-args-{_token()}", traverse=False)
            parts = self._map_x(streamed_pass_task, pair, kernel)
        else:
            shared = delayed(value, name=f"ballot-args-{_token()}", traverse=False)
            parts = [
                delayed(pass_task, pure=False)(
                    shared, kernel, self._x_parts[i] if reads_x else None, costs[i], off
                )
                for i, off in enumerate(self.offsets)
            ]
        if pairs is None:
            result = self._compute(self._tree(combine, parts))
        self.passes.cost += 1
        if reads_x:
            self.passes.x += 1
            self._checked = True
        return result

    def reduce_x(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of ``kernel(X_b, *args, offset)`` over the chunks: one pass over X,
        one round, no cost blocks."""
        check = not self._checked
        shared = delayed((kernel, args, check), name=f"ballot-xargs-{_token()}", traverse=False)
        chunks = self._persisted_chunks()
        if chunks is not None:
            self._warm(x_task, shared, kernel)
            return self._futures_round(combine, x_task, (kernel, args, check), chunks)
        return self._x_round(combine, self._map_x(x_task, shared, kernel))

    def _persisted_chunks(self) -> list[Any] | None:
        """X's chunks as futures of the active distributed client, in row order, when X is
        persisted there, ``ballot.futures`` is on and no round runner (a progress display,
        :func:`observe_rounds`) is set; else ``None``."""
        client = active_client()
        if client is None or rounds_observed() or not config.get("futures"):
            return None
        if self._x_futures is not None and self._x_futures[0] is self.X:
            return self._x_futures[1]
        chunks = chunk_futures(self.X)
        if chunks is None or len(chunks) != len(self.offsets):
            return None
        self._x_futures = (self.X, chunks)
        return chunks

    def _pairs(self, with_x: bool) -> list[tuple[Any, Any]] | None:
        """Each chunk's ``(X_b or None, C_b)`` as the client's futures, when the cost blocks
        are persisted there (and X, ``with_x``) and :meth:`_persisted_chunks` allows
        futures; else ``None``."""
        chunks = self._persisted_chunks()
        costs = None if chunks is None or self._costs is None else part_futures(self._costs)
        if chunks is None or costs is None:
            return None
        return [(xb if with_x else None, cb) for xb, cb in zip(chunks, costs, strict=True)]

    def _futures_round(
        self,
        combine: Callable[[list[Any]], Any],
        task: Callable[..., Any],
        value: Any,
        chunks: list[Any],
    ) -> Any:
        """One round of a pass over persisted X through the client's futures
        (:func:`~ballot_dask.dask_rounds.futures_round`)."""
        results = futures_round(task, value, chunks, self.offsets, combine)
        self.passes.rounds += 1
        self.passes.x += 1
        self._checked = True
        return combine(results)

    def _x_round(self, combine: Callable[[list[Any]], Any], parts: list[Delayed]) -> Any:
        """One round of a pass over X: ``parts`` combined (no cost blocks persisted)."""
        combine_, level = self._tree(combine, parts)
        results = compute_round(level)
        self.passes.rounds += 1
        self.passes.x += 1
        self._checked = True
        return combine_(list(results))

    def reduce_x_holding(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of the first of ``kernel(X_b, *args, offset)`` over the chunks; the
        second stays on the worker that read the chunk, persisted (:meth:`reduce_held`), in
        place of the previous ones.  One pass over X, one round."""
        self.drop_held()
        check = not self._checked
        shared = delayed((kernel, args, check), name=f"ballot-hargs-{_token()}", traverse=False)
        parts = self._map_x(x_task, shared, kernel)
        first = [delayed(operator.getitem, pure=True)(p, 0) for p in parts]
        second = [delayed(operator.getitem, pure=True)(p, 1) for p in parts]
        combine_, level = self._tree(combine, first)
        *held, level = dask.persist(*second, level, optimize_graph=False)
        self._held = held
        results = compute_round(level)
        self.passes.rounds += 1
        self.passes.x += 1
        self._checked = True
        return combine_(list(results))

    def reduce_held(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of ``kernel(held_b, *args)`` over the held parts, where they are: one
        round, no pass over X."""
        if self._held is None:
            raise RuntimeError("reduce_x_holding() must be called first")
        shared = delayed((kernel, args), name=f"ballot-rargs-{_token()}", traverse=False)
        parts = [delayed(held_task, pure=False)(shared, h) for h in self._held]
        combine_, level = self._tree(combine, parts)
        results = compute_round(level)
        self.passes.rounds += 1
        return combine_(list(results))

    def drop_held(self) -> None:
        """Let the held parts go (their keys are released on the workers)."""
        self._held = None

    def keep_labels(self) -> bool | str:
        """A fresh key for the exact pass to hold its labels under where it ran (persisted X
        only: a streamed X's reads need the memory; :mod:`~ballot_dask.held_labels`)."""
        self._held_key = None if not self.persist_x or self.sparse else f"ballot-labels-{_token()}"
        return self._held_key or False

    def reduce_xw(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of ``kernel(X_b, w_b, *args, offset)`` over the chunks (``w_b``: the
        chunk's sample weights, ones without weights): one pass over X, one round."""
        if self.weights is None:
            return self.reduce_x(functools.partial(unit_weights, kernel), combine, *args)
        check = not self._checked
        shared = delayed((kernel, args, check), name=f"ballot-xwargs-{_token()}", traverse=False)
        mapped = da.map_blocks(
            on_weighted_chunk,
            self.X,
            self.weights[:, None],
            xw_task,
            shared,
            chunks=((1,) * self.X.numblocks[0], (1,)),
            dtype=object,
            meta=np.empty((0, 0), dtype=object),
            name=f"ballot-wmap-{_token()}",
        )
        return self._x_round(combine, list(mapped.to_delayed(optimize_graph=True).ravel()))

    def labels(self, labeler: Callable[[np.ndarray, int], np.ndarray]) -> da.Array:
        """The labels as a dask array with X's row chunks: persisted when the cost blocks are,
        otherwise lazy (computing them is one more pass over X).  A labeler with ``reads_x``
        labels blocks of X itself (the exact step's): persisted when X is."""
        if getattr(labeler, "reads_x", False):
            return self._labels_from_x(labeler)
        costs = self._cost_parts()
        streamed = costs is None
        shared = delayed(
            (labeler, self._centers if streamed else None),
            name=f"ballot-labeler-{_token()}",
            traverse=False,
        )
        if costs is None:
            parts = self._map_x(streamed_label_task, shared, labeler)
        else:
            parts = [
                delayed(label_task, pure=False)(shared, None, cb, off)
                for cb, off in zip(costs, self.offsets, strict=True)
            ]
        labels = label_array(parts, self.lengths)
        if self.persist_costs:
            pending = self._pending or []
            *built, labels = dask.persist(*pending, labels, optimize_graph=False)
            if pending:
                self._costs, self._pending = built, None
            self.passes.cost += 1
            self.passes.rounds += 1
            if streamed:
                self.passes.x += 1
        return labels

    def _labels_from_x(self, labeler: Callable[[np.ndarray, int], np.ndarray]) -> da.Array:
        shared = delayed(labeler, name=f"ballot-labeler-{_token()}", traverse=False)
        held = getattr(labeler, "held_key", None)  # the last pass's labels: no read
        held = held if held == self._held_key else None
        client = active_client() if held is not None else None
        where = holders(client, held, self.lengths) if client is not None and held else {}
        labels = label_array(self._map_x(x_label_task, shared, labeler, where), self.lengths)
        if self.persist_x:
            (labels,) = dask.persist(labels, optimize_graph=False)
            self.passes.x += int(held is None)
            self.passes.rounds += 1
        return labels

    def full_cost(self) -> np.ndarray:
        """The whole cost matrix (only for the ``emd`` reference solver)."""
        return np.asarray(self.reduce(identity, concatenate))

    # -- the first pass -------------------------------------------------------------------

    def prepare(self, sample_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first pass over X: its finiteness, column means and variances, a seeded row
        sample of about ``sample_size`` rows and the shift sample (:meth:`shift_sample`;
        both the same for any chunking); X is persisted in the same round when it fits.
        Returns ``(sample, mean, var)``."""
        n, d = self.X.shape
        stride = sample_stride(n, sample_size)
        shift = 0
        if not self.sparse and self.weights is None:
            row = d * self.X.dtype.itemsize
            shift = shift_stride(n, self.n_clusters, sample_size, row, self.band_budget())
        check = not self._checked
        source = self.X
        if self.persist_x:
            source = da.map_blocks(
                checked_block,
                self.X,
                check,
                dtype=self.X.dtype,
                meta=self.X._meta,
                name=f"ballot-x-{_token()}",
            )
        if self.persist_x:
            parts = [
                delayed(stats_task, pure=False)(xb, off, False, seed, stride, shift)
                for xb, off in zip(self._chunks(source), self.offsets, strict=True)
            ]
        else:
            shared = delayed((check, seed, stride, shift), name=f"ballot-stats-{_token()}")
            parts = self._map_x(mapped_stats_task, shared)
        root = self._tree(combine_stats, parts)
        if self.persist_x:
            source, level = dask.persist(source, root[1], optimize_graph=False)
            root = (root[0], level)
            self.X = source
            self._x_parts = self._chunks(source)
        rows, mean, m2, sample, shifted = self._compute(root)
        self._checked = True
        self.passes.x += 1
        self._sample = sample if self.sparse else np.ascontiguousarray(sample)
        self._shift = np.ascontiguousarray(shifted) if shift else None
        self.moments = (mean, m2 / max(rows, 1))
        return self._sample, *self.moments

    # -- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _chunks(X: da.Array) -> list[Delayed]:
        return list(X.to_delayed(optimize_graph=False).ravel())

    def _map_x(
        self, task: Callable[..., Any], shared: Delayed, kernel: Any = None, where: Any = None
    ) -> list[Delayed]:
        """``task(shared_value, X_b, offset)`` for every chunk of X, one task each.

        The chunk's read is fused into the task (dask's blockwise fusion): a streamed chunk
        is read, used and dropped by one task, so a worker never holds a chunk read ahead and
        waiting for its task (for a compressed store, the read itself briefly needs about
        three times the chunk).  ``shared`` is one key, shipped once to each worker.  The
        first map of each ``(task, kernel)`` is warmed up first (:meth:`_warm`).  ``where``:
        block -> the worker to run its task on (:func:`.held_labels.on_holders`)."""
        self._warm(task, shared, kernel)
        name = f"ballot-map-{_token()}"
        with on_holders(name, where or {}):
            mapped = da.map_blocks(on_chunk, self.X, task, shared, name=name, dtype=object,
                                   chunks=((1,) * self.X.numblocks[0], (1,)),
                                   meta=np.empty((0, 0), dtype=object))  # fmt: skip
        return list(mapped.to_delayed(optimize_graph=not where).ravel())

    def _warm(self, task: Callable[..., Any], shared: Delayed, kernel: Any) -> None:
        """The workers' warm-up for ``task`` with ``kernel`` (:func:`.dask_warm.warm_workers`),
        the first time it is mapped."""
        warm_workers(task, shared, kernel, self.X.dtype, self.n_features, self.sparse, self._warmed)

    def _cost_parts(self) -> list[Delayed] | None:
        if self._centers is None:
            raise RuntimeError("set_centers() must be called before a pass")
        if self._stale:
            self._schedule_costs()
        return self._pending if self._pending is not None else self._costs

    @staticmethod
    def _tree(combine: Callable[[list[Any]], Any], parts: list[Delayed]) -> tuple:
        """Combine ``parts`` on the workers, ``split-every`` at a time, until at most that
        many are left; the client combines those (one hop fewer than a full tree)."""
        node = delayed(combine_task, pure=False)
        return combine, combine_levels(
            parts, lambda groups: [node(combine, *group) for group in groups]
        )

    def _compute(self, tree: tuple) -> Any:
        """One round: the reduction, and the pending cost blocks persisted alongside."""
        combine, level = tree
        if self._pending is not None:
            *costs, level = dask.persist(*self._pending, level, optimize_graph=False)
            self._costs, self._pending = costs, None
        results = compute_round(level)
        self.passes.rounds += 1
        return combine(list(results))
