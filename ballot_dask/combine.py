"""The exact pass's summaries of several blocks combined into one (in row order): what a
reduction over the blocks of X returns (:class:`~ballot_dask.exact_pass.ExactPass`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import issparse

from .buffers import least_of
from .exact_pass import Candidates, ExactPass

__all__ = ["combine_passes"]


def combine_passes(parts: list[ExactPass]) -> ExactPass:
    """Reduce :func:`exact_pass` summaries (closed; parts in row order)."""
    if len(parts) == 1:
        return parts[0]
    return ExactPass(
        counts=np.sum([p.counts for p in parts], axis=0),
        sums=np.sum([p.sums for p in parts], axis=0),
        objective=float(sum(p.objective for p in parts)),
        slack=least_of([p.slack for p in parts]),
        rows=np.concatenate([p.rows for p in parts]),
        x=_stack([p.x for p in parts]),
        hist=np.sum([p.hist for p in parts], axis=0),
        theta=parts[0].theta,
        mass=_sum_optional([p.mass for p in parts]),
        w=None if parts[0].w is None else np.concatenate([p.w for p in parts]),
        candidates=_concat_candidates([p.candidates for p in parts]),
        pairs=_sum_optional([p.pairs for p in parts]),
        pair_scale=parts[0].pair_scale,
        full=any(p.full for p in parts),
        labels=None
        if any(p.labels is None for p in parts)
        else np.concatenate([p.labels for p in parts]),
        held_key=parts[0].held_key if len({p.held_key for p in parts}) == 1 else None,
    )


def _concat_candidates(parts: list[Candidates | None]) -> Candidates | None:
    """Every part's candidates, in order; ``None`` unless every part has them."""
    if any(p is None for p in parts):
        return None
    return Candidates(*(np.concatenate([getattr(p, f) for p in parts]) for f in Candidates._fields))


def _sum_optional(parts: list[np.ndarray | None]) -> np.ndarray | None:
    present = [p for p in parts if p is not None]
    return np.sum(present, axis=0) if len(present) == len(parts) else None


def _stack(parts: list) -> Any:
    """Band rows of several blocks, in order (sparse rows stay sparse)."""
    if issparse(parts[0]):
        from .sparse import stack_rows

        return stack_rows(parts)
    return np.concatenate(parts)
