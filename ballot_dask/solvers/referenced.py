"""The row sample balanced at its sizes at the previous step's optimum (a control variate).

A warm exact step (:func:`.exact.solve_exact`) starts from the previous step's potentials.
Once the centers have moved, those misplace the points whose best cluster changed; the row
sample can tell better ones before any pass.  Balanced at the capacities scaled to its rows,
the sample's potentials misplace about ``_sample_error`` points of X, its own draw's error,
whatever the step.  Balanced instead at the sizes it had at the previous step's optimum
(where X met the sizes exactly), the draw's error cancels, and what is left comes from the
sample's rows that change label only: few in a late Lloyd step.  Measured here (10^6 x 32
blobs, k = 16, a 66 668-row sample, the 20-iteration fit of ``bench_iteration.py``), points of
X misplaced in steps 2-14:

- warm potentials: 219 526, 24 842, 15 131, 14 003 ... 1 241, 491, 171;
- the sample's, at the capacities scaled: 6 000-8 700 every step;
- the sample's, at its sizes at the previous optimum: 3 737, 4 153, 3 830, 3 311 ... 562,
  494, 326.

The sample also says how far off the warm potentials are, against the same sizes, to within
a few percent (221 051 seen for 219 526, 15 870 for 15 131), so a step takes the sample's
potentials only where they are likely to misplace fewer points (:func:`take_referenced`).
Warm potentials that misplace more than 5 % of the rows (an early Lloyd step whose centers
moved much) still go to the sample balanced at the capacities scaled
(:func:`.exact._warm_off`): on separated clusters from random data rows, a band cut around
the referenced potentials there needed wider bands in that step and the next ones (10^7 rows
in memory: 12-15 s a fit against 7-15 s).
"""

from __future__ import annotations

import math

import numpy as np

from ..blocks import Blocks, RowBlocks
from ..candidates import BandCosts
from ..capacities import Capacities
from .base import SolverOptions
from .search import _quantile_of_gaps, _sample_costs, _Search

#: the sample's potentials at its reference sizes misplace at most about this many times
#: ``(n / s) sqrt(2 k m)`` points of X, ``m`` the sample's rows they relabel against the warm
#: ones (measured on the fit above and on 4x10^5 x 8 blobs: 0.33-1.19 times, 0.85 at the
#: median; the upper end errs toward keeping the warm potentials and a wider first band)
_ERROR = 1.2
#: ... and replace the warm potentials when those misplace this many times more, as the
#: sample sees them (its count of the warm potentials' points has a noise of about the same
#: size: near it, either may misplace fewer, and either serves, the band being cut for what
#: they misplace; above twice it, the sample's were better in every step measured)
_GAIN = 1.0


def reference_bounds(
    held: np.ndarray, sizes: np.ndarray, capacities: Capacities, n: int
) -> Capacities | None:
    """A sample's size bounds from the rows per cluster it ``held`` at an optimum whose
    clusters had ``sizes`` among X's ``n`` rows: each within the room the capacities leave
    that cluster, scaled to the sample.  ``None`` when rounding leaves no feasible bounds
    (a guard: it cannot)."""
    held = np.asarray(held, dtype=np.float64)
    s = float(held.sum())
    ratio = s / n
    sizes = np.asarray(sizes, dtype=np.float64)
    lower = np.floor(held + ratio * (capacities.lower - sizes) + 1e-9)
    upper = np.ceil(held + ratio * (capacities.upper - sizes) - 1e-9)
    lower = np.clip(lower, 0.0, s).astype(np.int64)
    upper = np.clip(np.maximum(upper, lower), 0.0, s).astype(np.int64)
    if lower.sum() > s or upper.sum() < s:
        return None
    return Capacities(lower, upper)


def sample_reference(
    costs: BandCosts, potentials: np.ndarray, sizes: np.ndarray, capacities: Capacities, n: int
) -> Capacities | None:
    """The row sample's bounds for the next step (:func:`reference_bounds`): its rows per
    cluster under a step's optimal ``potentials`` (``costs``: its cost rows at the step's
    centers; ``sizes``: the step's clusters' sizes)."""
    labels, _ = costs.labels(np.asarray(potentials, dtype=np.float64))
    held = np.bincount(labels, minlength=capacities.n_clusters)
    return reference_bounds(held, sizes, capacities, n)


def referenced_error(n: int, k: int, s: int, moved: int) -> float:
    """Points of X the sample's potentials at its reference misplace, about, when they
    relabel ``moved`` of its ``s`` rows against the warm potentials."""
    return _ERROR * (n / s) * math.sqrt(2.0 * k * moved)


def take_referenced(off: float, expected: float) -> bool:
    """Whether the sample's potentials at its reference (``expected`` points misplaced, see
    :func:`referenced_error`) replace warm ones that misplace ``off`` points as it sees
    them."""
    return off > _GAIN * expected


def from_reference(
    search: _Search,
    blocks: Blocks,
    held: Capacities | None,
    off: float,
    labels: np.ndarray,
) -> float | None:
    """The sample's potentials at its bounds at the previous step's optimum (``held``,
    :mod:`.referenced`), warm-started at the current ones, replace them where they likely
    misplace fewer of X's points than the ``off`` the sample sees the current ones
    misplace; the first band then holds what they misplace as a sample's potentials' band
    does (:func:`.exact._from_sample`).  ``labels``: the sample's under the current potentials.
    Returns the points of X the potentials taken are expected to misplace
    (:func:`referenced_error`), or ``None`` when the current ones stay (always without
    ``held``)."""
    from .exact import _PER_CLUSTER, _SAMPLE_BAND, _SAMPLE_ROOM, _SAMPLE_ROWS, solve_exact

    sample = blocks.sample()
    if held is None or sample is None:
        return None
    n, k, s = blocks.n_samples, held.n_clusters, sample.shape[0]
    nested = RowBlocks(sample)
    nested.set_centers(blocks.centers)
    step = solve_exact(nested, held, SolverOptions(max_band=None), search.potentials)
    blocks.passes.sample += 1
    costs = _sample_costs(search, sample, blocks.centers)
    moved = int(np.count_nonzero(costs.labels(step.potentials)[0] != labels))
    expected = referenced_error(n, k, s, moved)
    if not take_referenced(off, expected):
        return None
    search.potentials = step.potentials
    search.sampled = True
    search.per_cluster = _PER_CLUSTER
    band = max(_SAMPLE_BAND * expected, min(_SAMPLE_ROOM * expected, _SAMPLE_ROWS))
    search.wanted = min(search.limit, max(search.wanted, int(band)))
    search.theta = _quantile_of_gaps(costs, step.potentials, search.wanted / n)
    return expected
