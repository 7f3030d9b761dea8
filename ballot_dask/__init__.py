"""ballot-dask: balanced k-means clustering at any scale, with optimal transport (BalLOT)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .assign import AssignmentResult, balanced_assign
from .capacities import Capacities, resolve_capacities
from .certificate import Certificate
from .estimator import BalancedKMeans, balanced_kmeans

try:
    __version__ = version("ballot-dask")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AssignmentResult",
    "BalancedKMeans",
    "Capacities",
    "Certificate",
    "__version__",
    "balanced_assign",
    "balanced_kmeans",
    "resolve_capacities",
]
