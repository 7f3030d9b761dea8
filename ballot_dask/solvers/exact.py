"""BalLOT's assignment step, solved exactly (DESIGN section 3).

1. *Potentials from a sample.*  The potentials of the transport problem depend on the
   distribution of the points, not on their number, so the same problem on a fixed row sample
   (held by the engine, capacities scaled to it) gives them up to the sampling error.  The
   sample's problem is solved exactly by this same function, on its own nested sample first
   (each level at most a quarter of the one above: the depth is bounded).  From a warm start
   (the previous Lloyd iteration's potentials) the sample replaces them only when they
   misplace too many points.  Where X has many times the sample's rows, the sample tells
   before any pass (:func:`_warm_off`): when it sees the warm potentials misplace more points
   than its own would, they are replaced at once.  After a step that ended certified, the
   sample is balanced at the sizes that step's optimum gave it instead of the capacities
   scaled (:mod:`.referenced`, a control variate: its own draw's error cancels), and those
   potentials replace the warm ones where they likely misplace fewer points.  Else it *looks ahead*
   (:func:`_look_ahead`): its own step, warm-started at the same potentials, tells which gaps
   the moving rows cross, and the first band is cut that wide, so that one pass is usually all
   the step needs (on Dask a pass over X is also a round and a read).
2. *One pass over X* (:func:`~ballot_dask.exact_pass.exact_pass`): every point is labelled by
   ``argmin_j (C_ij - v_j)``; the points whose top-two gap is at most ``theta`` (the *band*) are
   gathered, the others summarised (counts, centroid sums, objective, slack matrix).  Costs
   are computed slab by slab inside the pass and never stored.  At large k the band rows
   come back as their few cheapest clusters (:mod:`ballot_dask.candidates`) once the
   potentials are informed (a sample's or a warm start's), instead of being recomputed as
   dense cost rows.
   Where a pass is dear and k is small, a pass that may find the potentials far off also
   counts the rows by label, second-best cluster and gap (the *pair histogram*); when the
   points to move are many times the band's rows, the client shifts the potentials to
   balance that model (:mod:`.shift`, no pass) and cuts the next band around them
   (:mod:`.shifting`).  Where the engine holds a *shift sample* (Dask, X of millions of
   rows: :meth:`~ballot_dask.blocks.Blocks.shift_sample`), the client counts it the same
   way before the first pass and shifts the potentials from its model
   (:func:`.shifting._preshift`), in place of the look-ahead: the band of that pass is cut
   around them, and the step is usually that one pass.  Where X is streamed from storage, a
   pass that counts the pair histogram also keeps a *reserve* where each chunk was read (the
   rows within a threshold about ten times the band's, :mod:`.reserved`): when that pass's
   histogram shifts the potentials by less than the reserve reaches, the next band is cut
   from the reserve in one round, with no second read of X.
3. *Exact repair*: successive shortest paths on the cluster graph
   (:func:`.paths.successive_shortest_paths`) solve the band's own transport problem (the
   capacity the fixed points leave) exactly.  When they would have many points to move, a few
   price rounds (:mod:`.prices`) first move every cluster's potential toward balance.
4. *Certificate*: the fixed points' slack matrix and the band's, combined, decide whether the
   band's optimum is the whole problem's (:mod:`ballot_dask.certificate`), with no further
   pass.  If not, a point beyond the band had to move: the band is widened (another pass);
   a band holding every point is the whole problem, so the loop ends.  A band solved on its
   candidates whose certificate fails is checked against its true slack matrix
   (:func:`~ballot_dask.candidates.band_slack_matrix`): proved, done; every band row content
   under the repair's potentials, widened as above; else a row wanted a column it did not
   hold, and the same band is solved again from dense rows, with no new pass (where they fit
   the budget and a gigabyte, the band's dense cost rows are computed once, for that check,
   and the repair takes them: at 10^5 x 64, k = 1024, each costs a quarter of a second).  Before
   widening, a band that failed may get a reach per pair of clusters (its *allowance*,
   :func:`.allowance._allow`): separated clusters' boundaries lie where points are sparse and the
   potentials loose, and the points that cross there lie far beyond the threshold that
   holds the dense boundaries' ones.  In memory at large k, the pass under the allowance is
   refined from the last pass's labels (:func:`.passes.refined_pass`): only the rows whose
   label has an allowed pair are read again, at those pairs' columns.

A warm Lloyd iteration is therefore one read of X.  The band threshold is carried from one
iteration to the next (as the step's ``eps``): the next one picks, from the pass's histogram of
gaps, the threshold that holds the band it wants, as wide as this step's imbalance needed.
"""

