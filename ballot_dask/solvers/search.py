"""Where the exact step's search stands, and what it returns once a band is proved.

:func:`.exact.solve_exact` keeps its state in a :class:`_Search` (the potentials, the band it
asks for, its counters) and, once the band's repair is solved, builds the step's outcome here
(:func:`_outcome`): the fixed rows' summaries combined with the band's, the certificate, and
the warm start of the next Lloyd step; or, when no band within the memory budget settles the
step, the error that names the setting (:func:`_band_error`).  The weighted step
(:mod:`.weighted`) shares the state and the error.

It also holds what the step and its shifts (:mod:`.shifting`) share: the band's memory
limits (:func:`_band_limits`), the imbalance of a labelling (:func:`imbalance`), and what the
row sample sees of the potentials (:func:`_sample_off`, :func:`_sample_error`,
:func:`_gap_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from dask.utils import format_bytes

from ..blocks import Blocks
from ..buffers import full_buffer, least_of
from ..candidates import BandCosts, band_slack_matrix, candidate_width, label_slack
from ..capacities import Capacities
from ..certificate import certify_labels
from ..exact_pass import ExactPass, band_costs
from ..kernels import label_sums
from .base import ExactLabels, SolverOptions, StepOutcome

_MIN_BAND = 8192  # band rows wanted at least (a warm Lloyd step's imbalance fits easily)
_PER_CLUSTER = 64  # ... and at least this many per cluster from a cold start (or a sample's)
#: ... or from the previous Lloyd step's potentials (its imbalance is small and spread: at
#: k = 1024, n = 10^5 every warm step held with 16, and each 64 more cost a third of its time)
_WARM_PER_CLUSTER = 16
#: a step whose band held only with an allowance: the next step's band holds this many
#: times its rows (at k = 256 on 10^5 rows, overlapping, 30 iterations: 46 passes over X
#: instead of 55; as many at k = 1024 and k = 16)
_GROWN = 2
#: a step whose band held in one pass: the next step's band holds at least this share of the
#: band it wanted, unless it held nearly every row (``_NEARLY_ALL``: a transient, a step
#: widened to all of X, after which a late step wants a tenth of it).  Bands then narrow
#: step by step: at k = 256 on 10^5 overlapping rows a step that held only with an
#: allowance (two passes), the next one's grown band (one pass) and a narrow one again
#: (an allowance) alternated for 20 iterations (44 passes in 30 iterations, 39 with this)
_KEPT = 0.75
_NEARLY_ALL = 0.9
_WIDEN = 4  # a band too narrow for the shortest paths grows by this factor
#: a band on candidates whose certificate fails computes its dense cost rows at once (for the
#: dense repair that may follow) only up to this many bytes of them; beyond, slab by slab.
#: Unused (a band too narrow), the fresh matrix's first touch costs more than the slabs:
#: 323 000 rows at k = 1024 (2.6 GB), 2.26 s against 1.09 s; at 10^5 x 1024 (0.8 GB) the
#: dense repair took them in most steps of separated data, each a quarter of a second saved
_SHARED_DENSE_BYTES = 1 << 30
#: the sample tells where warm potentials are off only when they misplace more than this
#: times its own error (:func:`_sample_error`)
_AHEAD_OFF = 0.5


@dataclass
class _Search:
    """Where the search for the exact labels stands."""

    potentials: np.ndarray
    theta: float  # band threshold on the top-two gap
    wanted: int  # band rows wanted
    limit: int  # band rows allowed
    passes: int = 0
    augmentations: int = 0
    widenings: int = 0
    recentred: int = 0
    sampled: bool = False
    cold: bool = False  # the potentials are the zero start (no sample, no warm start yet)
    dense: bool = False  # the band's candidates failed once in this step: dense rows only
    narrow: bool = False  # the last band's certificate failed on its fixed rows' moves
    needed: int = 0  # the widest band the imbalances seen asked for
    per_cluster: int = _PER_CLUSTER  # band rows per cluster at least (fewer when warm)
    restricted: int = 0  # band solves on candidates, in all
    cancelled: int = 0  # negative cycles cancelled on dense rows (:mod:`.cycles`), in all
    shifts: int = 0  # potentials shifted by a pass's pair histogram
    reserved: int = 0  # bands cut from a pass's reserve (:mod:`.reserved`), no pass over X
    #: the potentials were shifted by the shift sample's histogram and no pass has seen them
    preshifted: bool = False
    #: the row sample expects the potentials to misplace far fewer points than a shift by a
    #: pass's pair histogram needs, and no pass has seen them: that pass counts none
    calm: bool = False
    #: the sample's cost rows at the step's centers (computed once, by :func:`_sample_costs`)
    sample_costs: BandCosts | None = None
    #: before the last shift: the potentials, the points they left off, the band's threshold
    #: and rows, and the pass made under them if kept (restored when the shift leaves more
    #: points off: the kept pass is the band again, with no other pass over X)
    unshifted: tuple[np.ndarray, int, float, int, ExactPass | None] | None = None
    #: a pass to take up again instead of the next pass over X (the one before a shift that
    #: misled)
    restored: ExactPass | None = None
    #: per pair of clusters, how far beyond ``theta`` a row may lie and enter the band, with
    #: the potentials it was cut for (it holds for those only; see :func:`.allowance._allow`)
    allowance: tuple[np.ndarray, np.ndarray] | None = None
    allowed: int = 0  # allowances grown in this step
    #: per pair ``(a, b)``, a lower bound on the gap to ``b`` of the rows labelled ``a`` that a
    #: pass under the allowance's potentials could take in through that pair (``-inf``: any),
    #: and the least threshold it holds for (see :meth:`pass_allowance`)
    reach_bound: tuple[np.ndarray, float] | None = None
    #: the pairs whose allowance the last pass applied (``None``: it applied none)
    applied: np.ndarray | None = None
    #: the last band's potentials from its repair (its own optimum's: the shortest paths' or,
    #: on dense rows after its candidates', the cycle cancelling's), if it had one
    repaired: np.ndarray | None = None
    #: the band's labels at the shortest paths' optimum, when on candidates (:mod:`.cycles`)
    optimum: np.ndarray | None = None
    #: the last pass and the potentials it was made under (a pass under a grown allowance is
    #: refined from it in memory: :func:`.passes.refined_pass`)
    last: tuple[ExactPass, np.ndarray] | None = None
    #: the shift sample's pair histogram at the step's centers, its scale and the potentials
    #: it was counted under (:func:`.shifting._preshift`; for :func:`.shifting.sample_sizes`)
    sample_pairs: tuple[np.ndarray, float, np.ndarray] | None = None
    #: the band's dense cost rows fit the budget (and ``_SHARED_DENSE_BYTES``): a band solved
    #: on its candidates whose certificate fails computes them once, for its true slack
    #: matrix and, kept in :attr:`dense_costs`, for the same band's repair on dense rows
    dense_fits: bool = False
    dense_costs: np.ndarray | None = None

    def allowance_for_pass(self) -> np.ndarray | None:
        """The allowance matrix if it was cut for the current potentials, else ``None``."""
        if self.allowance is None or self.allowance[0] is not self.potentials:
            return None
        return self.allowance[1]

    def pass_allowance(self) -> np.ndarray | None:
        """The allowance the next pass applies: :meth:`allowance_for_pass`, with the pairs that
        no row can use zeroed; the pass's band is the same.  A row labelled ``a`` enters
        through ``(a, b)`` when its gap to ``b`` is within ``theta + allowance[a, b]``, and
        :attr:`reach_bound` bounds that gap from below for every row a pass could take in
        that way (the failed pass's fixed rows by their slack, its band rows by its own
        pairs; they enter again by their gap while the threshold does not fall; a strict
        pass, ``max_band``, lowers its threshold by block, so its band may differ).  At
        k = 1024 it kept a tenth of the pairs or fewer, and a pass with an allowance took
        2.3-2.7 s instead of 3.2-3.6 (10^6 x 64 float32, in memory; with the band's gather,
        see ``ballot_dask.lanes``).  Records the pairs applied (:attr:`applied`)."""
        allow = self.allowance_for_pass()
        self.applied = None if allow is None else allow > 0.0
        if allow is None or self.applied is None:
            return None
        if self.reach_bound is not None and self.theta >= self.reach_bound[1]:
            self.applied &= self.reach_bound[0] <= self.theta + allow
        return np.where(self.applied, allow, 0.0)


def _costs_of(band: ExactPass, centers: np.ndarray, v: np.ndarray) -> BandCosts:
    """The band's costs: the candidates the pass kept (selected under ``v``), else its dense
    cost rows, computed with the pass's arithmetic."""
    if band.candidates is None:
        return BandCosts(band_costs(band.x, centers))
    columns, costs, floor = band.candidates
    return BandCosts(costs, columns, floor, np.asarray(v, dtype=np.float64))


