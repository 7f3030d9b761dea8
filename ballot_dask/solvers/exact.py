"""BalLOT's assignment step, solved exactly (DESIGN section 3).

1. *Potentials from a sample.*  The potentials of the transport problem depend on the
   distribution of the points, not on their number, so the same problem on a fixed row sample
   (held by the engine, capacities scaled to it) gives them up to the sampling error.  The
   sample's problem is solved exactly by this same function, on its own nested sample first
   (each level eight times smaller: the depth is bounded).  From a warm start (the previous
   Lloyd iteration's potentials) the sample is used only when they misplace too many points.
2. *One pass over the data* (:func:`~ballot_dask.kernels.band_pass`): every point is labelled
   by ``argmin_j (C_ij - v_j)``; the points with the smallest top-two gaps (the *band*) are
   gathered whole, the others are summarised (counts, centroid sums, objective, slack
   matrix).
3. *Exact repair*: successive shortest paths on the cluster graph
   (:func:`.paths.successive_shortest_paths`) move band points until every size is within
   its bounds, keeping complementary slackness with every point, fixed or not.  If a shortest
   path needs a point outside the band, the band is widened (another pass, from the
   potentials reached so far); a band holding every point needs none, so the loop ends.
4. *Certificate*: the fixed points' slack matrix and the band's, combined, prove the labels
   optimal (:mod:`ballot_dask.certificate`); no further pass is needed.

Nothing of size n is kept between passes: the band is bounded by the engine's memory budget
(``ballot.band-memory`` on Dask) and by ``max_band``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from dask.utils import format_bytes

from ..blocks import Blocks, RowBlocks
from ..capacities import Capacities
from ..certificate import certify_labels
from ..kernels import BandPass, band_pass, combine_band, label_sums
from .base import HardLabels, SolverOptions, StepOutcome
from .paths import DONE, WIDEN, successive_shortest_paths

_MIN_BAND = 8192  # band rows gathered at least (a warm Lloyd step's imbalance fits easily)
_PER_CLUSTER = 64  # ... and at least this many per cluster
_WIDEN = 4  # a band too narrow for the shortest paths grows by this factor
_WARM_SAMPLE = 0.02  # warm potentials misplacing more than this share go back to the sample


def imbalance(counts: np.ndarray, capacities: Capacities) -> int:
    """Points to move before every size is within its bounds."""
    over = np.maximum(counts - capacities.upper, 0)
    under = np.maximum(capacities.lower - counts, 0)
    return int(max(over.sum(), under.sum()))


def _band_kernel(
    X: np.ndarray,
    C: np.ndarray,
    v: np.ndarray,
    size: int,
    total: int,
    strict: bool,
    offset: int,
) -> BandPass:
    """A block's share of a band of ``size`` rows among ``total``: all of it for one block,
    else twice its share (rows are not spread evenly over the blocks) and a few, or exactly
    its share when the band's size is a hard limit (``strict``)."""
    m = C.shape[0]
    if m >= total:
        share = size
    elif strict:
        share = size * m // max(total, 1)
    else:
        share = min(m, math.ceil(2.0 * size * m / max(total, 1)) + 16)
    return band_pass(X, C, v, share, offset)


@dataclass
class _Search:
    """Where the search for the exact labels stands."""

    potentials: np.ndarray
    size: int  # band rows asked for
    limit: int  # band rows allowed
    passes: int = 0
    augmentations: int = 0
    widenings: int = 0
    sampled: bool = False


