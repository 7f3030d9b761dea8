"""Newton's method on the entropic semi-dual: E-BalLOT's transport problem in few passes.

The entropic problem has one solution whatever algorithm reaches it.  Its semi-dual is a
smooth concave function of the k column potentials alone,

    g_e(v) = sum_i -e log sum_j exp((v_j - C_ij) / e) + sum_j c_j v_j,

with gradient ``c - sum_i P_i`` (the column error of the plan ``P_i = softmax_j((v_j - C_ij)
/ e)``, whose rows are exact) and Hessian ``-(1/e) sum_i (diag(P_i) - P_i P_i^T)``.  One pass
over the cost blocks returns both (k + k^2 numbers per block), so each Newton step is one
round, where Sinkhorn's coordinate ascent needs a round per iteration (hundreds at a small
regularisation).  ``e`` is scaled down by factors of at most 8 from a value at which the plan
spreads over many columns (Newton converges from anywhere there), each stage warm-starting the
next.  A warm start (the previous Lloyd step's potentials) goes to ``e = eps`` at once; where
its steps crawl (separated clusters: the potentials must cross empty space, where the plan has
almost no curvature) the stage gives up after a few passes and is staged from the top.

With the engine's row sample at hand (in memory), a cold start solves the sample's problem
first and X's last stage starts from its potentials; a warm start far off, or whose steps
crawl, solves the sample's problem with its targets corrected by X's column sums at each pass
(:func:`_corrected`): two or three passes over X where Newton's steps took tens.  A warm
start with the sample's targets at the previous step's plan (:func:`sample_targets`) solves
the sample for them before its first pass over X.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..blocks import Blocks, PassCounter
from ..capacities import Capacities
from ..plan_kernels import combine_entropic, entropic_moment_terms, entropic_terms
from .base import SolverOptions
from .search import BandError

#: what :func:`entropic_potentials` calls for the unregularised problem's potentials: from
#: a start (or none), those potentials (``None`` beyond the band's memory budget) and the
#: passes over X it made
Unregularised = Callable[[np.ndarray | None], tuple[np.ndarray | None, int]]

logger = logging.getLogger("ballot_dask")

_SCALE = 8.0  # e shrinks by at most this factor per stage
_STAGE_TOL = 0.002  # column error (share of n) at which an intermediate stage ends
_WARM_TOL = 0.5  # a warm start with a larger column error (share of n) is staged as a cold one
_PATIENCE = 12  # ... and a warm start whose steps do not halve that error in this many passes
#: a Newton stage with a row sample leaves X's Hessian out of its passes from a column
#: error within this many times its tolerance (see :class:`SampleCurvature`)
_NEAR = 16
#: ... or in this many with a row sample at hand: its corrected problems take over
_SAMPLE_PATIENCE = 2
#: a corrected sample problem is solved to this share of the tolerance (scaled to its rows)
_SAMPLE_TOL = 0.1
#: ... or in this many, for a stage whose crawl the unregularised problem's potentials can end
_EXACT_PATIENCE = 4
#: a cold start starts from them when eps is this many stages below ``start`` ...
_EXACT_STAGES = 4
#: ... or this many without a row sample (whose own solve, with them, would come first)
_ALONE_EXACT_STAGES = 3


class EntropicPlan(NamedTuple):
    """The entropic plan's potentials, column sums and passes; with its moments (see
    :func:`~ballot_dask.plan_kernels.plan_moments`) when they were asked for."""

    potentials: np.ndarray
    column_sums: np.ndarray
    passes: int
    moments: tuple | None = None


def _combine_moment_terms(parts: list[tuple]) -> tuple:
    value, logcol, ptp = combine_entropic([p[:3] for p in parts])
    moments = tuple(np.sum([p[3][i] for p in parts], axis=0) for i in range(4))
    return value, logcol, ptp, moments


def _evaluate(
    blocks: Blocks,
    target: np.ndarray,
    v: np.ndarray,
    eps: float,
    moments: bool = False,
    hessian: bool = True,
) -> tuple:
    """One pass: ``g_e(v)``, the log column sums of the plan and, if ``hessian``, ``sum_i
    P_i P_i^T`` (else ``None``); and, if ``moments``, the plan's moments (else ``None``)."""
    if moments:
        value, logcol, ptp, found = blocks.reduce(
            entropic_moment_terms, _combine_moment_terms, v, eps, hessian, with_x=True
        )
        return value + float(target @ v), logcol, ptp, found
    value, logcol, ptp = blocks.reduce(entropic_terms, combine_entropic, v, eps, hessian)
    return value + float(target @ v), logcol, ptp, None


