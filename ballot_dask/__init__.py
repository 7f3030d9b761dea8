"""ballot-dask: balanced k-means clustering at any scale, with optimal transport (BalLOT).

The public names are imported on first use: a Dask worker that runs the per-chunk kernels then
loads numba and numpy only, not scikit-learn or POT (a few hundred MB less per worker).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import config as config  # registers the ``ballot.*`` Dask settings

if TYPE_CHECKING:  # pragma: no cover
    from .assign import AssignmentResult, balanced_assign
    from .capacities import Capacities, resolve_capacities
    from .certificate import Certificate, certify
    from .estimator import BalancedKMeans, balanced_kmeans

try:
    __version__ = version("ballot-dask")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_LAZY = {
    "AssignmentResult": ".assign",
    "balanced_assign": ".assign",
    "Capacities": ".capacities",
    "resolve_capacities": ".capacities",
    "Certificate": ".certificate",
    "certify": ".certificate",
    "BalancedKMeans": ".estimator",
    "balanced_kmeans": ".estimator",
}

__all__ = [
    "AssignmentResult",
    "BalancedKMeans",
    "Capacities",
    "Certificate",
    "__version__",
    "balanced_assign",
    "balanced_kmeans",
    "certify",
    "resolve_capacities",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
