"""Band costs as candidates: each band row's few cheapest clusters instead of its whole cost row.

The exact repair (:mod:`ballot_dask.solvers.paths`) moves band rows between clusters; at large
k a row only ever moves to one of the few clusters whose reduced cost ``C_ij - v_j`` is near its
smallest.  The pass over X (:func:`ballot_dask.exact_pass.exact_pass`) therefore keeps, for
every band row, its ``w`` smallest reduced costs under the pass's potentials ``v0`` (columns and
float64 costs) and the *floor*: the ``(w+1)``-th smallest, a lower bound on the reduced cost of
every column left out (less the row's screening bound where the pass's costs were screened).
That is ``12 w + 8`` bytes a row instead of ``8 k``, and no second computation of the band's
costs.

The repair then solves the *restricted* problem, in which a row may take only its candidate
clusters (the others cost ``inf``).  Its optimum is the whole problem's when the certificate
says so, and the certificate can say so without the left-out costs: for a row ``i`` labelled
``a`` and a column ``b`` left out, ``C_ib - C_ia >= floor_i + v0_b - C_ia``, so

    ``S[a, b] >= min(S_candidates[a, b], v0_b + min over band rows i in a of (floor_i - C_ia))``

is a valid lower bound on the band's slack matrix (:meth:`BandCosts.bound_slack`).  Potentials
that satisfy the constraints of a lower bound satisfy the true ones: the certificate stays a
proof.  When it fails, the band's true slack matrix (:func:`band_slack_matrix`, its costs
again slab by slab) decides: the certificate may hold with it; if not, and every band row
prefers its label under the repair's potentials, the restricted optimum is the band's own and
the band is too narrow (it is widened); else a row needed a column it did not hold, and the
caller solves the same band again from its dense costs.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .buffers import full_buffer, least_of
from .costs import cost_block
from .jit import njit
from .kernels import (
    _n_lanes,
    _threads_for,
    reduced_cost_labels,
    reduced_cost_runner_up,
)

#: candidate clusters kept per band row: picking them and their float64 costs is most of a
#: band row's work in the pass (measured here at k = 256: 1.6 us a row to pick 32 of 256,
#: 0.66 us for their costs; a pass over 10^5 rows, 47 ms without candidates, 87 ms with them
#: for 26 718 band rows).  With 24 instead of 32, fits from random rows alternated in one
#: process took 4-9 % less at k = 256 and 1024 (overlapping, balls, uniform cube, separated
#: clusters), 3.5 % more on balls at k = 1024, about the same at k = 4096 (one pass more); 16
#: took 22 % more on separated clusters at k = 1024 (rows wanting a column they did not hold)
WIDTH = 24
#: candidates are used from this many clusters (below, a dense cost row is about as small)
MIN_CLUSTERS = 128


def candidate_width(k: int) -> int:
    """Candidates per band row for ``k`` clusters: 0 (dense cost rows) below
    :data:`MIN_CLUSTERS`."""
    return WIDTH if k >= MIN_CLUSTERS else 0


#: a row's candidates are picked among the columns whose reduced cost is at most a threshold:
#: the ``_SAMPLED``-th smallest of every ``_STRIDE``-th column (about 56 columns pass) ...
_STRIDE = 8
_SAMPLED = 7
#: ... at most this many times ``width + 1`` of them (more, or fewer than ``width + 1``: the
#: row is scanned again in full; measured here at k = 1024, w = 32: 3.3 us a row instead of
#: 5.5, one row in ten scanned again; the columns are gathered without a branch, a fifth
#: less again)
_BUFFER = 4


@njit(inline="always")
def _keep_smallest(x, j, red, col, held, keep):  # pragma: no cover - compiled
    """Insert ``(x, j)`` into the sorted ``red[:held]``/``col[:held]`` holding the ``keep``
    smallest (a tie with the last stays out: the lower index came first).  Returns the new
    ``held``."""
    if held == keep:
        if not x < red[keep - 1]:
            return held
        p = keep - 1
    else:
        p = held
        held += 1
    while p > 0 and red[p - 1] > x:
        red[p] = red[p - 1]
        col[p] = col[p - 1]
        p -= 1
    red[p] = x
    col[p] = j
    return held


@njit(inline="always")
def top_columns(C, r, v, width, columns, costs, red, col, buf, bred):  # pragma: no cover
    """The ``width`` smallest reduced costs ``C[r, j] - v[j]`` of row ``r`` (lowest index first
    on ties): their columns and costs ``C[r, j]`` into ``columns`` and ``costs``, in increasing
    reduced cost.  ``red`` and ``col`` are scratch of ``width + 1`` entries, ``buf`` and
    ``bred`` of ``_BUFFER * (width + 1) + 1``.  Returns the floor: the next smallest reduced cost
    (``inf`` when every column was kept).

    The columns at most a threshold (from a strided sample of the row) are gathered first,
    in index order, and the smallest are picked among them: the same columns, in the same
    order, as a scan of the whole row, whenever at least ``width + 1`` columns pass (every
    column left out then costs more than the ones kept)."""
    k = C.shape[1]
    keep = min(width + 1, k)
    cap = buf.shape[0] - 1
    passed = -1  # the full scan below
    if k > cap:
        held = 0
        for j in range(0, k, _STRIDE):
            held = _keep_smallest(C[r, j] - v[j], j, red, col, held, _SAMPLED)
        if held == _SAMPLED:
            threshold = red[_SAMPLED - 1]
            passed = 0
            for j in range(k):  # no branch: every column is written, the passed ones kept
                x = C[r, j] - v[j]
                p = min(passed, cap)  # (beyond cap: the spare last entry, overwritten)
                buf[p] = j
                bred[p] = x
                passed += x <= threshold
    held = 0
    if keep <= passed <= cap:
        for q in range(passed):
            held = _keep_smallest(bred[q], buf[q], red, col, held, keep)
    else:
        for j in range(k):
            held = _keep_smallest(C[r, j] - v[j], j, red, col, held, keep)
    for t in range(min(width, held)):
        columns[t] = col[t]
        costs[t] = C[r, col[t]]
    return red[width] if held > width else np.inf


@njit(parallel=True)
def _candidate_runner_up(columns, costs, v, labels, second, gaps, n_lanes):  # pragma: no cover
    m, w = costs.shape
    step = (m + n_lanes - 1) // n_lanes
    for lane in numba.prange(n_lanes):
        for i in range(lane * step, min(m, (lane + 1) * step)):
            b1 = np.inf
            b2 = np.inf
            a = -1
            s = -1
            for t in range(w):
                j = columns[i, t]
                x = costs[i, t] - v[j]
                if x < b1 or (x == b1 and j < a):
                    b2 = b1
                    s = a
                    b1 = x
                    a = j
                elif x < b2 or (x == b2 and j < s):
                    b2 = x
                    s = j
            labels[i] = a
            second[i] = s
            gaps[i] = b2 - b1


@njit(parallel=True)
def _label_costs(columns, costs, labels, out, n_lanes):  # pragma: no cover - compiled
    m, w = costs.shape
    step = (m + n_lanes - 1) // n_lanes
    for lane in numba.prange(n_lanes):
        for i in range(lane * step, min(m, (lane + 1) * step)):
            out[i] = np.inf
            for t in range(w):
                if columns[i, t] == labels[i]:
                    out[i] = costs[i, t]
                    break


@njit()
def _floor_margin(floor, label_costs, labels, k):  # pragma: no cover - compiled
    """``min over rows i labelled a of (floor_i - C_ia)``, per cluster ``a`` (``inf``: none)."""
    out = np.full(k, np.inf)
    for i in range(labels.shape[0]):
        x = floor[i] - label_costs[i]
        if x < out[labels[i]]:
            out[labels[i]] = x
    return out


@njit()
def _bounded(slack, other, margin, v0):  # pragma: no cover - compiled
    """``min(slack, other, margin[a] + v0[b])`` entry by entry (as ``np.minimum``: a NaN
    anywhere gives NaN)."""
    k = slack.shape[0]
    out = np.empty((k, k))
    for a in range(k):
        ma = margin[a]
        for b in range(k):
            out[a, b] = np.minimum(np.minimum(slack[a, b], other[a, b]), ma + v0[b])
    return out


class BandCosts(NamedTuple):
    """The band rows' costs: dense rows, or candidates (see the module docstring).

    Dense: ``costs`` is ``(m, k)`` and ``columns``, ``floor``, ``v0`` are ``None``.
    Candidates: ``costs[i, t]`` is ``C_ij`` for ``j = columns[i, t]`` (``(m, w)``, ``int32``),
    in increasing reduced cost under ``v0``; every other column ``j`` of row ``i`` has
    ``C_ij - v0_j >= floor[i]``."""

    costs: np.ndarray
    columns: np.ndarray | None = None
    floor: np.ndarray | None = None
    v0: np.ndarray | None = None

    @property
    def restricted(self) -> bool:
        """Whether rows hold candidates only (the repair then solves a restricted problem)."""
        return self.columns is not None

    def runner_up(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels, second, gaps)`` under ``v`` among each row's columns (lowest index on
        ties), as :func:`~ballot_dask.kernels.reduced_cost_runner_up`."""
        if self.columns is None:
            return reduced_cost_runner_up(self.costs, v)
        m = self.costs.shape[0]
        labels = np.empty(m, dtype=np.int64)
        second = np.empty(m, dtype=np.int64)
        gaps = np.empty(m)
        with _threads_for(m):
            _candidate_runner_up(
                self.columns,
                self.costs,
                np.asarray(v, dtype=np.float64),
                labels,
                second,
                gaps,
                _n_lanes(m),
            )
        return labels, second, gaps

    def labels(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, gaps)`` under ``v``, as :func:`~ballot_dask.kernels.reduced_cost_labels`
        (among each row's columns)."""
        if self.columns is None:
            return reduced_cost_labels(self.costs, v)
        labels, _, gaps = self.runner_up(v)
        return labels, gaps

    def label_costs(self, labels: np.ndarray) -> np.ndarray:
        """``C_{i, labels[i]}`` for every row (``inf`` where the label is not a column)."""
        m = labels.shape[0]
        if self.columns is None:
            return self.costs[np.arange(m), labels]
        out = np.empty(m)
        with _threads_for(m):
            _label_costs(self.columns, self.costs, labels, out, _n_lanes(m))
        return out

    def bound_slack(
        self, slack: np.ndarray, labels: np.ndarray, fixed: np.ndarray | None = None
    ) -> np.ndarray:
        """A lower bound on the band's slack matrix under ``labels``, from ``slack`` (the
        smallest ``C_ib - C_ia`` over the columns the rows hold): the columns left out are at
        least ``floor_i + v0_b - C_ia``.  Dense costs: ``slack`` itself.  ``fixed``: the
        fixed rows' slack matrix, whose minimum with the bound is returned instead (one pass
        over the k x k matrices: numpy's temporaries took 0.3 s a step at k = 4096)."""
        if self.columns is None:
            return slack if fixed is None else least_of([fixed, slack])
        assert self.floor is not None and self.v0 is not None
        k = slack.shape[0]
        margin = _floor_margin(self.floor, self.label_costs(labels), labels, k)
        other = slack if fixed is None else fixed
        return _bounded(
            np.ascontiguousarray(slack, dtype=np.float64),
            np.ascontiguousarray(other, dtype=np.float64),
            margin,
            np.asarray(self.v0, dtype=np.float64),
        )


#: cells of a cost slab when the band's true slack matrix is computed (256 MB of float64)
_SLAB_CELLS = 1 << 25


@njit(parallel=True)
def _slack_into(C, order, starts, slack):  # pragma: no cover - compiled
    """``slack[a, j] = min(slack[a, j], C_ij - C_ia)`` over the rows ``i`` labelled ``a``:
    ``order[starts[a]:starts[a + 1]]`` (the rows grouped by label).  A cluster's rows update
    only its own row of ``slack``, so the clusters are spread over the threads with no copy
    of the k x k matrix a thread (:func:`~ballot_dask.kernels.assignment_terms` keeps one a
    lane, too much at large k)."""
    k = C.shape[1]
    for a in numba.prange(k):
        for p in range(starts[a], starts[a + 1]):
            i = order[p]
            ca = C[i, a]
            for j in range(k):
                r = C[i, j] - ca
                if r < slack[a, j]:
                    slack[a, j] = r


def label_slack(C: np.ndarray, labels: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """``slack`` (k x k, updated in place and returned) lowered to the slack matrix of cost
    rows ``C`` under ``labels``: ``min over rows i labelled a of (C_ib - C_ia)``."""
    lab = np.asarray(labels, dtype=np.int64)
    order = np.argsort(lab, kind="stable")
    starts = np.searchsorted(lab[order], np.arange(slack.shape[0] + 1))
    with _threads_for(C.shape[0]):
        _slack_into(C, order, starts, slack)
    return slack


def band_slack_matrix(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The true slack matrix ``min over rows i labelled a of (C_ib - C_ia)`` of band rows
    ``x`` (their coordinates) under ``labels``: their cost rows again, slab by slab, with the
    pass's arithmetic, never all held at once."""
    k = centers.shape[0]
    slack = full_buffer((k, k), np.inf)
    rows = max(1, min(x.shape[0], _SLAB_CELLS // max(k, 1)))
    buffer = None  # reused while the slabs have its shape (cost_block checks)
    for lo in range(0, x.shape[0], rows):
        block = x[lo : lo + rows]
        buffer = cost_block(block, centers, out=buffer)
        label_slack(buffer, labels[lo : lo + rows], slack)
    return slack


__all__ = [
    "MIN_CLUSTERS",
    "WIDTH",
    "BandCosts",
    "band_slack_matrix",
    "candidate_width",
    "label_slack",
    "top_columns",
]
