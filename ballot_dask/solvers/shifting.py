"""Shifting a step's potentials by a pair histogram (:mod:`.shift`), with no pass over X.

Where a pass over X is dear (Dask) and k small, :func:`.exact.solve_exact` moves its
potentials toward balance from a model of the whole problem, the rows counted by label,
second-best cluster and top-two gap:

- :func:`_pair_scale`: whether the next pass counts that histogram, and the scale of its
  bins (the sample's median gap);
- :func:`_shift`: a shift from a pass's histogram (every row of X), and the band cut around
  the shifted potentials;
- :func:`_preshift`: a shift from the engine's *shift sample*
  (:meth:`~ballot_dask.blocks.Blocks.shift_sample`), counted on the client before the step's
  first pass (and counted again after the shift where a pass reads X from storage), so that
  this pass is usually the whole step;
- :func:`sample_sizes`: the shift sample's sizes at a step's optimum, which the next step's
  shift balances it at.

Each keeps the potentials from before the shift (``_Search.unshifted``): the next pass goes
back to them when it finds more points off.
"""

from __future__ import annotations

import numpy as np

from ..blocks import Blocks
from ..capacities import Capacities
from ..exact_pass import ExactPass, exact_pass
from .referenced import reference_bounds
from .search import (
    _AHEAD_OFF,
    _MIN_BAND,
    _gap_scale,
    _sample_costs,
    _sample_error,
    _sample_off,
    _Search,
    imbalance,
)
from .shift import pair_counts, shift_potentials

#: a pass's histogram shifts the potentials when the points to move are more than one in
#: this many of the band's rows (see :func:`.exact.solve_exact`)
_SHIFT_SHARE = 8
_PRESHIFT_TELLS = 1.5  # the shift sample shifts when it sees this times its error off, or more
MAX_SHIFTS = 3  # potentials shifted by a pair histogram, at most, per step
_UNPLACED = 0.5  # a shift whose model leaves more than this share of the points off is not made
#: where a pass reads X from storage, the shift sample is counted again after a shift at
#: most this many times, until it sees no more than this fraction of its error off
_RECOUNTS = 2
_RECOUNTED = 8


def sample_sizes(
    search: _Search, potentials: np.ndarray, sizes: np.ndarray, capacities: Capacities, n: int
) -> Capacities | None:
    """The shift sample's size bounds for the next step's :func:`_preshift`: the sizes the
    step's optimum (``potentials``, its clusters' ``sizes``) gives the shift sample, as its
    pair histogram's model counts them (:func:`~.shift.pair_counts`), each within the room
    the capacities leave that cluster, scaled to the sample.

    The next step's shift then balances the sample's *changes* (a control variate): at the
    previous optimum X met the sizes exactly, and what the new centers change is counted on
    the rows that change label only, rather than on every row.  Balanced at the capacities
    scaled to its rows, the sample's own draw left about ``_sample_error`` points off in
    every step (10^8 rows, k = 16, 4 million sample rows: 90 000-145 000, more than the
    band within the budget settles: a second round in every step).  ``None`` when the step
    counted no shift sample."""
    if search.sample_pairs is None:
        return None
    pairs, scale, before = search.sample_pairs
    held = pair_counts(pairs, scale, np.asarray(potentials, dtype=np.float64) - before)
    return reference_bounds(held, sizes, capacities, n)


def _count(
    search: _Search, blocks: Blocks, subset: np.ndarray, scale: float
) -> tuple[ExactPass, np.ndarray]:
    """The shift sample counted as a pass counts X, with its pair histogram at ``scale``,
    under the search's potentials (kept as ``search.sample_pairs``)."""
    counted = exact_pass(subset, blocks.centers, search.potentials, 0.0, 0, pair_scale=scale)
    blocks.passes.sample += 1
    assert counted.pairs is not None
    search.sample_pairs = (counted.pairs, scale, np.array(search.potentials, dtype=np.float64))
    return counted, counted.pairs


