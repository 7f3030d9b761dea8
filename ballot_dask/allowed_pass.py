"""The exact step's pass under a grown allowance, from the last pass's labels (in memory).

When a band fails, the step may give some pairs of clusters an *allowance*
(:func:`~ballot_dask.solvers.allowance._allow`) and pass over X again under the same
potentials ``v`` and threshold ``theta`` (:func:`~ballot_dask.exact_pass.exact_pass`).
That pass changes little: its band is the last band and the fixed rows that an allowed pair
takes in (a row labelled ``a`` whose gap to ``b`` is within ``theta + allowance[a, b]``).
Where the last pass kept every row's label (in memory), those rows are found without the
pass: only the rows whose label has an allowed pair are read, and only their costs at that
label and at the allowed clusters (a few dozen columns at k = 1024, not k).  The fixed rows'
summaries are the last pass's less the rows taken in:

- counts, coordinate sums and objective: exact (the rows' float64 costs subtracted);
- the slack matrix: for an allowed pair ``(a, b)``, ``min (C_ib - C_ia)`` over the rows
  labelled ``a`` that stay fixed, computed here in float64 (every one of them is read); for
  the other pairs the last pass's, a minimum over more rows (a lower bound: still a proof);
- the gap histogram: the last pass's (it counts top-two gaps, not the allowance's scores).

The rows taken in get their candidates (:mod:`.candidates`) as the pass would give them, by
the pass's own kernel over those rows alone.  Every other field is the last pass's.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .buffers import empty_buffer
from .costs import _centred_row, screened_centers
from .exact_pass import Candidates, ExactPass, _allowance_array, exact_pass
from .jit import njit, read_only
from .kernels import _threads_for, label_sums


@njit()
def _by_label(labels, k):  # pragma: no cover - compiled
    """The rows of each label (``labels >= 0``), in order: ``rows[first[a]:first[a + 1]]``."""
    first = np.zeros(k + 1, dtype=np.int64)
    for i in range(labels.shape[0]):
        if labels[i] >= 0:
            first[labels[i] + 1] += 1
    for a in range(k):
        first[a + 1] += first[a]
    rows = np.empty(first[k], dtype=np.int64)
    at = first[:k].copy()
    for i in range(labels.shape[0]):
        a = labels[i]
        if a >= 0:
            rows[at[a]] = i
            at[a] += 1
    return rows, first


@njit(parallel=True)
def _allowed_rows(X, rows, first, sc, v, theta, allow, entered, slack):  # pragma: no cover
    """``entered[i]``: fixed row ``i`` (labelled ``a``: one of ``rows[first[a]:first[a +
    1]]``) has an allowed pair ``(a, b)`` (``allow``: CSR by label) with ``C_ib - v_b - (C_ia
    - v_a) - allow[a, b] <= theta``.  ``slack[q]`` (the pairs in ``allow``'s order): ``min
    (C_ib - C_ia)`` over the rows labelled ``a`` that do not.  Costs are the float64 ones of
    :func:`~ballot_dask.costs.slab_costs`'s expansion (rows centred as :func:`row_cost`
    centres them), a cluster's rows at its allowed columns in one BLAS product."""
    ptr, col, val = allow
    d = X.shape[1]
    _, _, _, mu_c, mu_sq, mean, _, _, _ = sc
    k = ptr.shape[0] - 1
    for a in numba.prange(k):
        lo, hi = ptr[a], ptr[a + 1]
        r = first[a + 1] - first[a]
        if lo == hi or r == 0:
            continue
        p = hi - lo
        centred = np.empty((p + 1, d))
        centred[0] = mu_c[a]
        for q in range(p):
            centred[q + 1] = mu_c[col[lo + q]]
        Z = np.empty((r, d))
        xsq = np.empty(r)
        for t in range(r):
            xsq[t] = _centred_row(X, rows[first[a] + t], mean, Z[t])
        G = np.dot(Z, np.ascontiguousarray(centred.T))
        for t in range(r):
            ca = max(xsq[t] - 2.0 * G[t, 0] + mu_sq[a], 0.0)
            base = ca - v[a]
            score = np.inf
            for q in range(p):
                j = col[lo + q]
                c = max(xsq[t] - 2.0 * G[t, q + 1] + mu_sq[j], 0.0)
                score = min(score, c - v[j] - base - val[lo + q])
            if score <= theta:
                entered[rows[first[a] + t]] = True
                continue
            for q in range(p):
                j = col[lo + q]
                c = max(xsq[t] - 2.0 * G[t, q + 1] + mu_sq[j], 0.0)
                slack[lo + q] = min(slack[lo + q], c - ca)


