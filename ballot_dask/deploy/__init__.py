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

import importlib
import sys
from types import ModuleType

__all__ = ["import_without_config_files", "missing_extra"]


def missing_extra(module: str, extra: str, what: str) -> ImportError:
    """The error for an optional dependency that is not installed."""
    return ImportError(
        f"{what} needs the Python package {module!r}: pip install 'ballot-dask[{extra}]'"
    )


def import_without_config_files(name: str) -> ModuleType:
    """Import ``name`` (``dask_jobqueue``, ``dask_kubernetes``) without its side effects on
    the importing process.

    - Both copy their YAML defaults into ``~/.config/dask`` on first import
      (``dask.config.ensure_file``); this project writes nothing to the user's home.  The
      defaults themselves are registered as usual (``dask.config.update_defaults``).
    - ``dask_jobqueue`` replaces the SIGINT handler with ``sys.exit()`` (status 0) on import
      (for its ``runner`` module); Ctrl-C must stay an interruption (status 130) that
      cancels the jobs.
    """
    if name in sys.modules:
        return sys.modules[name]
    import signal
    import threading

    import dask.config

    original = dask.config.ensure_file
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    dask.config.ensure_file = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        dask.config.ensure_file = original
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)
