"""The reference solver: POT's network simplex on the whole n x k problem.

For tests and for data that fits one machine; never the default.  Its labels are certified by
the same pass as the exact solver's.
"""

from __future__ import annotations

import numpy as np
from dask.utils import format_bytes

from ..band import solve_band
from ..blocks import Blocks
from ..capacities import Capacities
from .base import HardLabels, SolverOptions, StepOutcome, hard_step


def solve_emd(
    blocks: Blocks,
    capacities: Capacities,
    options: SolverOptions,
    potentials: np.ndarray | None = None,
    eps: float | None = None,
) -> StepOutcome:
    """Solve the whole assignment LP with ``ot.emd``."""
    n, k = blocks.n_samples, capacities.n_clusters
    if not blocks.gather_is_free and 8 * n * k > blocks.band_budget():
        raise ValueError(
            f"method='emd' gathers the whole {n} x {k} cost matrix on the client "
            f"({format_bytes(8 * n * k)}), more than the gather budget "
            f"({format_bytes(blocks.band_budget())}: ballot.band-memory, at most half of "
            "ballot.memory-fraction of the cluster's memory); use method='exact' (the same "
            "optimum, certified) or raise ballot.band-memory"
        )
    C = np.asarray(blocks.full_cost(), dtype=np.float64)
    labels = solve_band(C, capacities.lower, capacities.upper)
    labeler = HardLabels(np.zeros(k), np.arange(n), labels)
    return hard_step("emd", blocks, capacities, labeler, band_size=n)