def _sample_costs(search: _Search, sample: np.ndarray, centers: np.ndarray) -> BandCosts:
    """The sample's cost rows at the step's centers, computed once per step."""
    if search.sample_costs is None:
        search.sample_costs = BandCosts(band_costs(sample, centers))
    return search.sample_costs


def _certified(step: StepOutcome) -> bool:
    return step.certificate is not None and step.certificate.optimal


def _quantile_of_gaps(costs: BandCosts, v: np.ndarray, share: float) -> float:
    """The top-two reduced-cost gap below which about ``share`` of these rows lie."""
    if not costs.costs.shape[0] or costs.costs.shape[1] < 2:
        return math.inf
    _, gaps = costs.labels(v)
    return float(np.quantile(gaps, min(1.0, share)))


def imbalance(counts: np.ndarray, capacities: Capacities) -> int:
    """Points to move before every size is within its bounds."""
    over = np.maximum(counts - capacities.upper, 0)
    under = np.maximum(capacities.lower - counts, 0)
    return int(max(over.sum(), under.sum()))


def _sample_error(n: int, k: int, s: int) -> float:
    """Points the potentials of an ``s``-row sample misplace among ``n``, about."""
    return 0.5 * n * math.sqrt(k / s)


def _sample_off(
    costs: BandCosts, v: np.ndarray, capacities: Capacities, n: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Points the potentials ``v`` misplace among ``n``, as the sample (its cost rows
    ``costs``) sees them; and the sample's labels and top-two gaps under ``v``."""
    labels, gaps = costs.labels(v)
    s = costs.costs.shape[0]
    counts = np.bincount(labels, minlength=capacities.n_clusters)
    return imbalance(counts, capacities.scaled(s / n)) * n / s, labels, gaps


def _gap_scale(gaps: np.ndarray) -> float:
    """The median of a sample's top-two gaps: the scale of a pair histogram's bins (0 when
    there is none: no rows, or no gap above zero)."""
    scale = float(np.median(gaps)) if gaps.size else 0.0
    return scale if math.isfinite(scale) and scale > 0.0 else 0.0


def _band_limits(blocks: Blocks, k: int, options: SolverOptions) -> tuple[int, int, int]:
    """The band's budget (bytes) and the most rows it holds: dense cost rows, candidates.

    A gathered row: its coordinates, cost row and a few numbers; a pass may return up to
    about twice the rows it is asked for (see exact_pass), so the limits ask for half the
    budget.  A row held as candidates takes far less: its columns and costs (twice: the
    shortest paths group them by label), its floor, its coordinates and the paths' own
    numbers."""
    n, budget = blocks.n_samples, blocks.band_budget()
    dense_bytes = 8 * (k + 4) + blocks.row_bytes()
    wide_bytes = 24 * candidate_width(k) + 56 + blocks.row_bytes()
    dense_limit, wide_limit = (min(n, max(budget // (2 * b), 1)) for b in (dense_bytes, wide_bytes))
    if options.max_band is not None:
        dense_limit = min(dense_limit, options.max_band)
        wide_limit = min(wide_limit, options.max_band)
    return budget, dense_limit, wide_limit


class BandError(RuntimeError):
    """No band within the exact step's memory budget (or ``max_band``) settles the step.

    A ``RuntimeError`` (what callers of the estimator catch); its own class so that a caller
    with another way to the same end (E-BalLOT's start from the unregularised problem) can
    go on without it."""


def _band_error(search: _Search, budget: int, k: int, options: SolverOptions) -> BandError:
    """The error for a band that needs more than ``search.limit`` rows."""
    wanted = _WIDEN * search.limit
    if options.max_band is not None and search.limit == options.max_band:
        return BandError(
            f"the exact repair needs more than max_band={options.max_band} points in its "
            "band; raise max_band or leave it unset"
        )
    need = budget * wanted // max(search.limit, 1)
    return BandError(
        f"the exact repair needs a band of about {wanted} points, more than the "
        f"{search.limit} that fit its memory budget ({format_bytes(budget)} at k={k}; it "
        f"would need about {format_bytes(need)}); raise ballot.band-memory "
        f"(dask.config.set({{'ballot.band-memory': '{_setting(need)}'}}) or "
        "DASK_BALLOT__BAND_MEMORY; on Dask the budget is also at most half of "
        "ballot.memory-fraction of the cluster's memory), or start from better centers"
    )


def _setting(nbytes: int) -> str:
    """``nbytes`` rounded up to a whole number of GiB (of MiB below 1 GiB), as a setting."""
    if nbytes >= 2**30:
        return f"{-(-nbytes // 2**30)} GiB"
    return f"{max(-(-nbytes // 2**20), 1)} MiB"


def _outcome(
    blocks: Blocks,
    capacities: Capacities,
    band: ExactPass,
    costs: BandCosts,
    labels: np.ndarray,
    band_slack: np.ndarray,
    band_potentials: np.ndarray,
    search: _Search,
) -> StepOutcome:
    """The step's summaries: the fixed rows' and the band's, the certificate, and the warm
    start of the next step (the certified potentials nearest the shortest paths' own, and
    the gap threshold that holds the band it will want)."""
    n, k = blocks.n_samples, capacities.n_clusters
    sizes = band.counts + np.bincount(labels, minlength=k)
    sums = band.sums + label_sums(band.x, labels, k)
    objective = band.objective + float(costs.label_costs(labels).sum())
    # candidates: a lower bound on the band's slack (the columns left out), still a proof
    slack = costs.bound_slack(band_slack, labels, fixed=band.slack)
    potentials, certificate = certify_labels(
        slack, sizes, capacities, objective, n, near=band_potentials
    )
    search.narrow = not certificate.optimal
    if costs.restricted and not certificate.optimal:
        # the floors may be too loose a bound: the band's true slack matrix decides
        if search.dense_fits:
            search.dense_costs = band_costs(band.x, blocks.centers)
            exact = label_slack(search.dense_costs, labels, full_buffer((k, k), np.inf))
        else:
            exact = band_slack_matrix(band.x, blocks.centers, labels)
        slack = least_of([band.slack, exact])
        potentials, certificate = certify_labels(
            slack, sizes, capacities, objective, n, near=band_potentials
        )
        # still no proof: if every band row prefers its label under the paths' potentials,
        # the restricted optimum is the band's own, and a fixed row must move (too narrow a
        # band); else a band row wanted a column it does not hold
        with np.errstate(invalid="ignore"):
            excess = band_potentials[None, :] - band_potentials[:, None] - exact
        np.fill_diagonal(excess, -np.inf)
        held = not np.any(excess > certificate.tolerance * (k + 1))
        search.narrow = not certificate.optimal and held
    # the next step's imbalance is about this one's (Lloyd steps shrink): its band as wide as
    # this step's needed, so that one pass is enough
    wanted = min(search.limit, max(_MIN_BAND, _WARM_PER_CLUSTER * k, search.needed))
    if search.passes == 1 and not search.allowed and labels.shape[0] < _NEARLY_ALL * n:
        # the band held in one pass: the next one narrows by a quarter at most (of the band
        # this step wanted: a threshold from the histogram may hold more rows)
        kept = int(_KEPT * min(labels.shape[0], search.wanted))
        wanted = min(search.limit, max(wanted, kept))
    if search.allowed:
        # the band held only with an allowance (pairs whose rows lie far beyond the
        # threshold): the next step's rows move across the same boundaries
        wanted = min(search.limit, max(wanted, int(_GROWN * labels.shape[0])))
    if search.allowance_for_pass() is not None:
        # the pass's histogram counted the allowance's scores, not the gaps: the sample's
        # gaps tell (else the next step takes its threshold from them, for its least band)
        next_theta = (
            math.inf
            if search.sample_costs is None
            else _quantile_of_gaps(search.sample_costs, potentials, wanted / n)
        )
    elif labels.shape[0] >= n:  # every row was in the band: their own gaps tell (with the
        # margin the histogram's bins give a band's threshold below)
        next_theta = _quantile_of_gaps(costs, potentials, 1.5 * wanted / n)
    else:
        next_theta = band.band_rows_below(wanted)
    return StepOutcome(
        method="exact",
        potentials=potentials,
        eps=next_theta if math.isfinite(next_theta) else 0.0,
        mass=sizes.astype(np.float64),
        sums=sums,
        objective=objective,
        sizes=sizes,
        # the fixed rows' labels are minimisers under the pass's potentials (ties included)
        labeler=ExactLabels(
            blocks.centers, search.potentials, band.rows, labels, band.labels, band.held_key
        ),
        certificate=certificate,
        slack=slack,
        n_iter=search.augmentations,
        band_size=int(labels.shape[0]),
        retries=search.widenings,
        extra={
            "passes": float(search.passes),
            "reserved": float(search.reserved),
            "sampled": float(search.sampled),
            "restricted": float(search.restricted),
            "cancelled": float(search.cancelled),
            "dense": float(search.dense),
            "shifts": float(search.shifts),
            "allowed": float(search.allowed),
        },
    )
