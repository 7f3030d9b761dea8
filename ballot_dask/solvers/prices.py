"""Price rounds: the potentials moved toward balance, all clusters at once, before the repair.

The exact repair (:mod:`.paths`) moves one point per augmentation, each after a Dijkstra
search on the k clusters.  When the potentials it starts from misplace many points (an early
Lloyd step, a cold sample, a large k), most of the step's time goes there: at k = 1024 an
augmentation costs about a millisecond.  A *price round* moves every cluster's potential at
once, as clusters bidding for points would in an auction for similar objects (Bertsekas and
Castanon 1989), from one scan of the band's reduced costs:

- an over-full cluster lowers its potential by the smallest amount that lets its surplus go,
  the ``s``-th smallest top-two gap among its rows (``s`` its surplus): those rows then prefer
  their runner-up;
- an under-full cluster raises its potential by the smallest amount that draws its deficit,
  the ``d``-th smallest gap among the rows whose runner-up it is.

Rounds alternate between the two, each from the labels the best round so far left.  The
clusters move together, so a round may overshoot: one that leaves more points to move is
retried at half its move; the rounds stop when that does not help either.

On dense rows from 64 clusters, the over-full clusters move alone, and the rounds stop at
the first that removes fewer than ``LEAST_MOVES`` points.  There the under-full side
overshot in every repair measured (cold samples, and bands whose candidates found no path,
at k = 256 to 4096: 10 of 10; its first round left 1.5 to 11 times the points to move, and
its half move was worse too), while the over-full side alone kept removing a tenth or more
a round, and left the repair far fewer searches: at k = 4096, a cold sample of 25 000 rows
went from 8 797 augmentations in 4 423 searches, 7.8 s, to 3 842 in 63, 1.9 s.
On candidates (:mod:`ballot_dask.candidates`) both sides progressed in every repair
measured, and they still alternate.  Nothing here
decides the labels: the repair starts from the labels these potentials give and ends at an
exact optimum whatever they are, so a round can only change how much work the repair has
left.  (A forward auction, points bidding for clusters, was tried first; near-identical
points raise a cluster's price by tiny steps in its end game, tens of bids per point.)
"""

from __future__ import annotations

import numpy as np

from ..candidates import BandCosts
from ..capacities import Capacities
from .search import imbalance

#: scans of the band's costs at most
ROUNDS = 10
#: a round that leaves more than this share of the best imbalance so far makes no progress
_PROGRESS = 0.95
#: rounds in a row without progress before the rounds stop
_RETRIES = 2
#: worth the rounds from this many clusters (below, an augmentation costs microseconds) ...
MIN_CLUSTERS = 64
#: ... or from this many points to move at any k: the repair's per-arc lists then hold many
#: rows a cluster, and an augmentation costs far more (measured here at k = 16, with the
#: repair's rows grouped by label, :mod:`.grouping`: 24 000-56 000 points to move on bands
#: of 0.12-0.72 million rows, the rounds and the repair took 0.6-0.8 times the repair alone;
#: 8 700-14 000 on 0.03-0.16 million, 1.05-1.8 times)
MIN_MOVES = 16384
#: ... when more than this share of the band's rows must move (measured here: a round, one
#: scan of the band's costs, costs about what 100 augmentations do at k = 256 and 1024, and
#: the rounds remove nine tenths of the imbalance or more)
MIN_SHARE = 1 / 16
#: a round selects each moving cluster's gap from its rows when they average this many or more
_GROUP_ROWS = 32
#: on dense rows, a round that removes fewer points to move than this ends the rounds: a
#: round's scan of the band's costs costs what 80-190 augmentations do there (measured here,
#: k = 256 to 4096), and the rounds' later gains are small
LEAST_MOVES = 128


def worth_rounds(off: int, k: int, m: int, width: int = 0) -> bool:
    """Whether price rounds are likely to save the repair more than they cost: ``off``
    points to move among ``k`` clusters (many clusters, or many points), with ``m`` band
    rows to scan per round, each of ``width`` costs (candidates,
    :mod:`ballot_dask.candidates`; 0: dense rows of ``k``).  A round's scan costs in
    proportion to ``m * width``, an augmentation does not."""
    cells = width if 0 < width < k else k
    return (k >= MIN_CLUSTERS or off >= MIN_MOVES) and off * k > MIN_SHARE * m * cells


