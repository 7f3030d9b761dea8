"""Run every experiment of the paper in one setting, in the paper's order.

    python examples/paper/run_all.py [--quick | --tiny] [--out DIR] [--seed N]

The options are passed to each script (see ``_records``); each writes its CSV, figure and
record into ``--out``.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence

SCRIPTS = (
    "experiment_02",
    "experiment_03",
    "experiment_04",
    "experiment_09_10",
    "experiment_13_14",
    "experiment_16",
)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    for name in SCRIPTS:
        importlib.import_module(name).main(args)
    print(f"all experiments: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
