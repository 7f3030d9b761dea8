"""The exact repair of one band (:func:`.exact.solve_exact`'s step 3): price rounds where many
points must move (:mod:`.prices`), then successive shortest paths (:mod:`.paths`), and the
step's outcome with its certificate when they reach the band's optimum (:func:`.search._outcome`).
A band whose candidates' optimum is not the band's own is solved again on dense rows, from
that optimum by cycle cancelling (:mod:`.cycles`) where it can.
"""

from __future__ import annotations

import numpy as np

from ..blocks import Blocks
from ..candidates import BandCosts
from ..capacities import Capacities
from ..exact_pass import ExactPass
from .base import StepOutcome
from .cycles import SETTLED, cancel_cycles
from .paths import DONE, successive_shortest_paths
from .prices import price_rounds, worth_rounds
from .search import _outcome, _Search, imbalance


def repair_band(
    blocks: Blocks,
    capacities: Capacities,
    band: ExactPass,
    costs: BandCosts,
    labels: np.ndarray,
    off: int,
    search: _Search,
) -> StepOutcome | None:
    """The band's exact optimum from the pass's potentials, under which ``labels`` (``off``
    points from the sizes) are minimisers, or from an earlier band's in this step where they
    misplace fewer (price rounds first when many points must move), with the step's
    summaries; ``None`` when the band cannot meet the sizes (the shortest paths found no
    path)."""
    start = search.potentials  # the pass's: the fixed rows' labels are minimisers
    if search.repaired is not None:
        # a narrower band's optimum in this step, which its certificate could not prove: its
        # potentials may misplace far fewer of this band's rows (a band widened at k = 1024
        # on balls from random rows: 296 points to move instead of 6 714, a dense repair of
        # 0.31 s instead of 1.09 s)
        other, _ = costs.labels(search.repaired)
        k = capacities.n_clusters
        moved = imbalance(band.counts + np.bincount(other, minlength=k), capacities)
        if moved < off:
            labels, start, off = other, search.repaired, moved
    width = costs.costs.shape[1] if costs.restricted else 0
    if worth_rounds(off, capacities.n_clusters, labels.shape[0], width):
        # many points to move: the clusters' prices first (the repair's start only)
        start, labels, _ = price_rounds(costs, start, capacities, band.counts)
    result = successive_shortest_paths(
        costs.costs,
        labels,
        capacities.lower,
        capacities.upper,
        start,
        fixed_counts=band.counts,
        columns=costs.columns,
        n_clusters=capacities.n_clusters,
    )
    search.augmentations += result.augmentations
    search.repaired = result.potentials if result.status == DONE else None
    search.optimum = labels if result.status == DONE and costs.restricted else None
    search.restricted += int(costs.restricted)
    if result.status != DONE:
        # no path from a surplus: dense rows would not help when a cluster over its bound
        # holds no band row (none can leave it), so the band is too narrow
        counts = band.counts + np.bincount(labels, minlength=capacities.n_clusters)
        over = counts > capacities.upper
        rowless = np.bincount(labels, minlength=capacities.n_clusters) == 0
        search.narrow = bool(np.any(over & rowless))
        return None
    return _outcome(
        blocks, capacities, band, costs, labels, result.slack, result.potentials, search
    )


def repair_dense(
    blocks: Blocks,
    capacities: Capacities,
    band: ExactPass,
    costs: BandCosts,
    off: int,
    search: _Search,
) -> tuple[StepOutcome | None, np.ndarray]:
    """The band's exact optimum on its dense rows ``costs`` after its candidates' failed, with
    the band's labels.  From the candidates' optimum (when the shortest paths reached it) by
    cancelling the negative cycles of the dense slack graph: it is mostly the band's own, and
    the shortest paths from the pass's potentials would move thousands of points again (at
    k = 1024 on separated clusters, a repair of 0.06-1.24 s against 0.03-0.15 s).  Else, or
    when the cancelling does not settle within its budget, the shortest paths from the
    pass's potentials (:func:`repair_band`)."""
    optimum, search.optimum = search.optimum, None
    if optimum is not None and search.repaired is not None:
        labels = optimum.copy()
        result = cancel_cycles(
            costs.costs,
            labels,
            capacities.lower,
            capacities.upper,
            search.repaired,
            fixed_counts=band.counts,
        )
        search.cancelled += result.cycles
        search.augmentations += result.moved
        if result.status == SETTLED:  # the band's optimum (the certificate tells whether
            # it is the whole problem's, as after the shortest paths), and its potentials
            search.repaired = result.potentials
            step = _outcome(
                blocks, capacities, band, costs, labels, result.slack, result.potentials, search
            )
            return step, labels
    labels, _ = costs.labels(search.potentials)
    return repair_band(blocks, capacities, band, costs, labels, off, search), labels