def allowed_pass(
    X: np.ndarray,
    centers: np.ndarray,
    last: ExactPass,
    v: np.ndarray,
    allowance: np.ndarray,
    limit: int,
    width: int = 0,
) -> ExactPass | None:
    """:func:`~ballot_dask.exact_pass.exact_pass` of the whole of ``X`` (dense, unweighted)
    under ``v``, ``last.theta`` and ``allowance``, from ``last``: a pass over the same ``X``
    under the same ``v`` and threshold that kept every row's label (``keep_labels``) and,
    with ``width``, its band rows' candidates.  ``None`` when the band would hold more than
    ``limit`` rows (the pass then caps it: the caller makes that pass).

    The band is ``last``'s and the fixed rows an allowed pair takes in (see the module
    docstring for what differs from the pass's own summaries)."""
    if (
        last.labels is None
        or (width > 0) != (last.candidates is not None)
        or last.pairs is not None
    ):
        raise ValueError("last must be a pass that kept its labels, with candidates as width asks")
    n, k = X.shape[0], centers.shape[0]
    if last.labels.shape[0] != n:
        raise ValueError(f"last holds {last.labels.shape[0]} labels for {n} rows")
    ptr, col, val = _allowance_array(allowance, k)
    sc = screened_centers(X, centers)
    grouped, first = _by_label(last.labels, k)
    entered = np.zeros(n, dtype=np.bool_)
    pair_slack = np.full(col.shape[0], np.inf)
    v = np.asarray(v, dtype=np.float64)
    with _threads_for(n, blas=True):
        theta = float(last.theta)
        allow = (ptr, col, val)
        _allowed_rows(read_only(X), grouped, first, tuple(sc), v, theta, allow, entered, pair_slack)
    taken = np.flatnonzero(entered)
    if last.rows.shape[0] + taken.shape[0] > limit:
        return None
    labelled = last.labels[taken].astype(np.int64)
    x = X[taken]
    lost = np.bincount(labelled, minlength=k)
    diff = x.astype(np.float64) - np.asarray(centers, dtype=x.dtype).astype(np.float64)[labelled]
    fixed_slack = last.slack.copy()
    fixed_slack[np.repeat(np.arange(k), np.diff(ptr)), col] = pair_slack
    labels = last.labels.copy()
    labels[taken] = -1
    rows, band_x, candidates = last.rows, last.x, last.candidates
    if taken.shape[0]:
        # the rows taken in, as the pass would gather them (every row: an infinite threshold)
        extra = exact_pass(x, centers, v, math.inf, taken.shape[0], width=width)
        if not np.array_equal(extra.rows, np.arange(taken.shape[0])):
            raise AssertionError("the pass left rows out of a band with no threshold")
        # both in row order: the merged band's places of each (no sort, one copy)
        at = np.searchsorted(rows, taken) + np.arange(taken.shape[0])
        held = np.ones(rows.shape[0] + taken.shape[0], dtype=np.bool_)
        held[at] = False
        rows = _merged(rows, taken, held, at)
        band_x = _merged(band_x, extra.x, held, at)
        if candidates is not None and extra.candidates is not None:
            pairs = zip(candidates, extra.candidates, strict=True)
            candidates = Candidates(*(_merged(a, b, held, at) for a, b in pairs))
    mass = None if last.mass is None else last.mass - lost
    return last._replace(
        counts=last.counts - lost,
        sums=last.sums - label_sums(x, labelled, k),
        objective=last.objective - float(np.einsum("ij,ij->", diff, diff)),
        slack=fixed_slack,
        rows=rows,
        x=band_x,
        mass=mass,
        candidates=candidates,
        labels=labels,
    )


def _merged(first: np.ndarray, second: np.ndarray, held: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``first``'s rows where ``held``, ``second``'s at ``at`` (into an array NumPy did not
    advise onto huge pages: see :mod:`ballot_dask.buffers`)."""
    out = empty_buffer((held.shape[0], *first.shape[1:]), first.dtype)
    out[held] = first
    out[at] = second
    return out


__all__ = ["allowed_pass"]
