"""The exact step's passes over X, as :func:`.exact.solve_exact` makes them.

- :func:`_pass_kernel`: one block's share of the pass
  (:func:`~ballot_dask.exact_pass.exact_pass`), run by the engine on every block.
- :func:`refined_pass`: in memory, the pass under a grown allowance from the last pass's
  labels (:func:`~ballot_dask.allowed_pass.allowed_pass`): only the rows whose label has an
  allowed pair are read, at a few columns each.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import issparse

from ..allowed_pass import allowed_pass
from ..blocks import Blocks, RowBlocks
from ..exact_pass import ExactPass, band_costs, block_share, exact_pass, whole_block
from ..held_labels import hold
from ..kernels import reduced_cost_labels

#: a pass under an allowance is refined from the last one while its pairs are at most this
#: share of all ``k * k`` (each row labelled by a cluster with pairs is read at that many
#: columns instead of k)
_REFINED_SHARE = 0.25


def _pass_kernel(
    X: np.ndarray,
    centers: np.ndarray,
    v: np.ndarray,
    theta: float,
    cap: int,
    total: int,
    strict: bool,
    width: int,
    pair_scale: float,
    allowance: np.ndarray | None,
    keep_labels: bool | str,
    offset: int,
    weights: np.ndarray | None = None,
) -> ExactPass:
    """A block's share of a band of at most ``cap`` rows among ``total``: all of it for one
    block, else twice its share (rows are not spread evenly over the blocks) and a few.

    ``strict`` (a hard limit, ``max_band``): exactly the block's share, its smallest gaps
    (the block's gaps are computed first to find the threshold that holds them).
    ``width``: candidates per band row (:mod:`ballot_dask.candidates`; 0: none).
    ``pair_scale``: the scale of the pair histogram's bins (:mod:`.shift`; 0: none).
    ``allowance``: per pair of clusters, the band's reach beyond ``theta`` (see
    :func:`.allowance._allow`; ``None``: none).  ``keep_labels``: every row's label too (in
    memory: the step's labels need no pass); a key (:meth:`.Blocks.keep_labels`): every
    row's label held in this process under it (:func:`~ballot_dask.held_labels.hold`), not
    returned.  ``weights``: the block's sample weights."""
    m = X.shape[0]
    share = block_share(cap, m, total)
    if strict:
        share = cap if m >= total else cap * m // max(total, 1)
        if 0 < share < m:
            _, gaps = reduced_cost_labels(band_costs(X, centers), v)
            theta = min(theta, float(np.partition(gaps, share - 1)[share - 1]))
    if share >= m and theta == math.inf and (not width or issparse(X)):
        # every row, and no candidates (a sparse block has none): no costs needed here
        whole = whole_block(X, centers.shape[0], offset, weights)
        if isinstance(keep_labels, str):  # every row's label from the band
            whole = whole._replace(labels=np.full(m, -1, dtype=np.int32))
        return _held(whole, keep_labels, offset)
    result = exact_pass(
        X,
        centers,
        v,
        theta,
        share,
        offset,
        strict=strict,
        weights=weights,
        width=width,
        pair_scale=pair_scale,
        allowance=allowance,
        shared=m < total and not strict,
        keep_labels=bool(keep_labels),
    )
    return _held(result, keep_labels, offset)


def _held(result: ExactPass, keep_labels: bool | str, offset: int) -> ExactPass:
    """The block's pass, its rows' labels held under the key ``keep_labels`` (when one is
    given and the pass kept them) rather than returned."""
    if not isinstance(keep_labels, str) or result.labels is None:
        return result
    hold(keep_labels, offset, result.labels)
    return result._replace(labels=None, held_key=keep_labels)


def refined_pass(
    blocks: Blocks,
    last: tuple[ExactPass, np.ndarray] | None,
    v: np.ndarray,
    theta: float,
    allowance: np.ndarray | None,
    cap: int,
    width: int,
    strict: bool,
) -> ExactPass | None:
    """The pass under ``allowance`` (with ``v``, ``theta``, ``cap`` and ``width`` as
    :func:`_pass_kernel` takes them) from ``last``, the last pass and the potentials it was
    made under, without a pass over all of X; ``None`` where that pass must be made: not in
    memory (or X sparse, or weighted), no candidates (``width`` 0: below 128 clusters the
    pass is cheap and the refinement gained nothing), no allowance, another threshold or
    potentials, a pass
    that kept no labels or gave up band rows to its cap, ``strict``, a band beyond ``cap``,
    or pairs beyond ``_REFINED_SHARE`` of all (then most of every row's costs are read).
    Counted as a pass over X: it reads most of X's rows, if at a few columns each."""
    if allowance is None or last is None or strict or not width:
        return None
    if not isinstance(blocks, RowBlocks):
        return None
    band, before = last
    k = blocks.centers.shape[0]
    if (
        issparse(blocks.X)
        or blocks.weights is not None
        or band.labels is None
        or band.full
        or band.pairs is not None
        or band.theta != theta
        or (width > 0) != (band.candidates is not None)
        or not np.array_equal(before, v)
        or np.count_nonzero(allowance) > _REFINED_SHARE * k * k
    ):
        return None
    refined = allowed_pass(blocks.X, blocks.centers, band, v, allowance, cap, width)
    if refined is not None:
        blocks.passes.x += 1
        blocks.passes.rounds += 1
    return refined
