"""One look for every figure: sizes and fonts readable at README width, one colour per method.

Figures are built with matplotlib's object API (:class:`matplotlib.figure.Figure`, saved by
``savefig``), never pyplot: no global backend or figure registry is touched, so the scripts run
the same under the test suite and from the shell.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["METHOD_STYLE", "REFERENCE", "figure", "save"]

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies)
METHOD_STYLE: dict[str, dict[str, Any]] = {
    "BalLOT": {"color": "#0072B2", "marker": "o"},
    "E-BalLOT": {"color": "#009E73", "marker": "s"},
    "Lloyd": {"color": "#D55E00", "marker": "^"},
    "Hungarian": {"color": "#000000", "marker": "x"},
    "POT emd": {"color": "#CC79A7", "marker": "D"},
    "ballot-dask coupon": {"color": "#E69F00", "marker": "v"},
}

#: the paper's reference curves: red (Theorem 8 and 11 bounds), blue (the k = 2 radius drawn
#: on the k = 3 experiment)
REFERENCE = {"red": "#D62728", "blue": "#1F77B4"}

_RC: dict[Any, Any] = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 13,
    "legend.fontsize": 11,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}


@contextmanager
def figure(ncols: int = 1, *, width: float = 6.4, height: float = 4.4) -> Iterator[tuple]:
    """A figure with ``ncols`` axes side by side, drawn under the shared style.

    Yields ``(fig, axes)`` with ``axes`` a list of :class:`~matplotlib.axes.Axes`.
    """
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(width * ncols, height), layout="constrained")
        axes: list[Axes] = list(np.atleast_1d(fig.subplots(1, ncols)))
        yield fig, axes


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path``."""
    with mpl.rc_context(_RC):
        fig.savefig(path)
    print(f"wrote {path}")
    return path
