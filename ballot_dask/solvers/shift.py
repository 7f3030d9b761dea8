"""Potentials moved toward balance from one pass's pair histogram, with no further pass.

A pass under the potentials ``v`` can count every row by its label ``a``, its second-best
cluster ``b`` and its top-two gap ``g`` (:func:`~ballot_dask.exact_pass.exact_pass` with
``pair_scale``; bins of a quarter octave, :func:`~ballot_dask.pair_bins.pair_edges`).  Under
the shifted potentials ``v + delta`` a row of the pair moves from ``a`` to ``b`` when
``delta_b - delta_a > g``, as long as its third-best cluster stays behind, which holds for
the shifts a Lloyd step needs on all but a few rows.  The histogram is then a model of the
whole problem: groups of rows with two choices each, a transport problem of ``k`` potentials
that the client solves without reading X.

The model's balanced shift is the minimiser of its entropic semi-dual
``F(delta) = sum_groups c * tau * log(exp(delta_a / tau) + exp((delta_b - g) / tau))
+ sum_j (stay_j - target_j) delta_j``, convex, whose gradient is the model's counts minus the
target sizes and whose Hessian is a ``k x k`` graph Laplacian; Newton steps with a
backtracking line search at temperatures ``tau`` falling from the scale of the gaps to below
the bins' resolution (as :mod:`.newton` does on the rows themselves, here on
``k * k * PAIR_BINS`` groups at most).

The shift is a guess, not a proof: the next pass labels X under the shifted potentials, and
the band, the exact repair and the certificate decide as always.  It pays where the
potentials are far off (an early Lloyd step, a sample's potentials at large n): the rows a
misplaced imbalance would put in the band are many times the rows left near the shifted
potentials' boundaries (the bins' width and the third-best moves).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..capacities import Capacities
from ..pair_bins import _PAIR_HIGH, PAIR_MAX_CLUSTERS, pair_edges

#: at most this many clusters (the pass holds ``k * k * PAIR_BINS`` counts per thread)
MAX_CLUSTERS = PAIR_MAX_CLUSTERS
_COOLING = 4.0  # the temperature falls by this factor per stage ...
_STAGES = 7  # ... from the gaps' scale to 4^-6 of it (below the narrowest bins in use)
_NEWTON = 30  # Newton steps per stage, at most
_ARMIJO = 1e-4


class Shift(NamedTuple):
    """The shifted potentials and the model's gaps under them."""

    potentials: np.ndarray  #: (k,) float64: ``v + delta``
    gaps: np.ndarray  #: (groups,): each group's top-two gap under them, predicted
    counts: np.ndarray  #: (groups,): the group's rows
    imbalance: float  #: points the model still places beyond the sizes' bounds

    def theta_for(self, rows: int) -> float:
        """The gap threshold that holds about ``rows`` rows under the shifted potentials,
        by the model (the groups' gaps, ordered)."""
        if not self.gaps.size:
            return 0.0
        order = np.argsort(self.gaps, kind="stable")
        held = np.cumsum(self.counts[order])
        j = int(np.searchsorted(held, rows))
        return float(self.gaps[order[min(j, order.size - 1)]])


def pair_counts(pairs: np.ndarray, scale: float, delta: np.ndarray) -> np.ndarray:
    """The rows per cluster the pair histogram's model puts under its potentials shifted by
    ``delta`` (``(k,)``): a group of rows labelled ``a`` with second-best ``b`` moves to ``b``
    in the share of its gap bin below ``delta_b - delta_a`` (linear within the bin; the model
    at zero temperature).  Float counts, summing to the histogram's rows."""
    k = pairs.shape[0]
    low, high = pair_edges(scale)
    counts = pairs.sum(axis=(1, 2)).astype(np.float64)
    a, b, bins = np.nonzero(pairs[:, :, :-1])  # the last bin: gaps too wide to cross
    keep = a != b
    a, b, bins = a[keep], b[keep], bins[keep]
    t = np.asarray(delta, dtype=np.float64)
    share = np.clip((t[b] - t[a] - low[bins]) / (high[bins] - low[bins]), 0.0, 1.0)
    moving = pairs[a, b, bins].astype(np.float64) * share
    return counts - np.bincount(a, moving, minlength=k) + np.bincount(b, moving, minlength=k)