def _shift(
    keys: np.ndarray, gaps: np.ndarray, wanted: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """For every cluster ``j`` with ``wanted[j] > 0``: the ``wanted[j]``-th smallest of the
    gaps whose key is ``j`` (fewer when fewer rows have that key).  Returns the clusters and
    their gaps.

    With many rows a cluster, the rows are grouped by key (a stable radix sort of small
    integers) and each group's gap is selected, not sorted: linear in the rows (sorting the
    gaps by key and gap took two thirds of a round at k = 16 on 150 000 band rows: 11 ms
    against 3 ms).  With few rows a cluster (large k, a small band), one sort by key and gap
    costs less than a selection per cluster."""
    asked = wanted[keys] > 0  # only the moving clusters' rows are grouped (few, mostly)
    keys = keys[asked]
    gaps = gaps[asked]
    available = np.bincount(keys, minlength=k)
    take = np.minimum(wanted, available)
    clusters = np.flatnonzero(take > 0)
    if clusters.shape[0] * _GROUP_ROWS > keys.shape[0]:
        order = np.lexsort((gaps, keys))
        first = np.searchsorted(keys[order], clusters)
        return clusters, gaps[order[first + take[clusters] - 1]]
    small = np.int16 if k <= np.iinfo(np.int16).max else np.int32
    grouped = gaps[np.argsort(keys.astype(small), kind="stable")]
    first = np.concatenate(([0], np.cumsum(available)[:-1]))
    selected = np.empty(clusters.shape[0], dtype=np.float64)
    for i, j in enumerate(clusters):
        group = grouped[first[j] : first[j] + available[j]]
        selected[i] = np.partition(group, take[j] - 1)[take[j] - 1]
    return clusters, selected


def price_rounds(
    costs: np.ndarray | BandCosts,
    potentials: np.ndarray,
    capacities: Capacities,
    fixed_counts: np.ndarray,
    *,
    rounds: int = ROUNDS,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Potentials nearer balance for the band ``costs`` (float64, shape (m, k), or the
    band's candidates: their rows then move among their columns only).

    ``fixed_counts`` are the points per cluster outside the band (they count in the sizes
    but never move).  At most ``rounds`` scans of the costs.  A round that leaves more
    points to move than the best so far is taken back and retried at half its move (the
    clusters overshot together); the rounds stop after ``_RETRIES`` rounds in a row that
    failed, or did not shrink the imbalance to ``_PROGRESS`` of the best.

    On dense rows from ``MIN_CLUSTERS`` clusters, only the over-full clusters move, and
    a round that removes fewer than ``LEAST_MOVES`` points is the last (see the module
    docstring).

    Returns ``(potentials, labels, imbalance)``: the best potentials seen (the given ones
    when no round improved on them), the band's labels under them (``argmin_j (C_ij -
    v_j)``, lowest index on ties) and the points still to move.
    """
    band = costs if isinstance(costs, BandCosts) else BandCosts(costs)
    k = capacities.n_clusters
    lower, upper = capacities.lower, capacities.upper
    v = np.asarray(potentials, dtype=np.float64).copy()
    best: tuple | None = None
    side = 0  # even: the over-full clusters move; odd: the under-full ones
    alternate = band.restricted or k < MIN_CLUSTERS
    retries = 0
    for _ in range(rounds):
        labels, second, gaps = band.runner_up(v)
        counts = fixed_counts + np.bincount(labels, minlength=k)
        off = imbalance(counts, capacities)
        if best is not None and off >= best[0]:
            retries += 1  # overshot: half the move, from the best
            if retries > _RETRIES:
                break
            v = best[1] + 0.5 * (v - best[1])
            continue
        retries = 0 if best is None or off <= _PROGRESS * best[0] else retries + 1
        gained = alternate or best is None or best[0] - off >= LEAST_MOVES
        best = (off, v, labels)
        if off == 0 or retries > _RETRIES or not gained:
            break
        v = v.copy()
        movable = np.isfinite(gaps)  # a row with no runner-up (one column) never moves
        if side % 2 == 0:  # over-full clusters let their cheapest rows go
            clusters, shift = _shift(
                labels[movable], gaps[movable], np.maximum(counts - upper, 0), k
            )
            v[clusters] -= shift + _margin(v[clusters], shift)
        else:  # under-full clusters draw the rows whose runner-up they are
            keep = movable & (second >= 0)
            clusters, shift = _shift(second[keep], gaps[keep], np.maximum(lower - counts, 0), k)
            v[clusters] += shift + _margin(v[clusters], shift)
        side += 1 if alternate else 2
    if best is None:
        labels, _, _ = band.runner_up(v)
        counts = fixed_counts + np.bincount(labels, minlength=k)
        return v, labels, imbalance(counts, capacities)
    return best[1], best[2], best[0]


def _margin(v: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """A little more than the gap, so that the row at the gap changes sides (round-off)."""
    return 1e-12 * (np.abs(v) + np.abs(shift)) + np.finfo(np.float64).tiny
