"""What every experiment script shares: its command line, its settings, its CSV and its record.

The scripts in this folder import this module as ``_records`` (Python puts the script's own
folder first on ``sys.path``), so run them as ``python examples/paper/<script>.py``.

Each script runs in one of three settings: ``full`` (the default: the paper's sizes, or the
stated choice where the paper's numbers were lost), ``--quick`` (minutes on 2 cores, fewer
trials) and ``--tiny`` (seconds: the setting the test suite runs). It writes, into ``--out``
(default ``examples/paper/results``):

- ``experiment_NN.csv``: the raw results, one row per trial (and method);
- ``figure_N.png``: the figure, drawn like the paper's;
- ``experiment_NN.json``: the setting, its parameters, the library versions and the time taken.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SETTING_NAMES = ("tiny", "quick", "full")

# distributions whose versions the record names
_PACKAGES = ("ballot-dask", "numpy", "scipy", "scikit-learn", "pot", "dask", "matplotlib")

P = TypeVar("P")


@dataclass(frozen=True)
class Run:
    """How a script was asked to run.

    Attributes
    ----------
    setting : {"tiny", "quick", "full"}
    out : Path
        Directory of the CSV, the figure and the record.
    seed : int
        Base seed: trial ``t`` draws from ``np.random.default_rng([seed, ..., t])``.
    """

    setting: str
    out: Path
    seed: int

    def path(self, name: str) -> Path:
        """``out / name``, the directory created on first use."""
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / name


def parse_run(description: str, argv: Sequence[str] | None = None) -> Run:
    """The command line every script shares: ``[--quick | --tiny] [--out DIR] [--seed N]``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="minutes on 2 cores: fewer trials and sizes"
    )
    size.add_argument("--tiny", action="store_true", help="seconds: the test suite's setting")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="base seed of data and starts")
    args = parser.parse_args(argv)
    setting = "tiny" if args.tiny else "quick" if args.quick else "full"
    return Run(setting=setting, out=args.out, seed=args.seed)


def choose(settings: Mapping[str, P], run: Run) -> P:
    """The parameters of ``run.setting``."""
    return settings[run.setting]


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """Write ``rows`` (mappings with exactly ``fields``) as CSV; floats with 17 digits."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(fields), extrasaction="raise", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(row[key]) for key in fields})


def _cell(value: Any) -> Any:
    """Booleans as 0/1, floats (numpy's too) to the last digit."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV written by :func:`write_csv`, as strings."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows: Sequence[Mapping[str, str]], name: str, kind: type = float) -> list[Any]:
    """One column of :func:`read_csv` rows, converted (``bool`` from ``0``/``1``)."""
    if kind is bool:
        return [row[name] == "1" for row in rows]
    return [kind(row[name]) for row in rows]


# --------------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------------


@dataclass
class Record:
    """The JSON written beside the CSV: what ran, with which parameters, in how long."""

    experiment: str
    run: Run
    parameters: Any
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        path = self.run.path(f"{self.experiment}.json")
        params = self.parameters
        if is_dataclass(params) and not isinstance(params, type):
            params = asdict(params)
        info = {
            "experiment": self.experiment,
            "setting": self.run.setting,
            "seed": self.run.seed,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "parameters": params,
            "seconds": round(self.seconds, 2),
            "summary": self.summary,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "versions": _versions(),
        }
        path.write_text(json.dumps(info, indent=2, default=_jsonable) + "\n")
        return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@contextmanager
def timed(record: Record) -> Iterator[Record]:
    """Time the body into ``record.seconds`` and print a closing line."""
    start = time.perf_counter()
    try:
        yield record
    finally:
        record.seconds = time.perf_counter() - start
    print(f"{record.experiment} ({record.run.setting}): {record.seconds:.1f} s")