from __future__ import annotations

import math

import numpy as np

from ..blocks import Blocks, RowBlocks
from ..candidates import BandCosts, candidate_width
from ..capacities import Capacities
from ..combine import combine_passes
from ..exact_pass import band_costs
from .allowance import _allow, _truncated
from .base import SolverOptions, StepOutcome
from .newton import entropic_potentials
from .passes import _pass_kernel, refined_pass
from .referenced import from_reference, sample_reference
from .repair import repair_band as _repair
from .repair import repair_dense as _repair_dense
from .reserved import HeldReserve, band_from_reserve, pass_keeping_reserve, reserve_size
from .search import (
    _AHEAD_OFF,
    _MIN_BAND,
    _PER_CLUSTER,
    _SHARED_DENSE_BYTES,
    _WARM_PER_CLUSTER,
    _WIDEN,
    _band_error,
    _band_limits,
    _certified,
    _costs_of,
    _quantile_of_gaps,
    _sample_costs,
    _sample_error,
    _sample_off,
    _Search,
    imbalance,
)
from .shift import MAX_CLUSTERS as _SHIFT_CLUSTERS
from .shifting import (
    _SHIFT_SHARE,
    MAX_SHIFTS,
    _pair_scale,
    _preshift,
    _shift,
    sample_sizes,
)

_WARM_ROOM = 4  # a warm step's first band may hold this many times a cold step's least band
_WARM_SAMPLE = 0.02  # warm potentials misplacing more than this share go back to the sample
_REFERENCED_FAR = 0.05  # ... this share, where the sample has its sizes at the last optimum
#: a sample's potentials: a band of this many times the points they misplace, at least ...
_SAMPLE_BAND = 4
#: ... and up to ``_SAMPLE_ROOM`` times as many within ``_SAMPLE_ROWS`` rows (a repair of a
#: few milliseconds): separated clusters' boundaries, where the points are sparse and the
#: potentials loose, then lie inside the first band more often, and a cold step is one pass,
#: not two with an allowance between them (one cold step from random rows, in memory:
#: 10^5 x 16, k = 16: 82-88 -> 46-54 ms; 10^5 x 16, k = 64: 198-212 -> 125-129 ms)
_SAMPLE_ROOM = 16
_SAMPLE_ROWS = 1 << 15
_MAX_RECENTRED = 4  # a full band's potentials refined (or, half, its candidates re-cut)
_REFINE_PASSES = 12  # passes of one refinement, at most
_AHEAD_RATIO = 8  # the sample looks ahead when X has at least this many times its rows ...
# ... and the warm potentials misplace more than _AHEAD_OFF times its own error ...
_AHEAD_SHARE = 0.25  # ... and the band it asks for is at most this share of the rows
_MAX_SHIFTS = MAX_SHIFTS  # potentials shifted by a pair histogram, at most, per step
_NARROW = 1.25  # a band is widened before its repair when the imbalance asks this much more
#: the first pass of a warm step counts no pair histogram when the sample expects its
#: potentials to misplace at most ``1 / (_CALM * _SHIFT_SHARE)`` of the band's rows (a shift
#: needs ``1 / _SHIFT_SHARE``): on 2 worker processes (10^6 x 16 blobs, 20 iterations) the
#: fit took 2.53-2.64 s instead of 2.71-2.91
_CALM = 1
_ALLOW_CLUSTERS = 1024  # pairs of clusters get their own allowance up to this k ...
_MAX_ALLOWED = 4  # ... grown at most this many times per step


