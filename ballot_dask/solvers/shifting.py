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
  first pass, so that this pass is usually the whole step.

Each keeps the potentials from before the shift (``_Search.unshifted``): the next pass goes
back to them when it finds more points off.
"""

from __future__ import annotations

import numpy as np

from ..blocks import Blocks
from ..capacities import Capacities
from ..exact_pass import ExactPass, exact_pass
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
from .shift import shift_potentials

#: a pass's histogram shifts the potentials when the points to move are more than one in
#: this many of the band's rows (see :func:`.exact.solve_exact`)
_SHIFT_SHARE = 8
_PRESHIFT_TELLS = 1.5  # the shift sample shifts when it sees this times its error off, or more


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


def _shift(search: _Search, band: ExactPass, capacities: Capacities, off: int) -> None:
    """Shift the potentials by the pass's pair histogram (:mod:`.shift`), and cut the next
    band around them: twice the points that were off, as the model orders the gaps.  The
    potentials, the points off and the band before the shift are kept: if the next pass finds
    more points off, the step goes back to them (see :func:`.exact.solve_exact`)."""
    assert band.pairs is not None
    shift = shift_potentials(band.pairs, band.pair_scale, search.potentials, capacities)
    search.unshifted = (search.potentials, off, search.theta, search.wanted)
    search.shifts += 1
    search.potentials = shift.potentials
    search.cold = False
    wanted = max(_MIN_BAND, search.per_cluster * capacities.n_clusters, 2 * off)
    search.wanted = min(search.limit, wanted)
    search.theta = shift.theta_for(search.wanted)


def _preshift(
    search: _Search,
    blocks: Blocks,
    subset: np.ndarray,
    sample: np.ndarray,
    capacities: Capacities,
) -> None:
    """Shift the potentials by the shift sample's pair histogram, before any pass over X.

    The shift sample (``subset``, :meth:`~ballot_dask.blocks.Blocks.shift_sample`) is
    counted as a pass would count X (:func:`~ballot_dask.exact_pass.exact_pass` with a pair
    histogram, on the client), and its model is balanced at its own sizes (the capacities
    scaled to its rows, :mod:`.shift`).  The band is then cut around the shifted potentials
    as :func:`_shift` cuts it (twice the points the potentials misplaced, as the shift
    sample sees them), and the potentials before the shift are kept: the first pass goes
    back to them if it finds more points off.  Where the warm potentials misplace points
    on many boundaries (a Lloyd step's centers all move a little), this is what a pass with
    a histogram would tell, without that pass: the step is usually one pass over X.

    Where the potentials misplace no more of the shift sample than its own error (a late
    Lloyd step, whose warm potentials are nearly right), they are not moved: the band is cut
    around them, as wide.  (At 10^7 rows, k = 16, from 2 million sample rows: one pass in
    each of 20 iterations; shifting in the late ones too, 2-5 passes in each of the last
    ten.)

    The bins' scale is the sample's median top-two gap under the potentials."""
    n, s, k = blocks.n_samples, subset.shape[0], capacities.n_clusters
    _, _, gaps = _sample_off(
        _sample_costs(search, sample, blocks.centers), search.potentials, capacities, n
    )
    scale = _gap_scale(gaps)
    if scale == 0.0 or not 0 < s < n:
        return
    counted = exact_pass(subset, blocks.centers, search.potentials, 0.0, 0, pair_scale=scale)
    blocks.passes.sample += 1
    assert counted.pairs is not None
    scaled = capacities.scaled(s / n)
    off = int(imbalance(counted.pairs.sum(axis=(1, 2)), scaled) * n / s)
    error = _sample_error(n, k, s)
    # the shift sample's own error: about ``error`` points left off, which a band of 16
    # times as many rows repairs (at 10^7 rows, k = 16: 7 000-11 000 points off, repaired
    # in bands of 12-22 times as many rows; 9 times was too narrow)
    noise = 2 * _SHIFT_SHARE * error
    search.wanted = min(search.limit, max(_MIN_BAND, search.per_cluster * k, 2 * off, int(noise)))
    if off <= _PRESHIFT_TELLS * error:
        # the potentials misplace no more of the shift sample than its own error: it cannot
        # tell where they are off, and a shift would only add its error (a late Lloyd step);
        # a band as wide around them
        search.theta = counted.band_rows_below(int(search.wanted * s / n))
        return
    shift = shift_potentials(counted.pairs, scale, search.potentials, scaled)
    search.unshifted = (search.potentials, off, search.theta, search.wanted)
    search.potentials = shift.potentials
    search.preshifted = True
    search.theta = shift.theta_for(int(search.wanted * s / n))
