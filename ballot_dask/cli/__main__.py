"""``python -m ballot_dask.cli``."""

from . import main

main()