def shift_potentials(
    pairs: np.ndarray, scale: float, v: np.ndarray, capacities: Capacities
) -> Shift:
    """The potentials ``v + delta`` that balance the pair histogram's model.

    Parameters
    ----------
    pairs : ndarray of shape (k, k, PAIR_BINS)
        Rows by label, second-best cluster and gap bin, under ``v`` (every row of X).
    scale : float
        The scale the histogram's bins were cut at.
    v : ndarray of shape (k,)
        The potentials of the pass.
    capacities : Capacities
        The size bounds (the model's target is the nearest sizes within them).
    """
    k = capacities.n_clusters
    low, high = pair_edges(scale)
    counts = pairs.sum(axis=(1, 2)).astype(np.float64)
    a, b, bins = np.nonzero(pairs[:, :, :-1])  # the last bin: gaps too wide to cross
    keep = a != b
    a, b, bins = a[keep], b[keep], bins[keep]
    c = pairs[a, b, bins].astype(np.float64)
    g = np.where(bins == 0, 0.5 * high[bins], np.sqrt(low[bins] * high[bins]))
    stay = counts - np.bincount(a, c, minlength=k)
    target = capacities.target(counts)
    reach = math.ldexp(scale, _PAIR_HIGH)  # a shift beyond the widest bin is not modelled

    def model(delta: np.ndarray, tau: float) -> tuple[float, np.ndarray, np.ndarray]:
        z = (delta[b] - delta[a] - g) / tau
        moving = 0.5 * (1.0 + np.tanh(0.5 * z))  # the share of each group that moves to b
        value = float(np.dot(c, delta[a] + tau * np.logaddexp(0.0, z)))
        value += float(np.dot(stay - target, delta))
        sizes = (
            stay
            + np.bincount(a, c * (1.0 - moving), minlength=k)
            + np.bincount(b, c * moving, minlength=k)
        )
        return value, sizes - target, c * moving * (1.0 - moving) / tau

    delta = np.zeros(k)
    tau = float(scale)
    for _ in range(_STAGES):
        for _ in range(_NEWTON):
            value, gradient, weight = model(delta, tau)
            if 0.5 * np.abs(gradient).sum() < 0.5:
                break
            hessian = np.zeros((k, k))
            np.add.at(hessian, (a, b), -weight)
            np.add.at(hessian, (b, a), -weight)
            np.fill_diagonal(hessian, 0.0)
            np.fill_diagonal(hessian, -hessian.sum(axis=1))
            # the constant shift is free: fix it (rank one), and keep clusters no group
            # reaches from a singular system
            hessian += 1.0 / k + 1e-12 * (np.trace(hessian) / k + 1e-300) * np.eye(k)
            try:
                step = -np.linalg.solve(hessian, gradient)
            except np.linalg.LinAlgError:  # no curvature anywhere: the model cannot tell
                break
            if not np.all(np.isfinite(step)):
                break
            slope = float(np.dot(gradient, step))
            t = 1.0
            while t > 1e-6:
                trial = np.clip(delta + t * step, -reach, reach)
                if model(trial, tau)[0] <= value + _ARMIJO * t * slope:
                    break
                t *= 0.5
            else:
                break
            delta = trial
        tau /= _COOLING
    _, gradient, _ = model(delta, tau * _COOLING)
    t = delta[b] - delta[a]
    gaps = np.abs(g - t)
    # the groups that cannot move keep their (wide) gaps: never in a band
    return Shift(
        potentials=np.asarray(v, dtype=np.float64) + delta - delta.mean(),
        gaps=gaps,
        counts=c,
        imbalance=0.5 * float(np.abs(gradient).sum()),
    )
