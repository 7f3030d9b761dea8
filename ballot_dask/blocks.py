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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .kernels import cost_block


@dataclass
class PassCounter:
    """How often the data were read: passes over X, passes over the cost blocks, and the
    collective rounds (one reduction each, a scheduler round trip on the Dask engine)."""

    x: int = 0
    cost: int = 0
    rounds: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "cost": self.cost, "rounds": self.rounds}


class Blocks(Protocol):
    """What a solver may ask of an engine."""

    passes: PassCounter

    @property
    def n_samples(self) -> int: ...

    @property
    def dtype(self) -> np.dtype: ...

    def set_centers(self, centers: np.ndarray) -> None: ...

    def reduce(
        self,
        kernel: Callable[..., Any],
        combine: Callable[[list[Any]], Any],
        *args: Any,
        with_x: bool = False,
        with_offset: bool = False,
    ) -> Any: ...

    def labels(self, labeler: Callable[[np.ndarray, int], np.ndarray]) -> Any: ...

    def full_cost(self) -> np.ndarray: ...


@dataclass
class RowBlocks:
    """X as a list of row blocks held in memory, with the cost blocks of the current centers.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The data, C-contiguous float32 or float64.
    block_rows : int or None, default=None
        Rows per block; ``None`` is one block.  Results do not depend on it (tested).
    """

    X: np.ndarray
    block_rows: int | None = None
    passes: PassCounter = field(default_factory=PassCounter)
    _costs: list[np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.X.shape[0]
        step = n if not self.block_rows else max(1, int(self.block_rows))
        self.offsets = list(range(0, n, step)) or [0]
        self.blocks = [self.X[o : o + step] for o in self.offsets]

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def set_centers(self, centers: np.ndarray) -> None:
        """Build (and keep) the cost blocks for ``centers``: one pass over X."""
        reuse: list[np.ndarray | None] = [None] * len(self.blocks)
        if self._costs is not None:  # overwrite the previous cost blocks in place
            reuse = list(self._costs)
        self._costs = [cost_block(b, centers, c) for b, c in zip(self.blocks, reuse, strict=True)]
        self.passes.x += 1

    @classmethod
    def from_cost(cls, C: np.ndarray) -> RowBlocks:
        """Blocks holding a given cost matrix and no coordinates (for a transport problem
        that is not a clustering step, e.g. the exact repair's doubtful points)."""
        blocks = cls(np.zeros((C.shape[0], 0), dtype=C.dtype))
        blocks._costs = [C]
        return blocks

    def _require_costs(self) -> list[np.ndarray]:
        if self._costs is None:
            raise RuntimeError("set_centers() must be called before a pass")
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

    def labels(self, labeler: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """``labeler(C_b, offset)`` of every block, concatenated (one pass over the costs)."""
        costs = self._require_costs()
        parts = [labeler(cb, off) for off, cb in zip(self.offsets, costs, strict=True)]
        self.passes.cost += 1
        self.passes.rounds += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def full_cost(self) -> np.ndarray:
        """The whole cost matrix (only for the ``emd`` reference solver)."""
        costs = self._require_costs()
        return costs[0] if len(costs) == 1 else np.concatenate(costs)