def solve_exact(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """An exact optimum of the balanced transport LP on the current cost blocks, certified."""
    n, k = blocks.n_samples, capacities.n_clusters
    row_bytes = 8 * (k + blocks.n_features + 4)
    budget = blocks.band_budget()
    limit = min(n, max(budget // row_bytes, 1))
    if options.max_band is not None:
        limit = min(limit, options.max_band)
    cold = potentials is None
    v = np.zeros(k) if cold else np.asarray(potentials, dtype=np.float64)
    # gathering rows costs nothing in memory: then the band is every row (no widening)
    first = limit if blocks.gather_is_free else min(limit, max(_MIN_BAND, _PER_CLUSTER * k))
    search = _Search(potentials=v, size=first, limit=limit)
    sample = blocks.sample()
    if cold and sample is not None:
        _from_sample(search, blocks, sample, capacities, options)
    while True:
        band = blocks.reduce(
            _band_kernel,
            combine_band,
            search.potentials,
            search.size,
            n,
            options.max_band is not None,
            with_x=True,
            with_offset=True,
        )
        search.passes += 1
        off = imbalance(band.sizes, capacities)
        gathered = band.rows.shape[0]
        if not search.sampled and sample is not None and off > max(_WARM_SAMPLE * n, gathered / 4):
            # warm potentials far off (the centers moved much): the sample first
            _from_sample(search, blocks, sample, capacities, options)
            continue
        if 4 * off > gathered and gathered < min(n, search.limit):
            search.size = min(search.limit, max(search.size, 4 * off + _PER_CLUSTER * k))
            if search.size > gathered:
                continue
        labels = band.labels.copy()
        result = successive_shortest_paths(
            band.costs,
            labels,
            capacities.lower,
            capacities.upper,
            search.potentials,
            fixed_counts=band.counts,
            fixed_slack=band.slack,
        )
        search.augmentations += result.augmentations
        if result.status == DONE:
            return _outcome(blocks, capacities, band, labels, result.slack, search, eps)
        if result.status != WIDEN or gathered >= n:
            raise RuntimeError(  # pragma: no cover - bounds are validated upstream
                "the size bounds cannot be met (infeasible capacities)"
            )
        if search.size >= search.limit:
            raise _band_error(search, budget, k, options)
        search.potentials = result.potentials
        search.size = min(search.limit, _WIDEN * max(search.size, gathered))
        search.widenings += 1


def _from_sample(
    search: _Search,
    blocks: Blocks,
    sample: np.ndarray,
    capacities: Capacities,
    options: SolverOptions,
) -> None:
    """Potentials from the sample (warm-started at the current ones unless cold), and a band
    wide enough for what they misplace: about ``(n / 2) sqrt(k / s)`` points."""
    n, k = blocks.n_samples, capacities.n_clusters
    warm = search.potentials if search.passes else None
    search.potentials = _sample_potentials(blocks, sample, capacities, options, warm)
    search.sampled = True
    expected = 0.5 * n * math.sqrt(k / sample.shape[0])
    search.size = min(search.limit, max(search.size, int(4 * expected)))


def _sample_potentials(
    blocks: Blocks,
    sample: np.ndarray,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None,
) -> np.ndarray:
    """Exact potentials of the problem on the engine's row sample, capacities scaled to it."""
    n, s = blocks.n_samples, sample.shape[0]
    nested = RowBlocks(sample)
    nested.set_centers(blocks.centers)
    scaled = capacities.scaled(s / n)
    unlimited = SolverOptions(max_band=None)
    step = solve_exact(nested, scaled, unlimited, potentials)
    blocks.passes.sample += 1
    return step.potentials


def _band_error(search: _Search, budget: int, k: int, options: SolverOptions) -> RuntimeError:
    """The error for a band that needs more than ``search.limit`` rows."""
    wanted = _WIDEN * search.limit
    if options.max_band is not None and search.limit == options.max_band:
        return RuntimeError(
            f"the exact repair needs more than max_band={options.max_band} points in its "
            "band; raise max_band or leave it unset"
        )
    return RuntimeError(
        f"the exact repair needs a band of about {wanted} points, more than the "
        f"{search.limit} that fit its memory budget ({format_bytes(budget)} at k={k}; it "
        f"would need about {format_bytes(budget * wanted // max(search.limit, 1))}); raise "
        "ballot.band-memory (dask.config.set({'ballot.band-memory': '1 GiB'}) or "
        "DASK_BALLOT__BAND_MEMORY), or start from better centers"
    )


def _outcome(
    blocks: Blocks,
    capacities: Capacities,
    band: BandPass,
    labels: np.ndarray,
    band_slack: np.ndarray,
    search: _Search,
    eps: float | None,
) -> StepOutcome:
    """The step's summaries: the fixed rows' and the band's, and the certificate."""
    k = capacities.n_clusters
    sizes = band.counts + np.bincount(labels, minlength=k)
    sums = band.sums + label_sums(band.x, labels, k)
    rows = np.arange(labels.shape[0])
    objective = band.objective + float(band.costs[rows, labels].sum())
    slack = np.minimum(band.slack, band_slack)
    potentials, certificate = certify_labels(slack, sizes, capacities, objective, blocks.n_samples)
    return StepOutcome(
        method="exact",
        potentials=potentials,
        eps=float(eps) if eps is not None else 0.0,
        mass=sizes.astype(np.float64),
        sums=sums,
        objective=objective,
        sizes=sizes,
        # the fixed rows' labels are minimisers under the pass's potentials (ties included)
        labeler=HardLabels(search.potentials, band.rows, labels),
        certificate=certificate,
        n_iter=search.augmentations,
        band_size=int(labels.shape[0]),
        retries=search.widenings,
        extra={"passes": float(search.passes), "sampled": float(search.sampled)},
    )
