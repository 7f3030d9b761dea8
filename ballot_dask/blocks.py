"""Row blocks: the engine the solvers run on.

A solver never touches X directly.  It asks the engine to build the cost blocks for a set of
centers (one pass over X) and then to apply a per-block kernel to every (X block, cost block)
pair and reduce the results (one pass over the cost blocks).  This module holds the interface
(:class:`Blocks`) and the in-memory engine: X split into row blocks of a given size (a single
block by default).  :mod:`.dask_blocks` runs the same passes over the chunks of a Dask array.
Engines count their passes (and collective rounds) so that the cost of a fit can be read off and
tested.

A ``combine`` function must be *closed*: ``combine(parts)`` has the form of one part, so that a
tree reduction may apply it at every level.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import psutil

from .costs import cost_block
from .pair_bins import PAIR_MAX_CLUSTERS
from .sparse import column_stats, is_sparse, nbytes


@dataclass
class PassCounter:
    """How often the data were read: passes over X (in memory, the input's validation
    included), passes over the cost blocks, the collective rounds (one reduction each, a
    scheduler round trip on the Dask engine), and passes over the fit's row sample held by
    the client (the named initialisations, ``k`` for k-means++, and the exact step's solves
    on it; in memory with at most ``2 * ballot.init-sample`` rows the sample is X itself) and
    over the shift sample (:meth:`Blocks.shift_sample`)."""

    x: int = 0
    cost: int = 0
    rounds: int = 0
    sample: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "cost": self.cost, "rounds": self.rounds, "sample": self.sample}


#: rows of the engine's sample for the exact step's first potentials, at least
SAMPLE_ROWS = 1 << 16
#: ... and at least this many per cluster
SAMPLE_PER_CLUSTER = 64
#: a nested sample smaller than this (or than 16 rows per cluster) is not worth solving
_NESTED_MIN = 4096
_NESTED_SEED = 0x5EED
_PREPARE_ROWS = 1 << 14  # rows per slab of the in-memory engine's first pass
#: the in-memory engine reads the available memory (its band budget) at most this often
_BUDGET_SECONDS = 1.0
#: the shift sample holds about one row in this many at most ...
SHIFT_STRIDE = 4
#: ... and this many times the fit's row sample at least (else a pass over X is cheap
#: enough, or that sample will do; by default X has 4 million rows at least) ...
_SHIFT_OVER_SAMPLE = 16
#: ... in at most this share of the gather budget
_SHIFT_BUDGET_SHARE = 0.5


class Blocks(Protocol):
    """What a solver may ask of an engine: the contract every engine keeps.

    ``set_centers(centers)``
        Use the cost blocks ``C = ||x_i - mu_j||^2`` (float64) of ``centers`` from now on.
    ``reduce(kernel, combine, *args, with_x=False, with_offset=False)``
        One pass: ``combine`` of ``kernel([X_b,] C_b, *args[, offset_b])`` over the blocks, in
        row order.  ``combine`` is closed (a list of parts in, one part out), so the engine
        may apply it at any level of a tree.  ``X_b`` is passed when ``with_x``; ``offset_b``,
        the global index of the block's first row, when ``with_offset``.
    ``reduce_x(kernel, combine, *args)``
        One pass over X alone: ``combine`` of ``kernel(X_b, *args, offset_b)`` (no cost
        blocks, no centers needed; e.g. the k-means|| initialisation).
    ``reduce_xw(kernel, combine, *args)``
        The same with the block's sample weights: ``kernel(X_b, w_b, *args, offset_b)``
        (``w_b`` float64 of shape ``(m_b,)``; the weighted exact step).
    ``weights``, ``total_weight``
        The sample weights (``None``: every row weighs 1) and their sum (``n_samples``
        without weights).
    ``labels(labeler)``
        ``labeler(C_b, offset_b)`` of every block, concatenated (an ndarray in memory, a dask
        array with X's row chunks on Dask).
    ``full_cost()``
        The whole cost matrix (the ``emd`` reference solver only).
    ``moments``
        X's column means and (population) variances, ``(mean, var)``, once the engine's
        ``prepare`` has measured them (``None`` before): the mean cost of any centers follows
        in closed form (:func:`~ballot_dask.solvers.base.mean_cost`), with no pass.
    ``sample()``
        A fixed row sample of X (rows of X, the same for the whole fit, at most about an
        eighth of the rows), or ``None`` when the data are too few to need one.
    ``shift_sample()``
        A larger fixed row sample of X held by the client (:func:`shift_stride`), where a
        pass over X is dear: the exact step counts its rows by label, second-best cluster and
        gap to shift warm potentials before a pass (:mod:`.solvers.shift`); ``None`` where
        the engine has none.
    ``reduce_x_holding(kernel, combine, *args)``
        As ``reduce_x``, for a ``kernel`` that returns a pair: the first is combined and
        returned, the second is *held* where its block is (a Dask chunk's: by the worker that
        read it) until ``drop_held()`` or the next ``reduce_x_holding``.  One pass over X.
    ``reduce_held(kernel, combine, *args)``
        ``combine`` of ``kernel(held_b, *args)`` over the held parts: one round, no pass
        over X (:mod:`ballot_dask.reserve`).
    ``drop_held()``
        Let the held parts go.
    ``shift_reference``
        The shift sample's size bounds at the last exact step's optimum, for the next step's
        shift (:func:`.solvers.shifting.sample_sizes`), or ``None``: set and taken by that
        solver only.
    ``sample_reference``
        The same for ``sample()``'s rows, for the next step's first potentials
        (:mod:`.solvers.referenced`), or ``None``: set and taken by that solver only.
    ``entropic_reference``
        The row sample's column targets at the last E-BalLOT step's plan, for the next
        step's first potentials (:func:`.solvers.newton.sample_targets`), or ``None``: set
        and taken by the entropic solver only (a fit's state keeps a copy, for a resume).
    ``entropic_curvature``
        Whether E-BalLOT's Newton steps may take the row sample's estimate of X's Hessian
        (:class:`.solvers.newton.SampleCurvature`): ``True`` until it misleads a step, then
        ``False`` for the rest of the fit.
    ``drop_shift_sample()``
        Let the shift sample go for the rest of the fit (its bytes return to
        ``band_budget()``, which they were taken from); whether there was one.
    ``band_budget()``
        Bytes of rows the solver may gather from the blocks at once.
    ``row_bytes()``
        Bytes of one row of X gathered on the client (its coordinates; for a sparse X, its
        nonzeros on average), to size the exact repair's band.
    ``passes``
        The :class:`PassCounter` every pass increments.
    ``gather_is_free``
        True when the blocks live in this process, so that gathering rows costs no transfer.
    ``keep_labels()``
        What the exact pass does with every row's label (its ``keep_labels``): ``True``,
        return them (in memory); a fresh key, hold them where they were computed
        (:mod:`ballot_dask.held_labels`); ``False``, neither.
    ``streamed``
        True when every pass reads X from its storage (a Dask array not persisted): a pass
        is then as dear as a read, and the exact step keeps a reserve of rows to save one
        (:mod:`ballot_dask.reserve`).
    """

    passes: PassCounter
    #: whether the blocks live in this process (gathering rows from them costs no transfer)
    gather_is_free: bool
    #: the sample weights (``None``: every row weighs 1), and their sum
    weights: Any
    total_weight: float
    #: X's column means and variances, measured by ``prepare`` (``None`` before)
    moments: tuple[np.ndarray, np.ndarray] | None
    #: the shift sample's size bounds at the last exact step's optimum (``None``: none)
    shift_reference: Any
    #: the row sample's size bounds at the last exact step's optimum (``None``: none)
    sample_reference: Any
    #: the row sample's column targets at the last entropic step's plan (``None``: none)
    entropic_reference: Any
    #: whether E-BalLOT's Newton steps may take the sample's curvature (see above)
    entropic_curvature: bool

    @property
    def streamed(self) -> bool: ...

    @property
    def n_samples(self) -> int: ...

    @property
    def n_features(self) -> int: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def centers(self) -> np.ndarray: ...

    def set_centers(self, centers: np.ndarray) -> None: ...

    def reduce(
        self,
        kernel: Callable[..., Any],
        combine: Callable[[list[Any]], Any],
        *args: Any,
        with_x: bool = False,
        with_offset: bool = False,
    ) -> Any: ...

    def reduce_x(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any: ...

    def reduce_xw(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any: ...

    def reduce_x_holding(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any: ...

    def reduce_held(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any: ...

    def drop_held(self) -> None: ...

    def keep_labels(self) -> bool | str: ...

    def labels(self, labeler: Callable[[np.ndarray, int], np.ndarray]) -> Any: ...

    def full_cost(self) -> np.ndarray: ...

    def sample(self) -> Any: ...

    def shift_sample(self) -> Any: ...

    def drop_shift_sample(self) -> bool: ...

    def band_budget(self) -> int: ...

    def row_bytes(self) -> int: ...


def sample_size(
    n_samples: int,
    n_clusters: int,
    requested: int = SAMPLE_ROWS,
    *,
    row_bytes: int = 0,
    budget: int | None = None,
) -> int:
    """Rows of the sample a fit draws: ``requested`` and 64 per cluster at least.

    The sample is gathered on the client: with ``row_bytes`` (bytes of one row of X) and
    ``budget`` (bytes; the Dask engine's gather budget) it is cut to what the budget holds
    (every row when ``n_samples`` is at most twice the size, so the bound is on the gathered
    rows), and a ``ValueError`` names the settings when not even 64 rows per cluster fit.
    """
    size = max(int(requested), SAMPLE_PER_CLUSTER * int(n_clusters))
    if not row_bytes or budget is None:
        return size
    gathered = n_samples if n_samples <= 2 * size else size
    if gathered * row_bytes <= budget:
        return size
    fits = int(budget // row_bytes)
    least = SAMPLE_PER_CLUSTER * int(n_clusters)
    if fits < least:
        from dask.utils import format_bytes

        raise ValueError(
            f"the initial sample needs {least} rows (64 per cluster) of {row_bytes} bytes, "
            f"{format_bytes(least * row_bytes)}, more than the gather budget "
            f"({format_bytes(budget)}: ballot.band-memory, at most half of "
            "ballot.memory-fraction of the cluster's memory) allows; raise ballot.band-memory "
            "(e.g. dask.config.set({'ballot.band-memory': '1 GiB'}))"
        )
    return max(fits // 2, least) if n_samples <= 2 * fits else fits


def sampled_rows(offset: int, rows: int, stride: int, seed: int) -> np.ndarray:
    """Whether each global row is in a seeded sample of about one row in ``stride``: a
    multiplicative hash of the row index, so the sample does not depend on the chunking."""
    if stride <= 1:
        return np.ones(rows, dtype=bool)
    index = np.arange(offset, offset + rows, dtype=np.uint64) + np.uint64(seed)
    hashed = (index * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    return hashed < np.uint64((1 << 32) // stride)


def solver_sample(
    sample: np.ndarray,
    n_samples: int,
    n_clusters: int,
    dense_fits: Callable[[], bool] | None = None,
) -> np.ndarray | None:
    """The rows the exact solver's first potentials come from: the fit's row sample, thinned
    (hashed) to at most a quarter of the rows; ``None`` when that leaves fewer than 4096 rows
    or 16 per cluster (the whole problem is then as cheap), unless the whole problem's dense
    cost rows do not fit the band's budget (``dense_fits()`` is false; asked only then):
    large k on few rows per cluster, where a cold start needs informed potentials to hold
    its rows as candidates, so 4 per cluster will do."""
    if 4 * sample.shape[0] > n_samples:
        stride = -(-4 * sample.shape[0] // max(n_samples, 1))
        sample = sample[sampled_rows(0, sample.shape[0], stride, _NESTED_SEED)]
    rows = sample.shape[0]
    if rows >= max(_NESTED_MIN, 16 * n_clusters):
        return sample
    if dense_fits is not None and rows >= max(_NESTED_MIN, 4 * n_clusters) and not dense_fits():
        return sample
    return None


def dense_rows_fit(blocks: Blocks, n_clusters: int) -> bool:
    """Whether every row's dense cost row fits the blocks' band budget, twice over (as the
    exact solver counts a gathered row: its k costs, a few numbers and its coordinates)."""
    row = 8 * (n_clusters + 4) + blocks.row_bytes()
    return 2 * blocks.n_samples * row <= blocks.band_budget()


def _block_weights(wb: np.ndarray | None, xb: Any) -> np.ndarray:
    return np.ones(xb.shape[0]) if wb is None else wb


def shift_stride(
    n_samples: int, n_clusters: int, sample_rows: int, row_bytes: int, budget: int
) -> int:
    """The stride of the shift sample (:meth:`Blocks.shift_sample`), 0 for none.

    About one row in :data:`SHIFT_STRIDE`, or fewer where half of ``budget`` (bytes; the
    gather budget) holds fewer rows of ``row_bytes``; none where that leaves fewer than 16
    times the fit's row sample (``sample_rows``: a pass over X is then cheap, and that
    sample nearly as good; by default X has at least 4 million rows) or where a pass does
    not count pairs (k < 2 or k > :data:`~ballot_dask.pair_bins.PAIR_MAX_CLUSTERS`).

    Its size is what matters: from 10^7 rows (k = 16, d = 16) the shift from one row in 10
    left 13 000-20 000 points off, which a band within the budget could not always repair
    (a second pass in 4 of 9 steps); from one row in 5, 7 000-11 000 points, one pass in
    every step."""
    if not 2 <= n_clusters <= PAIR_MAX_CLUSTERS or row_bytes <= 0:
        return 0
    rows = min(n_samples // SHIFT_STRIDE, int(_SHIFT_BUDGET_SHARE * budget) // row_bytes)
    if rows < _SHIFT_OVER_SAMPLE * max(sample_rows, 1):
        return 0
    return max(SHIFT_STRIDE, -(-n_samples // rows))


def sample_stride(n_samples: int, size: int) -> int:
    """The stride of a sample of about ``size`` rows among ``n_samples`` (1: every row)."""
    return max(1, n_samples // max(size, 1)) if n_samples > 2 * size else 1


@dataclass
class RowBlocks:
    """X as a list of row blocks held in memory, with the cost blocks of the current centers.

    Parameters
    ----------
    X : ndarray or scipy.sparse CSR matrix of shape (n_samples, n_features)
        The data, float32 or float64: C-contiguous, or CSR without duplicate entries
        (:func:`~ballot_dask.sparse.as_csr`).
    block_rows : int or None, default=None
        Rows per block; ``None`` is one block.  Results do not depend on it (tested).
    weights : ndarray of shape (n_samples,) or None, default=None
        Sample weights (float64, validated: finite, non-negative, positive sum); ``None``:
        every row weighs 1.
    """

    X: Any
    block_rows: int | None = None
    weights: np.ndarray | None = None
    passes: PassCounter = field(default_factory=PassCounter)
    gather_is_free: bool = field(default=True, init=False)
    streamed: bool = field(default=False, init=False)
    _costs: list[np.ndarray] | None = field(default=None, init=False, repr=False)
    _centers: np.ndarray | None = field(default=None, init=False, repr=False)
    _sample: np.ndarray | None = field(default=None, init=False, repr=False)
    _solver_sample: np.ndarray | None = field(default=None, init=False, repr=False)
    moments: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    shift_reference: Any = field(default=None, init=False, repr=False)
    sample_reference: Any = field(default=None, init=False, repr=False)
    entropic_reference: Any = field(default=None, init=False, repr=False)
    entropic_curvature: bool = field(default=True, init=False, repr=False)
    _stale: bool = field(default=False, init=False, repr=False)
    _held: list[Any] | None = field(default=None, init=False, repr=False)
    _budget: tuple[float, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.X.shape[0]
        step = n if not self.block_rows else max(1, int(self.block_rows))
        self.offsets = list(range(0, n, step)) or [0]
        self.blocks = [self.X[o : o + step] for o in self.offsets]
        w = self.weights
        self.weight_blocks = [None if w is None else w[o : o + step] for o in self.offsets]
        self.total_weight = float(n if w is None else w.sum())

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

    def set_centers(self, centers: np.ndarray) -> None:
        """Use ``centers`` from now on; their cost blocks are built (one pass over X) by the
        first pass that needs them (the exact step computes its costs inside its pass)."""
        self._centers = np.array(centers, dtype=np.float64)
        self._stale = True

    def prepare(self, sample_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw the fit's row sample (the same rows as the Dask engine's, for any chunking)
        and measure X's column means and variances: one pass.  Returns
        ``(sample, mean, var)``."""
        n = self.n_samples
        if is_sparse(self.X):
            keep = sampled_rows(0, n, sample_stride(n, sample_rows), seed)
            self._solver_sample = None
            self.passes.x += 1
            self._sample = self.X if keep.all() else self.X[keep]
            mean, m2 = column_stats(self.X)
            self.moments = (mean, m2 / max(n, 1))
            return self._sample, *self.moments
        stride = sample_stride(n, sample_rows)
        picked, count = [], 0
        mean = np.zeros(self.n_features)
        m2 = np.zeros(self.n_features)
        for start in range(0, n, _PREPARE_ROWS):
            # one read: each slab's rows, mean and squared deviations while it is in cache,
            # combined as Chan et al. (1979) do (no cancellation in the variance)
            slab = self.X[start : start + _PREPARE_ROWS]
            rows = slab.shape[0]
            keep = sampled_rows(start, rows, stride, seed)
            picked.append(slab if keep.all() else slab[keep])
            slab_mean = slab.mean(axis=0, dtype=np.float64)
            slab_m2 = np.square(slab - slab_mean, dtype=np.float64).sum(axis=0)
            delta = slab_mean - mean
            total = count + rows
            mean = mean + delta * (rows / total)
            m2 = m2 + slab_m2 + delta**2 * (count * rows / total)
            count = total
        self._sample = self.X if stride <= 1 else np.ascontiguousarray(np.concatenate(picked))
        self._solver_sample = None
        self.passes.x += 1
        self.moments = (mean, m2 / max(count, 1))
        return self._sample, *self.moments

    def sample(self) -> Any:
        """Rows for the exact solver's first potentials (:func:`solver_sample` of the fit's
        sample from :meth:`prepare`, else of a hashed one); ``None`` for few rows."""
        if self._sample is None:
            n = self.n_samples
            self._sample = self.X[sampled_rows(0, n, sample_stride(n, SAMPLE_ROWS), 0)]
        if self._solver_sample is None:
            k = self._centers_count()
            self._solver_sample = solver_sample(
                self._sample, self.n_samples, k, lambda: dense_rows_fit(self, k)
            )
        return self._solver_sample

    def shift_sample(self) -> None:
        """None: in memory a pass costs no more than the sample's."""
        return None

    def drop_shift_sample(self) -> bool:
        """False: there is none."""
        return False

    def _centers_count(self) -> int:
        return 0 if self._centers is None else int(self._centers.shape[0])

    def band_budget(self) -> int:
        """In memory: a quarter of the machine's available memory, read again once
        ``_BUDGET_SECONDS`` have passed since the last reading (the system's memory report
        costs about 0.13 ms a reading, and a step asks for the budget every time)."""
        now = time.monotonic()
        if self._budget is None or now - self._budget[0] >= _BUDGET_SECONDS:
            self._budget = (now, int(psutil.virtual_memory().available) // 4)
        return self._budget[1]

    def row_bytes(self) -> int:
        """A gathered row's bytes: 8 per feature (a sparse X: its arrays' bytes per row)."""
        if is_sparse(self.X):
            return -(-nbytes(self.X) // max(self.n_samples, 1))
        return 8 * self.n_features

    @classmethod
    def from_cost(cls, C: np.ndarray) -> RowBlocks:
        """Blocks holding a given cost matrix and no coordinates (for a transport problem
        that is not a clustering step, e.g. the exact repair's doubtful points)."""
        blocks = cls(np.zeros((C.shape[0], 0), dtype=C.dtype))
        blocks._costs = [C]
        return blocks

    def _require_costs(self) -> list[np.ndarray]:
        if self._centers is None and self._costs is None:
            raise RuntimeError("set_centers() must be called before a pass")
        if self._stale:
            reuse: list[np.ndarray | None] = [None] * len(self.blocks)
            if self._costs is not None:  # overwrite the previous cost blocks in place
                reuse = list(self._costs)
            self._costs = [
                cost_block(b, self.centers, c) for b, c in zip(self.blocks, reuse, strict=True)
            ]
            self.passes.x += 1
            self._stale = False
        assert self._costs is not None
        return self._costs

    def reduce(
        self,
        kernel: Callable[..., Any],
        combine: Callable[[list[Any]], Any],
        *args: Any,
        with_x: bool = False,
        with_offset: bool = False,
    ) -> Any:
        """Apply ``kernel([X_b,] C_b, *args[, offset])`` to every block and ``combine`` the list.

        One pass over the cost blocks (and over X when ``with_x``).
        """
        costs = self._require_costs()
        parts = []
        for off, xb, cb in zip(self.offsets, self.blocks, costs, strict=True):
            head: Sequence[Any] = (xb, cb) if with_x else (cb,)
            tail: Sequence[Any] = (off,) if with_offset else ()
            parts.append(kernel(*head, *args, *tail))
        self.passes.cost += 1
        self.passes.rounds += 1
        if with_x:
            self.passes.x += 1
        return combine(parts)

    def reduce_x(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of ``kernel(X_b, *args, offset)`` over the blocks: one pass over X."""
        parts = [kernel(xb, *args, off) for off, xb in zip(self.offsets, self.blocks, strict=True)]
        self.passes.x += 1
        self.passes.rounds += 1
        return combine(parts)

    def reduce_xw(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of ``kernel(X_b, w_b, *args, offset)`` over the blocks (``w_b``: the
        block's weights, ones without weights): one pass over X."""
        parts = [
            kernel(xb, _block_weights(wb, xb), *args, off)
            for off, xb, wb in zip(self.offsets, self.blocks, self.weight_blocks, strict=True)
        ]
        self.passes.x += 1
        self.passes.rounds += 1
        return combine(parts)

    def reduce_x_holding(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of the first of ``kernel(X_b, *args, offset)`` over the blocks, the
        second held (:meth:`reduce_held`): one pass over X."""
        parts = [kernel(xb, *args, off) for off, xb in zip(self.offsets, self.blocks, strict=True)]
        self._held = [held for _, held in parts]
        self.passes.x += 1
        self.passes.rounds += 1
        return combine([shipped for shipped, _ in parts])

    def reduce_held(
        self, kernel: Callable[..., Any], combine: Callable[[list[Any]], Any], *args: Any
    ) -> Any:
        """``combine`` of ``kernel(held_b, *args)`` over the held parts: one round."""
        if self._held is None:
            raise RuntimeError("reduce_x_holding() must be called first")
        parts = [kernel(held, *args) for held in self._held]
        self.passes.rounds += 1
        return combine(parts)

    def drop_held(self) -> None:
        """Let the held parts go."""
        self._held = None

    def keep_labels(self) -> bool:
        """The exact pass returns every row's label when the blocks live in this process
        (``gather_is_free``: they are here already)."""
        return bool(self.gather_is_free)

    def labels(self, labeler: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """``labeler(C_b, offset)`` of every block, concatenated (one pass over the costs);
        ``labeler(X_b, offset)`` for a labeler with ``reads_x`` (one pass over X); no pass
        for one that holds them (``labeler.held()``, the exact step's)."""
        held = getattr(labeler, "held", None)
        labels = None if held is None else held()
        if labels is not None and labels.shape[0] == self.n_samples:
            return labels
        if getattr(labeler, "reads_x", False):
            parts = [labeler(xb, off) for off, xb in zip(self.offsets, self.blocks, strict=True)]
            self.passes.x += 1
        else:
            costs = self._require_costs()
            parts = [labeler(cb, off) for off, cb in zip(self.offsets, costs, strict=True)]
            self.passes.cost += 1
        self.passes.rounds += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def full_cost(self) -> np.ndarray:
        """The whole cost matrix (only for the ``emd`` reference solver)."""
        costs = self._require_costs()
        return costs[0] if len(costs) == 1 else np.concatenate(costs)
