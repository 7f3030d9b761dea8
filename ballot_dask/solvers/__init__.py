"""Assignment-step solvers, as named strategies behind one signature.

Each takes the row blocks (with the cost blocks of the current centers built), the capacities,
the options and an optional warm start (potentials and the regularisation they were found at),
and returns a :class:`~.base.StepOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import SolverOptions, StepOutcome, labels_of
from .emd import solve_emd
from .exact import solve_exact
from .sinkhorn import solve_sinkhorn

Solver = Callable[..., StepOutcome]

SOLVERS: dict[str, Solver] = {
    "exact": solve_exact,
    "sinkhorn": solve_sinkhorn,
    "emd": solve_emd,
}

__all__ = ["SOLVERS", "Solver", "SolverOptions", "StepOutcome", "labels_of"]
