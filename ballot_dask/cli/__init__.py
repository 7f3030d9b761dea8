"""The ``ballot-dask`` command line (also ``dask ballot``): make-data, fit, predict, demo.

Every command reads its inputs lazily, runs on a Dask cluster (an embedded ``LocalCluster``
unless ``--scheduler``/``--scheduler-file`` name one) and writes its output atomically.  A
failure prints one line on stderr and exits with status 1 (``--debug`` shows the traceback);
nothing is written.
"""

from . import data, demo, fit, predict  # noqa: F401  (registers the commands)
from .base import cli, main

__all__ = ["cli", "main"]