def _pair_scale(
    search: _Search, sample: np.ndarray | None, centers: np.ndarray, capacities: Capacities, n: int
) -> float:
    """The scale of the next pass's pair histogram: the sample's median top-two gap under
    the search's potentials (the bins reach from about 2^-12 to 16 times it).  0 (no
    histogram) when the sample has none, or when the step has made no pass and taken no
    sample's potentials yet and these misplace no more of the sample than its own noise (a
    warm step's first pass, which then usually settles the step alone: the histogram would
    slow it for nothing)."""
    if sample is None:
        return 0.0
    costs = _sample_costs(search, sample, centers)
    off, _, gaps = _sample_off(costs, search.potentials, capacities, n)
    sure = search.passes > 0 or search.sampled or search.preshifted
    if not sure and off <= _AHEAD_OFF * _sample_error(n, capacities.n_clusters, sample.shape[0]):
        return 0.0
    return _gap_scale(gaps)


def _shift(search: _Search, band: ExactPass, capacities: Capacities, off: int) -> bool:
    """Shift the potentials by the pass's pair histogram (:mod:`.shift`), and cut the next
    band around them: twice the points that were off, as the model orders the gaps; ``False``
    (no shift, and none after it in this step) when the model itself leaves more than
    ``_UNPLACED`` of the points off.  The potentials, the points off and the band before the
    shift are kept (and the pass itself, without its histogram, where it is at most half the
    budget): if the next pass finds more points off, the step goes back to them (see
    :func:`.exact.solve_exact`), and to the kept pass without another."""
    assert band.pairs is not None
    shift = shift_potentials(band.pairs, band.pair_scale, search.potentials, capacities)
    if shift.imbalance > _UNPLACED * off:
        # the model moves rows to their second-best cluster, within its bins' reach: the
        # points must go farther (separated clusters, a start that split some: measured
        # here, 7 710 of 7 634 points left off, and the pass under the shift undone)
        search.shifts = MAX_SHIFTS
        return False
    # the pass is kept while it is small beside the budget (the shifted one comes beside it)
    kept = band._replace(pairs=None) if 2 * band.rows.shape[0] <= search.limit else None
    search.unshifted = (search.potentials, off, search.theta, search.wanted, kept)
    search.shifts += 1
    search.potentials = shift.potentials
    search.cold = False
    wanted = max(_MIN_BAND, search.per_cluster * capacities.n_clusters, 2 * off)
    search.wanted = min(search.limit, wanted)
    search.theta = shift.theta_for(search.wanted)
    return True


