"""Assignment-step solvers, as named strategies behind one signature.

Each takes the row blocks (with the cost blocks of the current centers built), the capacities,
the options and an optional warm start (potentials and the regularisation they were found at),
and returns a :class:`~.base.StepOutcome`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..kernels import blas_on_one_thread
from .base import SolverOptions, StepOutcome, labels_of
from .emd import solve_emd
from .exact import solve_exact
from .sinkhorn import solve_sinkhorn

Solver = Callable[..., StepOutcome]


def _one_blas_thread(solve: Solver) -> Solver:
    """``solve`` with BLAS on one thread throughout
    (:func:`~ballot_dask.kernels.blas_on_one_thread`)."""

    @functools.wraps(solve)
    def step(*args: Any, **kwargs: Any) -> StepOutcome:
        with blas_on_one_thread():
            return solve(*args, **kwargs)

    return step


SOLVERS: dict[str, Solver] = {
    "exact": _one_blas_thread(solve_exact),
    "sinkhorn": _one_blas_thread(solve_sinkhorn),
    "emd": _one_blas_thread(solve_emd),
}

__all__ = ["SOLVERS", "Solver", "SolverOptions", "StepOutcome", "labels_of"]
