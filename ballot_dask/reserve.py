"""The pass's reserve: the rows near a boundary, kept where they were read.

Where a pass reads X from its storage (a Dask array too large to persist) and the potentials
may move after it (a shift by the pass's pair histogram, a band cut wider), the exact step's pass
(:func:`reserve_pass`) also keeps, on the worker that read each chunk, the chunk's rows whose
top-two gap is at most ``reach`` (a threshold above the band's): their indices, coordinates,
and the summary of the chunk's other rows (their labels, counts, centroid sums, objective,
slack matrix and gaps, under the pass's potentials).  The band for other potentials ``v'``
and threshold ``theta'`` is then cut from the reserve alone (:func:`reserve_band`, one round,
no read of X) when every row beyond ``reach`` keeps its label and stays out of that band:

    ``max_j (v'_j - v_j) - min_j (v'_j - v_j) + theta' < reach``

(a row's gap to cluster ``j`` moves by at most that spread).  The labelling such a band
leads to is certified as any other (the slack matrix of fixed rows does not depend on the
potentials), so a reserve whose rows were too few only costs the pass it did not save.

Every function here runs where the chunk is (a worker); only :func:`combine_reserved`'s
result travels to the client.  Contract: the band a reserve cuts for ``(v', theta')`` is the
band a pass over X would cut, as long as the condition above holds and the reserve is not
``full`` (a lane of its pass ran out of room).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .buffers import least_of
from .combine import combine_passes
from .exact_pass import ExactPass, block_share, exact_pass


class Reserve(NamedTuple):
    """A chunk's rows within ``reach`` of a boundary, and the summary of the others."""

    rows: np.ndarray  #: (r,) int64: global indices of the reserve's rows, increasing
    x: np.ndarray  #: (r, d): their coordinates (X's dtype)
    #: the chunk's other rows, fixed under the pass's potentials (no band rows); ``hist``
    #: counts their gaps
    beyond: ExactPass
    m: int  #: rows of the chunk


def _joined(beyond: ExactPass, inner: ExactPass, rows: np.ndarray, hist: np.ndarray) -> ExactPass:
    """The chunk's pass: the rows beyond the reserve (``beyond``) and the reserve's own pass
    (``inner``, whose band rows are ``rows`` of X)."""
    return ExactPass(
        counts=beyond.counts + inner.counts,
        sums=beyond.sums + inner.sums,
        objective=beyond.objective + inner.objective,
        slack=least_of([beyond.slack, inner.slack]),
        rows=rows,
        x=inner.x,
        hist=hist,
        theta=inner.theta,
        mass=None if beyond.mass is None or inner.mass is None else beyond.mass + inner.mass,
        pairs=beyond.pairs,
        pair_scale=beyond.pair_scale,
        full=inner.full,
    )


def reserve_pass(
    X: np.ndarray,
    centers: np.ndarray,
    v: np.ndarray,
    theta: float,
    cap: int,
    total: int,
    reach: float,
    reserve_cap: int,
    pair_scale: float,
    offset: int,
) -> tuple[tuple[ExactPass, bool], Reserve]:
    """The exact step's pass over a chunk (band at ``theta``, at most about ``cap`` rows
    among ``total``, pair histogram at ``pair_scale``), and the chunk's reserve: its rows
    within ``reach`` (at most about ``reserve_cap`` among ``total``).

    Returns ``((pass, full), reserve)``: the pass is the one
    :func:`~ballot_dask.exact_pass.exact_pass` gives (the band taken from the reserve's
    rows); ``full``: the reserve ran out of room, and the chunk was passed again without
    one (it is still in memory: no second read), to the same pass."""
    m, share = X.shape[0], block_share(cap, X.shape[0], total)
    shared = m < total  # (see exact_pass)
    wide = exact_pass(
        X,
        centers,
        v,
        reach,
        block_share(reserve_cap, m, total),
        offset,
        pair_scale=pair_scale,
        shared=shared,
    )
    if wide.full:  # more rows within reach than room: the plain pass, no reserve
        plain = exact_pass(
            X, centers, v, theta, share, offset, pair_scale=pair_scale, shared=shared
        )
        empty = plain._replace(rows=plain.rows[:0], x=plain.x[:0], pairs=None)
        return (plain, True), Reserve(plain.rows[:0], plain.x[:0], empty, m)
    inner = exact_pass(wide.x, centers, v, theta, share, 0, shared=shared)
    beyond = wide._replace(
        rows=wide.rows[:0], x=wide.x[:0], hist=wide.hist - inner.hist, theta=reach, full=False
    )
    shipped = _joined(beyond, inner, wide.rows[inner.rows], wide.hist)
    return (shipped, wide.full), Reserve(wide.rows, wide.x, beyond._replace(pairs=None), m)


def reserve_band(
    reserve: Reserve, centers: np.ndarray, v: np.ndarray, theta: float, cap: int, total: int
) -> ExactPass:
    """The chunk's pass at potentials ``v`` and threshold ``theta`` from its reserve (no
    pair histogram): its rows passed again, the others as the reserve's pass fixed them."""
    share = block_share(cap, reserve.m, total)
    inner = exact_pass(reserve.x, centers, v, theta, share, 0, shared=reserve.m < total)
    hist = reserve.beyond.hist + inner.hist
    return _joined(reserve.beyond, inner, reserve.rows[inner.rows], hist)


def combine_reserved(parts: list[tuple[ExactPass, bool]]) -> tuple[ExactPass, bool]:
    """Reduce :func:`reserve_pass`'s ``(pass, full)`` pairs (closed; parts in row order)."""
    return combine_passes([p for p, _ in parts]), any(full for _, full in parts)


__all__ = ["Reserve", "combine_reserved", "reserve_band", "reserve_pass"]