class SampleCurvature:
    """The Newton system's matrix ``(diag(col) - sum_i P_i P_i^T) / e`` (minus the Hessian
    of ``g_e``) of X at ``v``, estimated on the engine's row sample and scaled to X's ``n``
    rows (``matrix(v)``): one pass over the sample (counted in ``counter.sample``), none
    over X.

    X's own Hessian is a k x k product per row of wide plan rows (at k = 16, a fifth of a
    pass with the moments; at large k most of it), and a warm step's passes mostly end
    within the tolerance, where it is never used: they leave it out
    (:func:`newton_stage`), and a step that needs a direction takes this one.  The gradient
    stays X's, exact: the step is an inexact Newton step, and the Armijo test and the
    tolerance (checked on X's column sums) are unchanged.  Where few of the sample's rows
    lie near the boundaries X's steps cross (separated clusters at a small ``eps``) the
    estimate misleads a step: the stage then sets ``misled`` and takes X's Hessian, and the
    fit's later steps do not ask for this one (:func:`~.sinkhorn.solve_sinkhorn`)."""

    def __init__(self, sample: Blocks, n: float, eps: float, counter: PassCounter) -> None:
        self.sample, self.share, self.eps, self.counter = sample, sample.n_samples / n, eps, counter
        self.misled = False

    def matrix(self, v: np.ndarray) -> np.ndarray:
        self.counter.sample += 1
        _, logcol, ptp, _ = _evaluate(self.sample, np.zeros_like(v), v, self.eps)
        return (np.diag(_column_sums(logcol)) - ptp) / (self.eps * self.share)


def _column_sums(logcol: np.ndarray) -> np.ndarray:
    with np.errstate(under="ignore"):
        return np.exp(logcol)


