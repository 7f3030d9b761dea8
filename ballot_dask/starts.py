"""Where a fit starts: the row sample, the initial centers of each run, a resumed state.

One pass over X (:meth:`~ballot_dask.blocks.Blocks.prepare`) measures its variance and draws
the row sample (a hash of the row index: the same rows on every engine and chunking) that the
named init strategies and the exact solver's first potentials run on; on Dask it also checks
X and persists it when it fits.  :func:`plan_starts` returns what
:func:`~ballot_dask.lloyd.best_of_starts` needs: a function giving each run's initial
centers, and the number of runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import config
from .blocks import sample_size, sample_stride
from .initialization import init_passes, initial_centers
from .kmeans_parallel import kmeans_parallel
from .lloyd import LloydState, check_resume
from .weights import sampled_weights


class Starts(NamedTuple):
    """What :func:`plan_starts` returns."""

    start: Callable[[], np.ndarray]  #: the initial centers of the next run
    runs: int  #: runs to make (``n_init``, or 1 from explicit centers or a resumed state)
    mean: np.ndarray  #: (d,) X's column means
    var: np.ndarray  #: (d,) X's column variances


def plan_starts(
    blocks: Any,
    n_clusters: int,
    init: str | np.ndarray,
    n_init: int,
    rng: np.random.RandomState,
    weight: Any = None,
    resume: LloydState | None = None,
) -> Starts:
    """The fit's row sample and its runs' initial centers (see the module docstring).

    ``init`` is a strategy's name or the initial centers (then one run, with a warning when
    more were asked); ``weight`` the rows' sample weights (``None``: unit); ``resume`` a state
    to continue from (a single run)."""
    n, k = blocks.n_samples, n_clusters
    if weight is not None and isinstance(init, str) and init == "k-means||":
        raise ValueError(
            "init='k-means||' does not take sample_weight; use init='k-means++' (weighted, "
            "on the fit's row sample) or give the initial centers as an array"
        )
    seed = int(rng.randint(np.iinfo(np.int32).max))
    size = sample_size(
        n,
        k,
        int(config.get("init-sample")),
        row_bytes=blocks.row_bytes()  # sparse chunks: their bytes per row
        if getattr(blocks, "sparse", False)
        else blocks.n_features * np.dtype(blocks.dtype).itemsize,
        budget=None if blocks.gather_is_free else blocks.band_budget(),
    )
    sample, mean, var = blocks.prepare(size, seed)
    sample_w = None
    if weight is not None and isinstance(init, str):
        sample_w = sampled_weights(weight, sample_stride(n, size), seed)
    runs = int(n_init)
    if not isinstance(init, str) and runs > 1:
        warnings.warn(
            f"explicit initial centers were given: performing one run, not n_init={runs}",
            RuntimeWarning,
            stacklevel=3,
        )
        runs = 1
    if resume is not None:
        if runs > 1:
            raise ValueError("resume continues a single run: it needs n_init=1")
        check_resume(resume, (k, blocks.n_features))

    def start() -> np.ndarray:
        if resume is not None:
            return np.asarray(resume.centers, dtype=np.float64)
        if isinstance(init, str) and init == "k-means||":
            return kmeans_parallel(blocks, sample, k, rng)
        blocks.passes.sample += init_passes(init, k)
        return initial_centers(sample, k, init, rng, sample_w)

    return Starts(start, runs, mean, var)
