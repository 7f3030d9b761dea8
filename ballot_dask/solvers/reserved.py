"""The exact step's reserve: bands cut again without another pass over X.

Where a pass reads X from its storage (:attr:`~ballot_dask.blocks.Blocks.streamed`: a Dask
array too large to persist) and counts the pair histogram (k up to 32), it keeps a *reserve*
on the workers (:mod:`ballot_dask.reserve`):
the rows within a threshold ``reach`` several times the band's.  The step's next band, for
potentials shifted by that pass's histogram (:func:`.shifting._shift`), put back
(:func:`.exact.solve_exact`) or for a wider threshold, comes from the reserve in one round
when every row beyond ``reach`` keeps its label and stays out of it
(:meth:`HeldReserve.serves`).  Streamed from storage at 10^8 rows, k = 16, the shift sample's
potentials misplaced 80 000-150 000 points, more than a band within the budget settles: each
of the first 16 Lloyd steps read X twice, about 8 s a read.  The reserve holds the rows
within about ten times that band's threshold, and the shifted band comes from it.

The reserve takes at most ``_RESERVE_SHARE`` of X's rows and the band's memory budget
(:meth:`~ballot_dask.blocks.Blocks.band_budget`: its rows are held by the workers, as a
band's are before they are gathered), and it serves at most ``_RESERVE_ROUNDS`` bands per
step (a band it cuts is certified as any other: one that does not settle the step is
widened or shifted again, and the next pass reads X).  Where X is persisted a second pass
costs no read, and keeping a reserve cost more than it saved (10^6 and 10^7 rows, k = 16,
5 iterations on the 2-process cluster: 18-24 % more time for the same rounds): none is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..blocks import Blocks
from ..combine import combine_passes
from ..exact_pass import ExactPass
from ..reserve import combine_reserved, reserve_band, reserve_pass
from .search import _sample_costs, _Search

_RESERVE_SHARE = 0.05  # the reserve holds about this share of X's rows ...
_RESERVE_BANDS = 8  # ... or this many times the band's rows, whichever is more ...
_RESERVE_ROUNDS = 2  # ... and cuts at most this many bands per step


@dataclass
class HeldReserve:
    """The reserve of the step's last pass: the potentials and reach it was kept for."""

    potentials: np.ndarray
    reach: float
    rounds: int = 0

    def serves(self, v: np.ndarray, theta: float) -> bool:
        """Whether the band for potentials ``v`` and threshold ``theta`` can come from the
        reserve: no row beyond its reach would change label or enter that band."""
        if self.rounds >= _RESERVE_ROUNDS or not math.isfinite(theta):
            return False
        moved = np.asarray(v, dtype=np.float64) - self.potentials
        return float(moved.max() - moved.min()) + theta < self.reach


def reserve_size(search: _Search, blocks: Blocks, sample: np.ndarray) -> tuple[float, int] | None:
    """The reach and rows of a reserve for the search's next pass: ``_RESERVE_SHARE`` of X's
    rows or ``_RESERVE_BANDS`` times the band's, within the band's budget; the reach is the
    sample's gap below which that share of its rows lies.  ``None`` when the reserve would
    not hold twice the band's rows (as the sample sees them)."""
    n = blocks.n_samples
    row_bytes = blocks.n_features * np.dtype(blocks.dtype).itemsize + 8
    _, gaps = _sample_costs(search, sample, blocks.centers).labels(search.potentials)
    band = max(search.wanted, n * float(np.mean(gaps <= search.theta)))
    most = max(_RESERVE_SHARE * n, _RESERVE_BANDS * band)
    rows = int(min(n, most, blocks.band_budget() // row_bytes))
    if rows <= 2 * band:
        return None
    reach = float(np.quantile(gaps, rows / n))
    return (reach, rows) if search.theta < reach < math.inf else None


def pass_keeping_reserve(
    search: _Search, blocks: Blocks, cap: int, pair_scale: float, size: tuple[float, int]
) -> tuple[ExactPass, HeldReserve | None]:
    """The step's pass at the search's potentials and threshold (band of at most about
    ``cap`` rows, pair histogram at ``pair_scale``), keeping a reserve of ``size`` (reach,
    rows: :func:`reserve_size`) on the workers; the reserve, or ``None`` when it ran out of
    room (more rows within its reach than the sample said)."""
    reach, rows = size
    v = search.potentials
    band, full = blocks.reduce_x_holding(
        reserve_pass,
        combine_reserved,
        blocks.centers,
        v,
        search.theta,
        cap,
        blocks.n_samples,
        reach,
        rows,
        pair_scale,
    )
    if full:
        blocks.drop_held()
        return band, None
    return band, HeldReserve(np.array(v, dtype=np.float64), reach)


def band_from_reserve(held: HeldReserve, search: _Search, blocks: Blocks, cap: int) -> ExactPass:
    """The band at the search's potentials and threshold, cut from the reserve (one round,
    no pass over X)."""
    held.rounds += 1
    return blocks.reduce_held(
        reserve_band,
        combine_passes,
        blocks.centers,
        search.potentials,
        search.theta,
        cap,
        blocks.n_samples,
    )