def newton_stage(
    blocks: Blocks,
    target: np.ndarray,
    v: np.ndarray,
    eps: float,
    *,
    tol: float,
    max_steps: int,
    bound: float,
    state: tuple | None = None,
    moments: bool = False,
    patience: int | None = None,
    curvature: SampleCurvature | None = None,
) -> EntropicPlan:
    """Maximise ``g_e`` from ``v`` until the column error ``||c - colsum||_1 <= tol``.

    Returns the :class:`EntropicPlan` (with the plan's moments at the returned ``v`` if
    ``moments``: every pass then computes them).  Each step is one pass.  With ``patience``,
    the stage also ends when that many passes in a row have not halved the least column
    error seen (the plan's rows nearly one-hot, the steps crawl: a higher temperature then
    serves better, see :func:`entropic_potentials`).  Where the plan's rows are
    nearly one-hot the semi-dual has little curvature and the Newton step overshoots: a step
    that does not increase ``g_e`` enough (Armijo) is rejected and the trust region (the
    largest move of one potential, at most ``bound``, a cost scale) shrinks to a quarter of
    it; an accepted step lets it grow back.  ``state`` is ``_evaluate``'s result at ``v`` if
    the caller has it (its Hessian may be ``None``).

    ``curvature`` (:class:`SampleCurvature`, or ``None``): unless it has ``misled`` a step,
    the passes leave X's Hessian out while the column error is within ``_NEAR`` times
    ``tol`` (where the next pass usually ends the stage: on 10^6 rows, k = 16, a full Newton
    step from 2 ``tol`` landed within a tenth of it), and a step from a point without X's
    Hessian takes the sample's.  A step it led that is rejected, or that neither ends the
    stage nor divides the column error by 4, marks it ``misled``: X's Hessian from then on
    (one more pass, at the point the stage stands on, if its pass left it out).  (Where the
    plan is far from quadratic, X's own Newton steps divide it by about 5: 3436 -> 643 ->
    126 on 2.8x10^5 rows of four overlapping features, k = 8, the first step the sample's;
    k = 256 on 10^5 rows, 256 sample rows a cluster, 1439 -> 181 -> 34 where X's Hessian
    ended the stage at once, yet with the passes' Hessian left out the fit took 31 % less
    time; separated clusters at reg 1e-3 made the error grow.)
    """
    k = target.shape[0]
    if curvature is not None and curvature.misled:
        curvature = None
    if state is None:
        state = _evaluate(blocks, target, v, eps, moments, hessian=curvature is None)
        passes = 1
    else:
        passes = 0
    f, logcol, ptp, found = state
    lap_at = None  # (v, the sample's system at v): a rejected step keeps its v
    log_target = np.log(np.maximum(target, 1e-300))
    radius = bound  # trust region on max_j |step_j|: shrinks on a failed step, grows back
    best, since = np.inf, 0
    while passes < max_steps:
        col = _column_sums(logcol)
        grad = target - col
        error = float(np.abs(grad).sum())
        if error <= tol:
            break
        if error <= best / 2:
            best, since = error, 0
        elif patience is not None and since >= patience:
            break
        since += 1
        sampled = ptp is None  # the step takes the sample's curvature
        if not sampled:
            lap = (np.diag(col) - ptp) / eps  # -Hessian: a graph Laplacian, null space ~ ones
        else:
            assert curvature is not None  # (a pass leaves X's Hessian out only with it)
            if lap_at is None or lap_at[0] is not v:
                lap_at = (v, curvature.matrix(v))
            lap = lap_at[1]
        scale = float(np.trace(lap)) / k
        direction = None
        if scale > 0 and np.all(np.isfinite(lap)):
            system = lap + (scale / k) * np.ones((k, k))
            system += 1e-12 * scale * np.eye(k)
            try:
                direction = np.linalg.solve(system, grad)
            except np.linalg.LinAlgError:
                direction = np.linalg.lstsq(system, grad, rcond=None)[0]
            if not np.all(np.isfinite(direction)):
                direction = None
        if direction is None:
            # no usable curvature: Sinkhorn's column update (an ascent step always: it
            # maximises the full dual in v at the rows' potentials)
            direction = eps * (log_target - logcol)
        direction -= direction.mean()  # g_e is invariant along ones
        largest = float(np.abs(direction).max())
        if largest > radius:
            direction *= radius / largest
            largest = radius
        trial = v + direction
        near = curvature is not None and error <= _NEAR * tol
        f_new, logcol_new, ptp_new, found_new = _evaluate(
            blocks, target, trial, eps, moments, hessian=not near
        )
        passes += 1
        accepted = f_new >= f + 1e-4 * float(grad @ direction)
        if accepted:
            v, f, logcol, ptp, found = trial, f_new, logcol_new, ptp_new, found_new
            radius = min(bound, max(radius, 2 * largest))
        elif not sampled:
            # the quadratic model overshot where the plan's rows are nearly one-hot (little
            # curvature): a smaller step along the same direction next
            radius = largest / 4
        if sampled:
            reached = float(np.abs(target - _column_sums(logcol_new)).sum())
            if not accepted or reached > max(tol, error / 4):
                # the sample's curvature misled the step (few of its rows near the
                # boundaries X's steps cross: separated clusters at a small eps): X's own
                # from here, at the point the stage stands on
                assert curvature is not None
                curvature.misled, curvature = True, None
                if ptp is None and passes < max_steps:
                    f, logcol, ptp, found = _evaluate(blocks, target, v, eps, moments)
                    passes += 1
    return EntropicPlan(v, _column_sums(logcol), passes, found)