def _preshift(
    search: _Search,
    blocks: Blocks,
    subset: np.ndarray,
    sample: np.ndarray,
    capacities: Capacities,
    reference: Capacities | None = None,
) -> None:
    """Shift the potentials by the shift sample's pair histogram, before any pass over X.

    The shift sample (``subset``, :meth:`~ballot_dask.blocks.Blocks.shift_sample`) is
    counted as a pass would count X (:func:`~ballot_dask.exact_pass.exact_pass` with a pair
    histogram, on the client), and its model is balanced at its own sizes: ``reference``,
    the sizes the previous step's optimum gave it (:func:`sample_sizes`), else the
    capacities scaled to its rows (:mod:`.shift`).  The band is then cut around the shifted
    potentials as :func:`_shift` cuts it (twice the points the potentials misplaced, as the shift
    sample sees them), and the potentials before the shift are kept: the first pass goes
    back to them if it finds more points off.  Where the warm potentials misplace points
    on many boundaries (a Lloyd step's centers all move a little), this is what a pass with
    a histogram would tell, without that pass: the step is usually one pass over X.

    Where the potentials misplace no more of the shift sample than its own error (a late
    Lloyd step, whose warm potentials are nearly right), they are not moved: the band is cut
    around them, as wide.  (At 10^7 rows, k = 16, from 2 million sample rows: one pass in
    each of 20 iterations; shifting in the late ones too, 2-5 passes in each of the last
    ten.)  Balanced at ``reference`` its error is a fraction of that: it shifts from an
    eighth of it.

    Where a pass reads X from storage (:attr:`~ballot_dask.blocks.Blocks.streamed`) the
    sample is counted again under the shifted potentials, up to ``_RECOUNTS`` times, and
    shifted again while it sees more than an eighth of its error off; a count that sees more
    points off than the one before goes back to the potentials before that shift, with no
    more shifts in the step.  (At 10^8 rows, k = 16, 4 million sample rows, 20 iterations:
    1.05 rounds per warm iteration instead of 1.95; each count takes about 0.25 s.)

    The bins' scale is the sample's median top-two gap under the potentials."""
    n, s, k = blocks.n_samples, subset.shape[0], capacities.n_clusters
    _, _, gaps = _sample_off(
        _sample_costs(search, sample, blocks.centers), search.potentials, capacities, n
    )
    scale = _gap_scale(gaps)
    if scale == 0.0 or not 0 < s < n:
        return
    counted, pairs = _count(search, blocks, subset, scale)
    if reference is None or not reference.lower.sum() <= s <= reference.upper.sum():
        reference = None  # (none, or another sample's)
    scaled = capacities.scaled(s / n) if reference is None else reference
    off = int(imbalance(pairs.sum(axis=(1, 2)), scaled) * n / s)
    error = _sample_error(n, k, s)
    # the shift sample's own error: about ``error`` points left off, which a band of 16
    # times as many rows repairs (at 10^7 rows, k = 16: 7 000-11 000 points off, repaired
    # in bands of 12-22 times as many rows; 9 times was too narrow)
    noise = 2 * _SHIFT_SHARE * error
    search.wanted = min(search.limit, max(_MIN_BAND, search.per_cluster * k, 2 * off, int(noise)))
    # against its sizes at the last optimum the sample sees the rows that changed label
    # only, with a fraction of that error
    tells = _PRESHIFT_TELLS * error if reference is None else error / _RECOUNTED
    if off <= tells:
        # the potentials misplace no more of the shift sample than its own error: it cannot
        # tell where they are off, and a shift would only add its error (a late Lloyd step);
        # a band as wide around them
        search.theta = counted.band_rows_below(int(search.wanted * s / n))
        return
    search.unshifted = (search.potentials, off, search.theta, search.wanted, None)
    search.preshifted = True
    rows = int(search.wanted * s / n)
    # a pass that reads X from storage is dear: the sample is counted again under the
    # shifted potentials and shifted again, until the model's own error is gone (one shift
    # by a histogram misplaces a few percent of the points it moves: at 10^8 rows, k = 16,
    # the sample saw 14 000-118 000 points off after one shift, 300-1 300 after two)
    best = (off, search.potentials, counted, pairs)
    recounts = _RECOUNTS if blocks.streamed else 0
    while True:
        shift = shift_potentials(best[3], scale, best[1], scaled)
        search.potentials = shift.potentials
        search.theta = shift.theta_for(rows)
        if recounts == 0:
            return
        recounts -= 1
        counted, pairs = _count(search, blocks, subset, scale)
        off = int(imbalance(pairs.sum(axis=(1, 2)), scaled) * n / s)
        if off > best[0]:
            # the shift misled (the model does not see moves past its bins or to a
            # third-best cluster): back to the potentials before it, and no more shifts in
            # this step
            off, search.potentials, counted, pairs = best
            search.sample_pairs = (pairs, scale, np.array(search.potentials, dtype=np.float64))
            search.theta = counted.band_rows_below(rows)
            search.shifts = MAX_SHIFTS
            if search.potentials is search.unshifted[0]:
                search.unshifted, search.preshifted = None, False
            return
        best = (off, search.potentials, counted, pairs)
        if off <= error / _RECOUNTED:
            search.theta = counted.band_rows_below(rows)
            return
