"""Where the command line's Dask cluster comes from, beyond the embedded ``LocalCluster``.

- :mod:`.slurm`: worker jobs on SLURM through dask-jobqueue's ``SLURMCluster``;
- :mod:`.kubernetes`: a ``DaskCluster`` resource through the dask-kubernetes operator;
- :mod:`.security`: TLS credentials (temporary ones for a cluster the command starts, files
  to join a TLS scheduler);
- :mod:`.waiting`: waiting for a started cluster's workers, with what the resource manager
  reports when they do not come.

Each module keeps its pure part (the keywords or the resource it would submit) apart from
the part with side effects, so that the former is tested without a cluster.  The optional
dependencies are imported only when a cluster of that kind is asked for: ``pip install
'ballot-dask[slurm]'``, ``[kubernetes]``, ``[tls]`` or ``[cluster]`` for all.
"""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(module: str, extra: str, what: str) -> ImportError:
    """The error for an optional dependency that is not installed."""
    return ImportError(
        f"{what} needs the Python package {module!r}: pip install 'ballot-dask[{extra}]'"
    )