def entropic_potentials(
    blocks: Blocks,
    target: np.ndarray,
    v: np.ndarray,
    eps: float,
    *,
    start: float,
    tol: float,
    max_passes: int,
    warm: bool = False,
    moments: bool = False,
    sample: Blocks | None = None,
    reference: np.ndarray | None = None,
    unregularised: Unregularised | None = None,
    curvature: SampleCurvature | None = None,
) -> EntropicPlan:
    """The potentials of the entropic problem at ``eps``, by Newton stages with ``e`` from
    ``start`` down to ``eps`` (equal factors of at most 8); the last stage stops at column
    error ``tol``.  ``start`` is a cost scale (it also bounds a Newton step).

    A ``warm`` start (potentials of a nearby problem, e.g. the previous Lloyd iteration) is
    evaluated at ``eps`` first and goes straight to the last stage when its column error is
    within half of ``n``; otherwise it is staged from ``start`` like a cold one.

    ``sample``: an engine over a row sample of X held in memory (its centers set), or
    ``None``.  The same problem on the sample (its column targets scaled to its rows) has
    nearly the same potentials, within its sampling error, and a pass over it costs a
    fraction of one over X.  A cold start then solves the sample first, staged from
    ``start``, and starts X's last stage from its potentials; a warm start far off, or whose
    Newton steps do not halve the error in ``_SAMPLE_PATIENCE`` passes, goes to the sample's
    corrected problems (:func:`_corrected`), then on to Newton's stages if those stall.  Each
    solve on the sample counts as one pass in ``blocks.passes.sample``.

    ``reference``: with a warm start and a sample, the sample's column targets at the
    previous step's plan (:func:`sample_targets`, at that step's centers).  The sample's
    problem for them at the current centers is solved first, from ``v``: its sampling error
    at the last plan cancels, and X's first pass then starts from potentials that have
    followed the centers' move (on 10^6 rows, k = 16: within the tolerance in the late
    steps of a fit, one pass a step where the previous potentials needed two).

    ``unregularised`` (optional): returns the potentials of the unregularised problem (the
    exact step's, at the same centers; ``None`` where its band does not fit the memory
    budget) and the passes it made.  Where X's stage crawls at ``eps`` (from the sample's
    potentials, a warm start or the corrected problems), a stage from those potentials is
    tried once before the stages from the top: at a small ``eps``
    the entropic potentials are near them (within a few ``eps`` where rows lie near a
    boundary, anywhere in the empty space between separated clusters, where the column sums
    hardly change), and Newton's steps then meet the tolerance in a few passes where the
    stages from the top took tens (20 000 rows, reg 1e-4: separated k = 64, 66 passes; a
    k = 256 mixture, 50).  A cold start takes them first when ``eps`` is four stages or
    more below ``start``, or three without a row sample (4000 rows, reg 1e-2: separated
    k = 64, 4 passes where the stages from the top took 28).  Otherwise it is asked for only
    where X's stage crawls: a step that meets the tolerance without it never solves the
    exact problem.  With it, the sample's own problems get theirs
    (:func:`in_memory_unregularised`).

    ``curvature``: the sample's estimate of X's Hessian (:class:`SampleCurvature`), or
    ``None``: X's passes at ``eps`` from a warm start (or the sample's potentials) then
    leave their Hessian out, and a Newton step takes it (see :func:`newton_stage`); not
    where ``eps`` is four stages or more below ``start`` (the plan's rows nearly one-hot:
    few of the sample's rows carry any curvature).

    Returns the :class:`EntropicPlan`; with ``moments``, the passes at ``eps`` also measure
    the plan's moments, and the plan carries those of its potentials (so that its rounding
    needs no pass of its own).
    """
    n = float(target.sum())
    bound = max(start, eps)
    passes = 0
    exact = unregularised is not None  # the sample's problems get theirs too

    def from_sample(rows: Blocks, v0: np.ndarray) -> np.ndarray:
        """The same problem's potentials on the sample (targets and tolerance scaled to its
        rows), from ``v0``: one pass over the sample in ``blocks.passes``."""
        share = rows.n_samples / n
        blocks.passes.sample += 1
        return entropic_potentials(
            rows,
            target * share,
            v0,
            eps,
            start=start,
            tol=tol * share,
            max_passes=max_passes,
            warm=bool(np.any(v0 != 0)),
            unregularised=in_memory_unregularised(rows, target * share, eps) if exact else None,
        ).potentials

    patience = _PATIENCE if unregularised is None else _EXACT_PATIENCE
    depth = _stage_count(start, eps)
    small = depth >= _EXACT_STAGES  # where the sample's problems crawl too
    if small:  # ... and the plan's rows are nearly one-hot: few sample rows have curvature
        curvature = None
    alone = sample is None and depth >= _ALONE_EXACT_STAGES
    if not warm and unregularised is not None and (small or alone):
        # cold at a small eps: from the unregularised problem's potentials, rather than
        # through many stages (or from a sample's, whose sampling error then matters)
        found, made = unregularised(None)
        unregularised, passes, patience = None, made, _PATIENCE
        if found is not None:
            v, warm, sample = found, True, None
    if sample is not None and not warm:
        v, warm, sample = from_sample(sample, v), True, None
    elif sample is not None and reference is not None:
        # the sample's column targets at which X's plan met the tolerance in the previous
        # step: the same correction at the new centers, before X's first pass
        blocks.passes.sample += 1
        v = entropic_potentials(
            sample,
            reference,
            v,
            eps,
            start=start,
            tol=_SAMPLE_TOL * tol * sample.n_samples / n,
            max_passes=max_passes,
            warm=True,
            unregularised=in_memory_unregularised(sample, reference, eps) if exact else None,
        ).potentials
    while warm:
        sampled = curvature is not None and not curvature.misled
        state = _evaluate(blocks, target, v, eps, moments, hessian=not sampled)
        passes += 1
        col = _column_sums(state[1])
        if np.abs(target - col).sum() <= _WARM_TOL * n:
            plan = newton_stage(
                blocks,
                target,
                v,
                eps,
                tol=tol,
                max_steps=max_passes - passes,
                bound=bound,
                state=state,
                moments=moments,
                patience=patience if sample is None else _SAMPLE_PATIENCE,
                curvature=curvature,
            )
            passes += plan.passes
            if np.abs(target - plan.column_sums).sum() <= tol or passes >= max_passes:
                return plan._replace(passes=passes)
            # the steps crawl at eps (separated clusters: the potentials must cross empty
            # space, where the plan has almost no curvature)
            v, col = plan.potentials, plan.column_sums
        if passes >= max_passes:
            break
        if unregularised is not None and (sample is None or small):
            # once: from the unregularised problem's potentials (the exact step's, warm
            # started from these)
            found, made = unregularised(v)
            unregularised, passes, patience = None, passes + made, _PATIENCE
            if found is not None:
                v = found
                continue
            # (its band beyond the memory budget: on as without it)
        if sample is None:
            break  # staged from the top, from here
        # far off, or crawling: the sample's problems, corrected by X's column sums
        plan = _corrected(
            blocks, sample, target, v, col, eps, start, tol, max_passes - passes, moments, exact
        )
        passes += plan.passes
        if np.abs(target - plan.column_sums).sum() <= tol or passes >= max_passes:
            return plan._replace(passes=passes)
        v, sample = plan.potentials, None
    # equal factors of at most _SCALE from ``start`` to ``eps``
    count = _stage_count(start, eps)
    stages = [eps * (max(start, eps) / eps) ** (i / count) for i in range(count, 0, -1)]
    stages.append(eps)
    # the last stage (at ``eps``) always runs, with a third of the budget at least: the plan
    # the caller rounds is the one at ``eps``, however short the budget
    reserve = max(1, max_passes // 3)
    for e in stages[:-1]:
        if max_passes - passes <= reserve:
            break
        staged = newton_stage(
            blocks,
            target,
            v,
            e,
            tol=_STAGE_TOL * n,
            max_steps=max_passes - passes - reserve,
            bound=bound,
        )
        v = staged.potentials
        passes += staged.passes
    plan = newton_stage(
        blocks,
        target,
        v,
        eps,
        tol=tol,
        max_steps=max(1, max_passes - passes),
        bound=bound,
        moments=moments,
    )
    return plan._replace(passes=passes + plan.passes)


def _stage_count(start: float, eps: float) -> int:
    """Stages above ``eps`` from ``start`` (equal factors of at most ``_SCALE``)."""
    return max(0, int(np.ceil(np.log(max(start, eps) / eps) / np.log(_SCALE) - 1e-9)))


def _corrected(
    blocks: Blocks,
    sample: Blocks,
    target: np.ndarray,
    v: np.ndarray,
    col: np.ndarray,
    eps: float,
    start: float,
    tol: float,
    max_passes: int,
    moments: bool,
    exact: bool = False,
) -> EntropicPlan:
    """X's potentials through the sample's problem, its targets corrected at every pass.

    ``col`` are X's column sums at ``v``.  The sample's column sums at ``v``, scaled to X,
    differ from them by the sampling error; that error changes little while ``v`` moves, so
    the potentials at which the sample's column sums are the scaled targets *less* the error
    measured at ``v`` are nearly X's.  Each round solves that problem on the sample, in
    memory (counted as one pass over the sample), then makes one pass over X at its
    potentials.  Where Newton's steps crawl (separated clusters) two or three rounds meet
    the tolerance.  Ends at the tolerance, after ``max_passes`` (at least one), or when a
    round does not halve X's column error; returns the plan of least column error seen (with
    its pass's moments if ``moments``; ``v`` itself, without them, when no round improved on
    it: the caller goes on from there)."""
    share = sample.n_samples / float(target.sum())
    error = float(np.abs(target - col).sum())
    best, least = EntropicPlan(v, col, 0, None), error
    passes = 0
    while True:
        corrected = sample_targets(sample, target, v, col, eps)
        v = entropic_potentials(
            sample,
            corrected,
            v,
            eps,
            start=start,
            tol=_SAMPLE_TOL * tol * share,
            max_passes=max_passes,
            warm=True,
            unregularised=in_memory_unregularised(sample, corrected, eps) if exact else None,
        ).potentials
        blocks.passes.sample += 1
        _, logcol, _, found = _evaluate(blocks, target, v, eps, moments, hessian=False)
        passes += 1
        col = _column_sums(logcol)
        last = error
        error = float(np.abs(target - col).sum())
        if error < least:
            best, least = EntropicPlan(v, col, 0, found), error
        if error <= tol or passes >= max_passes or error > last / 2:
            return best._replace(passes=passes)


def in_memory_unregularised(rows: Blocks, target: np.ndarray, eps: float) -> Unregularised:
    """:func:`entropic_potentials`' ``unregularised`` for a problem on rows held in memory
    (the engine's row sample) with the column targets ``target``: the potentials of the
    transport LP whose capacities are those targets, fractional as they are
    (:func:`~.weighted.solve_weighted_exact`, unit masses), warm started from the entropic
    potentials with a band of about ``eps``.  It makes no pass over X (0 passes).  Where the
    sample's Newton steps crawl (separated clusters at a small ``eps``, tens of passes over
    the sample in every solve) they start from there instead."""
    from .weighted import solve_weighted_exact  # it imports .exact, which imports this module

    capacities = Capacities(target, target.copy())

    def solve(start: np.ndarray | None) -> tuple[np.ndarray | None, int]:
        try:
            step = solve_weighted_exact(rows, capacities, SolverOptions(), start, eps)
        except BandError as error:  # (a quarter of the free memory: a machine short of it)
            logger.info(
                "E-BalLOT: the row sample's start from the unregularised problem is left out (%s)",
                error,
            )
            return None, 0
        return step.potentials, 0

    return solve


def sample_targets(
    sample: Blocks, target: np.ndarray, v: np.ndarray, col: np.ndarray, eps: float
) -> np.ndarray:
    """The sample's column targets corrected by X's column sums ``col`` at ``v``: its own
    column sums at ``v`` plus X's column error scaled to its rows.  The sample's plan meets
    them where X's plan meets ``target``, up to the change of its sampling error between
    ``v`` and there (one pass over the sample, at its centers)."""
    share = sample.n_samples / float(target.sum())
    at_v = _column_sums(_evaluate(sample, target * share, v, eps, hessian=False)[1])
    corrected = np.maximum(share * (target - col) + at_v, 1e-12 * sample.n_samples)
    return corrected * (sample.n_samples / corrected.sum())
