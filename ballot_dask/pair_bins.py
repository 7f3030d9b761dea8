"""The bins of the exact pass's *pair histogram* (:mod:`ballot_dask.exact_pass`): rows counted
by label, second-best cluster and top-two gap, four bins per octave around a scale, from which
:mod:`ballot_dask.solvers.shift` moves the potentials toward balance with no further pass."""

from __future__ import annotations

import math

import numpy as np

from .jit import njit

#: pair-histogram bins: bin 0 for a gap below ``2^(_PAIR_LOW - 1)`` times the scale, then four
#: per octave (linear in the mantissa) up to ``2^_PAIR_HIGH`` times the scale, then one bin
#: for every wider gap (see :func:`pair_edges`)
_PAIR_LOW = -11
_PAIR_HIGH = 4
_PAIR_SUB = 4
PAIR_BINS = 2 + _PAIR_SUB * (_PAIR_HIGH - _PAIR_LOW + 1)
#: a pass counts pairs up to this many clusters (it holds ``k * k * PAIR_BINS`` counts per
#: thread)
PAIR_MAX_CLUSTERS = 32


def pair_edges(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(low, high)`` gap bounds of each pair-histogram bin for ``scale``: bin 0 holds
    the gaps below ``2^(_PAIR_LOW - 1) * scale`` (ties included), the last one every gap from
    ``2^_PAIR_HIGH * scale`` on (``high = inf``)."""
    low = np.empty(PAIR_BINS)
    high = np.empty(PAIR_BINS)
    low[0], high[0] = 0.0, math.ldexp(scale, _PAIR_LOW - 1)
    for b in range(1, PAIR_BINS - 1):
        e, q = divmod(b - 1, _PAIR_SUB)
        base = math.ldexp(scale, e + _PAIR_LOW - 1)
        low[b] = base * (1.0 + q / _PAIR_SUB)
        high[b] = base * (1.0 + (q + 1) / _PAIR_SUB)
    low[-1], high[-1] = math.ldexp(scale, _PAIR_HIGH), math.inf
    return low, high


@njit(inline="always")
def _pair_bin(gap, scale):  # pragma: no cover - compiled
    """Pair-histogram bin of a gap (see :func:`pair_edges`)."""
    x = gap / scale
    if not x > 0.0:
        return 0
    if x == np.inf:
        return PAIR_BINS - 1
    # ``x = m 2^e`` (``1/2 <= m < 1``) and the mantissa's quarter ``q``, read from the
    # float's bits as :func:`~ballot_dask.exact_pass._bin` does (``math.frexp`` for a
    # subnormal ``x``): a call to ``frexp`` per row took a fifth of a pass with pairs
    bits = np.float64(x).view(np.int64)
    biased = (bits >> 52) & 0x7FF
    if biased == 0:
        mantissa, e = math.frexp(x)
        q = min(int((mantissa - 0.5) * 2 * _PAIR_SUB), _PAIR_SUB - 1)
    else:
        e = biased - 1022
        q = (bits >> 50) & (_PAIR_SUB - 1)
    if e < _PAIR_LOW:
        return 0
    if e > _PAIR_HIGH:
        return PAIR_BINS - 1
    return 1 + (e - _PAIR_LOW) * _PAIR_SUB + q


__all__ = ["PAIR_BINS", "PAIR_MAX_CLUSTERS", "pair_edges"]