def solve_exact(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """An exact optimum of the balanced transport LP for the blocks' centers, certified.

    ``potentials`` and ``eps`` are the previous step's (a warm start): ``eps`` is the band
    threshold it ended with.  Blocks with sample weights go to
    :func:`.weighted.solve_weighted_exact` (capacities in units of weight).
    """
    if getattr(blocks, "weights", None) is not None:
        from .weighted import solve_weighted_exact

        return solve_weighted_exact(blocks, capacities, options, potentials, eps)
    n, k = blocks.n_samples, capacities.n_clusters
    budget, dense_limit, wide_limit = _band_limits(blocks, k, options)
    cold = potentials is None
    limit = dense_limit if cold or not candidate_width(k) else wide_limit
    per_cluster = _PER_CLUSTER if cold else _WARM_PER_CLUSTER
    wanted = min(limit, max(_MIN_BAND, per_cluster * k))
    search = _Search(
        potentials=np.zeros(k) if cold else np.asarray(potentials, dtype=np.float64),
        theta=math.inf if cold or not eps else float(eps),
        # a warm threshold was cut for the band the previous step needed (see _outcome):
        # room for it, so that the pass does not truncate it (as much as from a cold start)
        wanted=(
            wanted if cold or not eps else min(limit, _WARM_ROOM * max(_MIN_BAND, _PER_CLUSTER * k))
        ),
        limit=limit,
        cold=cold,
        per_cluster=per_cluster,
    )
    sample = blocks.sample()
    if cold and sample is not None:
        _from_sample(search, blocks, sample, capacities, options)
    if cold and sample is None and blocks.gather_is_free and limit >= n:
        # in memory with no sample (few rows): a cold start takes every row into the band
        search.wanted, search.theta = n, math.inf
    elif not cold and not eps and sample is not None:
        # warm potentials without a threshold: the sample's gaps tell (else the first pass's
        # histogram does, if its band of the first rows is not enough)
        search.theta = _quantile_of_gaps(
            _sample_costs(search, sample, blocks.centers), search.potentials, wanted / n
        )
    allowing = 2 <= k <= _ALLOW_CLUSTERS
    shifting = (
        sample is not None
        and not blocks.gather_is_free
        and 2 <= k <= _SHIFT_CLUSTERS
        and getattr(blocks, "weights", None) is None
    )
    subset = blocks.shift_sample() if shifting and sample is not None else None
    # the row sample's sizes at the previous step's optimum (:mod:`.referenced`)
    referenced, blocks.sample_reference = blocks.sample_reference, None
    ahead = sample is not None and n >= _AHEAD_RATIO * sample.shape[0]
    if not cold and ahead:
        # a pass over X costs many times the sample's solve: the sample tells first whether
        # the warm potentials are far off (an early Lloyd step: its centers moved much), and
        # its potentials at its sizes at the previous optimum replace them if they misplace
        # fewer points; else it tells how wide the first band must be for the whole step
        # (unless the shift sample moves the potentials first, below)
        referenced = referenced if subset is None else None
        seen = _warm_off(search, blocks, sample, capacities, options, referenced)
        if seen is not None and subset is None:
            expected = from_reference(search, blocks, referenced, seen[0], seen[1])
            if expected is None:
                _look_ahead(search, blocks, sample, capacities, *seen)
            # the points the potentials misplace, as the sample tells, are far too few for
            # a shift by the first pass's pair histogram: it counts none (see _Search.calm)
            off = seen[0] if expected is None else expected
            search.calm = _CALM * _SHIFT_SHARE * off <= search.wanted
    # the shift sample's sizes at the previous step's optimum (its first use: this step)
    reference, blocks.shift_reference = blocks.shift_reference, None
    if subset is not None and not search.cold:
        # informed potentials (warm, or the sample's), X many times the shift sample and a
        # pass dear: shift them by the shift sample's pair histogram first (no pass)
        _preshift(search, blocks, subset, sample, capacities, None if cold else reference)
    held: HeldReserve | None = None  # the last pass's reserve (:mod:`.reserved`)
    try:
        while True:
            # large k: the band rows' cheapest clusters rather than their whole cost rows, once
            # the potentials are informed (from the zero start they are too far from the optimum)
            width = 0 if search.cold or search.dense else candidate_width(k)
            search.limit = wide_limit if width else dense_limit
            search.wanted = min(search.wanted, search.limit)
            # a pass over X is dear (Dask) and k small: the pass also counts the rows by label,
            # second-best cluster and gap, so that far-off potentials can be shifted without one
            # (not under an allowance: the band failed for want of rows far from the boundary,
            # not for potentials far off; a shift from there moved rows past the histogram's
            # reach, and its pass was undone)
            pair_scale = (
                _pair_scale(search, sample, blocks.centers, capacities, n)
                if shifting
                and search.shifts < _MAX_SHIFTS
                and not search.calm
                and search.allowance_for_pass() is None
                else 0.0
            )
            search.calm = False  # (the first pass only)
            # a threshold decides the band (up to the budget): a band cut at the rows asked for
            # would leave rows within the threshold out, at random, and the step would need
            # another pass (the threshold's estimate of the rows below it is rough); with no
            # threshold the band is the first rows asked for
            cap = search.wanted if search.theta == math.inf else max(search.wanted, search.limit)
            allowance = search.pass_allowance()
            plain = width or allowance is not None or options.max_band is not None
            if search.restored is not None:
                # the pass made under these potentials before a shift that misled
                band, search.restored = search.restored, None
            elif held is not None and not plain and held.serves(search.potentials, search.theta):
                # the potentials moved (or the band widened) within the last pass's reserve
                band = band_from_reserve(held, search, blocks, cap)
                search.reserved += 1
            elif (
                pair_scale > 0.0
                and blocks.streamed
                and not plain
                and sample is not None
                and (size := reserve_size(search, blocks, sample)) is not None
            ):
                # a pass that reads X from storage and counts the pair histogram (the
                # potentials may be shifted after it): it keeps a reserve
                band, held = pass_keeping_reserve(search, blocks, cap, pair_scale, size)
                search.passes += 1
            elif (
                kept := refined_pass(
                    blocks,
                    search.last,
                    search.potentials,
                    search.theta,
                    allowance,
                    cap,
                    width,
                    options.max_band is not None,
                )
            ) is not None:
                band = kept  # in memory: from the last pass's labels, see .passes
                search.passes += 1
            else:
                band = blocks.reduce_x(
                    _pass_kernel,
                    combine_passes,
                    blocks.centers,
                    search.potentials,
                    search.theta,
                    cap,
                    n,
                    options.max_band is not None,
                    width,
                    pair_scale,
                    allowance,
                    blocks.keep_labels(),  # (the labels stay where X is)
                )
                search.passes += 1
            gathered = band.rows.shape[0]
            search.last = (band, search.potentials.copy())
            costs = _costs_of(band, blocks.centers, search.potentials)
            labels, _ = costs.labels(search.potentials)
            off = imbalance(band.counts + np.bincount(labels, minlength=k), capacities)
            preshifted, search.preshifted = search.preshifted, False
            if search.unshifted is not None:
                before, before_off, theta, wanted, kept = search.unshifted
                search.unshifted = None
                if off > before_off:
                    # the shift misled (the model does not see moves past its bins or to a
                    # third-best cluster): back to the potentials before it and to their pass
                    # (if kept: no pass over X), and no more shifts in this step
                    search.potentials, search.theta, search.wanted = before, theta, wanted
                    search.shifts = _MAX_SHIFTS
                    search.restored = kept
                    continue
            if (
                not search.sampled
                and sample is not None
                and off > max(_WARM_SAMPLE * n, _sample_error(n, k, sample.shape[0]))
            ):
                # warm potentials far off (the centers moved much): the sample first, unless its
                # own potentials would misplace as many points (large k: few sample rows per
                # cluster)
                _from_sample(search, blocks, sample, capacities, options)
                continue
            if (
                band.pairs is not None
                and off * _SHIFT_SHARE > max(gathered, _MIN_BAND)
                and _shift(search, band, capacities, off)
            ):
                # the potentials, not the band's width, are what is off: shift them by the
                # pass's pair histogram (no pass), and cut a band around the shifted ones
                continue
            needed = min(search.limit, 4 * off + search.per_cluster * k)
            search.needed = max(search.needed, needed)
            if search.theta == math.inf and gathered < n:
                # no threshold yet and the band was cut at its size: take the boundary rows
                search.wanted = max(search.wanted, needed)
                search.theta = band.band_rows_below(search.wanted)
                continue
            if needed > _NARROW * gathered and gathered < search.limit and search.theta < math.inf:
                # too narrow a band for this imbalance: the histogram says how wide to go (a band
                # a little narrower than asked is tried first: the rule is rough, a pass is dear)
                search.wanted = max(search.wanted, needed)
                search.theta = band.band_rows_below(search.wanted)
                search.widenings += 1
                continue
            search.dense_fits = (
                costs.restricted
                and gathered <= dense_limit
                and 8 * gathered * k <= _SHARED_DENSE_BYTES
            )
            step = _repair(blocks, capacities, band, costs, labels, off, search)
            dense_costs, search.dense_costs = search.dense_costs, None
            if (
                costs.restricted
                and gathered <= dense_limit
                and not (
                    (step is not None and _certified(step)) or (search.narrow and gathered < n)
                )
            ):
                # the candidates could not settle the band (a row wanted a cluster it does not
                # hold, or no path on their columns): the same band, dense rows, if they fit the
                # budget (else the band is widened, or the potentials recentred, below).  (A band
                # whose own rows all hold is too narrow, see _outcome: it is widened below.)
                search.dense = True
                if dense_costs is None:  # (else computed for the failed certificate)
                    dense_costs = band_costs(band.x, blocks.centers)
                costs = BandCosts(dense_costs)
                step, labels = _repair_dense(blocks, capacities, band, costs, off, search)
            dense_costs = None  # (not held through the next pass unless the repair's)
            if step is not None and (_certified(step) or (gathered >= n and not costs.restricted)):
                # (every row in the band, on dense rows: the whole problem's optimum)
                if subset is not None:
                    blocks.shift_reference = sample_sizes(
                        search, step.potentials, step.sizes, capacities, n
                    )
                elif ahead and sample is not None:
                    blocks.sample_reference = sample_reference(
                        _sample_costs(search, sample, blocks.centers),
                        step.potentials,
                        step.sizes,
                        capacities,
                        n,
                    )
                return step
            if (
                preshifted
                and band.pairs is not None
                and search.shifts < _MAX_SHIFTS
                and _shift(search, band, capacities, off)
            ):
                # the shift sample's shift left more points off than its band could settle:
                # shift again by this pass's histogram (every row of X), as without it
                continue
            if gathered >= search.limit and subset is not None and blocks.drop_shift_sample():
                # the shift sample held half the budget: its bytes go to the band (for the rest
                # of the fit).  A band within the new limit is judged again below (an
                # allowance, else a wider band); else the widest band, about twice as wide, is
                # cut around the same potentials
                subset = None
                budget, dense_limit, wide_limit = _band_limits(blocks, k, options)
                search.limit = wide_limit if width else dense_limit
                if gathered >= search.limit:
                    search.wanted = search.limit
                    search.theta = band.band_rows_below(search.wanted)
                    continue
            if (
                allowing
                and search.allowed < _MAX_ALLOWED
                and gathered < search.limit
                and math.isfinite(search.theta)
                and not _truncated(band)
                and _allow(search, blocks.centers, sample, capacities, band, labels)
            ):
                # the band holds too few of the rows some clusters must trade (their boundaries
                # lie where the points are sparse, far beyond the threshold that holds the dense
                # boundaries' rows): the same potentials and threshold, with those pairs' reach
                continue
            if (
                gathered >= search.limit
                and band.pairs is not None
                and _shift(search, band, capacities, off)
            ):
                # the widest band the budget allows cannot settle these potentials: shift them
                continue
            if gathered >= search.limit:
                if 2 * search.limit >= n and gathered < n and search.theta < math.inf and not width:
                    # a pass returns up to twice its limit: the budget holds every row, and the
                    # whole problem is one band (its optimum is the step's), rather than
                    # potentials recentred to fit a narrower one
                    search.theta = math.inf
                    search.wanted = search.limit
                    continue
                recut = width and gathered >= n and search.recentred < _MAX_RECENTRED // 2
                repaired = search.repaired if recut else None
                if search.recentred >= _MAX_RECENTRED:
                    raise _band_error(search, budget, k, options)
                search.recentred += 1
                if repaired is not None:  # every row held as candidates, one wanted another
                    # column: none is fixed, so the band's optimum's potentials misplace none;
                    # its candidates again under them (k = 4096: one pass, not 480 s below)
                    search.potentials, search.theta = repaired, math.inf
                    continue
                if sample is None:
                    raise _band_error(search, budget, k, options)
                # the widest band the budget allows cannot settle these potentials: bring them
                # nearer the optimum with a few passes that need no band (Newton on the entropic
                # semi-dual, at a temperature whose fuzzy zone is a fraction of that band), then
                # cut a band of the same size around them
                costs_of_sample = _sample_costs(search, sample, blocks.centers)
                theta = _quantile_of_gaps(costs_of_sample, search.potentials, search.limit / n)
                counts = band.counts + np.bincount(labels, minlength=k)
                target = capacities.target(counts.astype(np.float64))
                refined = entropic_potentials(
                    blocks,
                    target,
                    search.potentials,
                    max(theta, 1e-300) / 8,
                    start=max(theta, 1e-300),
                    tol=search.limit / 8,
                    max_passes=_REFINE_PASSES,
                )
                search.potentials = refined.potentials
                search.passes += refined.passes
                search.wanted = search.limit
                search.theta = _quantile_of_gaps(
                    costs_of_sample, search.potentials, search.limit / (2 * n)
                )
                continue
            # the band's optimum is not the whole problem's (a point beyond the band must move):
            # widen it, from the same potentials (the band's own may misplace fixed rows)
            search.widenings += 1
            search.wanted = min(search.limit, _WIDEN * max(search.wanted, gathered))
            search.theta = band.band_rows_below(search.wanted)
    finally:
        blocks.drop_held()


def _look_ahead(
    search: _Search,
    blocks: Blocks,
    sample: np.ndarray,
    capacities: Capacities,
    off: float,
    labels: np.ndarray,
    gaps: np.ndarray,
) -> None:
    """A first band wide enough for the whole step, from the sample (no pass over X).

    The sample's own step, warm-started at the same potentials, moves some of its rows to
    other clusters; the widest top-two gap (under the current potentials) that one of them
    crossed is how wide the band must be for the rows of X that will move too, so that the
    certificate holds after one pass.  The band takes that gap plus the gap that holds the
    sample's error (:func:`_sample_error` rows).  Nothing changes when the sample cannot tell
    better (the potentials misplace no more of it than its own error, or no row crossed a
    gap wider than that error) or when the band would hold more than ``_AHEAD_SHARE`` of the
    rows (an early step, whose centers moved much: a pass more costs less than gathering
    such a band; in memory with the band rows held as candidates, any share) or more than
    the band's memory budget allows (the usual widening then decides, within the budget).
    (A spread of the potentials' moves would not do: where the transport problem's dual is
    degenerate, a potential can move far without any row following it.)

    It runs where X has many times the sample's rows: a pass then costs many times the
    sample's solve (on Dask it is also a round and a read).  ``off``, ``labels``, ``gaps``:
    the points the potentials misplace, the sample's labels and top-two gaps under them
    (:func:`_warm_off`)."""
    n, k, s = blocks.n_samples, capacities.n_clusters, sample.shape[0]
    v = search.potentials
    costs = _sample_costs(search, sample, blocks.centers)
    if off <= _AHEAD_OFF * _sample_error(n, k, s):
        return
    nested = RowBlocks(sample)
    nested.set_centers(blocks.centers)
    step = solve_exact(nested, capacities.scaled(s / n), SolverOptions(max_band=None), v)
    blocks.passes.sample += 1
    moved = labels != costs.labels(step.potentials)[0]
    if not moved.any():
        return
    reach = float(gaps[moved].max())  # the widest gap a sample row crossed
    noise = float(np.quantile(gaps, min(1.0, 4 * _sample_error(n, k, s) / n)))
    if reach <= noise:  # within the sample's own error: it cannot tell
        return
    theta = reach + noise
    if math.isfinite(search.theta):
        theta = max(theta, search.theta)
    rows = int(1.25 * n * np.count_nonzero(gaps <= theta) / s) + search.per_cluster * k
    # in memory, band rows held as candidates cost less than the pass that a narrower band
    # would add (at n = 10^6, k = 1024: 9 passes in 3 iterations and the final step, not 11)
    share = 1.0 if blocks.gather_is_free and candidate_width(k) else _AHEAD_SHARE
    if rows > min(share * n, search.limit):
        return
    search.theta = theta
    search.wanted = min(search.limit, max(search.wanted, rows))


def _warm_off(
    search: _Search,
    blocks: Blocks,
    sample: np.ndarray,
    capacities: Capacities,
    options: SolverOptions,
    held: Capacities | None = None,
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """The points the warm potentials misplace among X, as the sample sees them, with the
    sample's labels and top-two gaps under them; when that is more than the first pass's
    test (in :func:`solve_exact`) accepts, the sample's own potentials are taken at once
    (they misplace fewer: about its own error) and ``None`` is returned.  This saves the
    pass that would have told, where X has many times the sample's rows (an early Lloyd
    step).  ``held``: the sample's bounds at the previous step's optimum (see
    :func:`.referenced.from_reference`), which the points misplaced are counted against
    instead of the capacities scaled."""
    n, k, s = blocks.n_samples, capacities.n_clusters, sample.shape[0]
    costs = _sample_costs(search, sample, blocks.centers)
    far = _WARM_SAMPLE * n
    if held is not None:
        labels, gaps = costs.labels(search.potentials)
        off = imbalance(np.bincount(labels, minlength=k), held) * n / s
        far = _REFERENCED_FAR * n
    else:
        off, labels, gaps = _sample_off(costs, search.potentials, capacities, n)
    if off > max(far, _sample_error(n, k, s)):
        # (far off, the sample's own potentials at the capacities scaled: with its sizes at
        # the last optimum, from 5 % of the rows off, since on separated clusters a band
        # around the referenced potentials there took wider bands in that step and the next
        # ones: 10^7 rows from random data rows in memory, 12-15 s against 7-12 s a fit)
        _from_sample(search, blocks, sample, capacities, options)
        return None
    return off, labels, gaps


def _from_sample(
    search: _Search,
    blocks: Blocks,
    sample: np.ndarray,
    capacities: Capacities,
    options: SolverOptions,
) -> None:
    """Potentials from the sample (warm-started at the current ones unless cold), and a band
    wide enough for what they misplace: they misplace about ``(n / 2) sqrt(k / s)`` points;
    the band holds 4 times as many, or up to 16 times within ``_SAMPLE_ROWS`` rows: the rows
    whose gap is below the matching quantile of the sample's gaps."""
    n, k, s = blocks.n_samples, capacities.n_clusters, sample.shape[0]
    warm = None if search.cold else search.potentials
    nested = RowBlocks(sample)
    nested.set_centers(blocks.centers)
    step = solve_exact(nested, capacities.scaled(s / n), SolverOptions(max_band=None), warm)
    blocks.passes.sample += 1
    search.potentials = step.potentials
    search.sampled = True
    search.cold = False
    search.per_cluster = _PER_CLUSTER  # a sample's potentials misplace more, and anywhere
    expected = _sample_error(n, k, s)
    band = max(_SAMPLE_BAND * expected, min(_SAMPLE_ROOM * expected, _SAMPLE_ROWS))
    search.wanted = min(search.limit, max(search.wanted, int(band)))
    costs = _sample_costs(search, sample, blocks.centers)
    search.theta = _quantile_of_gaps(costs, step.potentials, search.wanted / n)


def _quantile_gap(sample: np.ndarray, centers: np.ndarray, v: np.ndarray, share: float) -> float:
    """The top-two gap below which about ``share`` of the sample's rows lie under ``v``."""
    return _quantile_of_gaps(BandCosts(band_costs(sample, centers)), v, share)
