"""The paper's random data models in memory, for the small repeated trials of the experiments.

The balanced stochastic ball model (the paper's Definition 1) with the centres and the noise
laws the experiments name (uniform in the unit ball, uniform on the unit sphere, uniform in a
smaller ball), and the Gaussian mixture of Experiment 4. The large data sets of
Experiment 3 come from :mod:`ballot_dask.datasets`, chunk by chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "Noise",
    "balanced_labels",
    "gaussian_means_mixture",
    "pair_centers",
    "scaled_ball",
    "stochastic_ball_model",
    "triangle_centers",
    "uniform_ball",
    "uniform_sphere",
]

#: a noise law: ``(rng, m, d) -> (m, d)`` draws, rotationally invariant, within the unit ball
Noise = Callable[[np.random.Generator, int, int], np.ndarray]


def balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """A uniformly random balanced assignment: ``n / k`` points per cluster (``k`` divides
    ``n``)."""
    if n % k:
        raise ValueError(f"n={n} must be a multiple of k={k} for a balanced model")
    return rng.permutation(np.arange(n) % k)


def uniform_sphere(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """``m`` points uniform on the unit sphere of ``R^d`` (``|r| = 1``)."""
    g = rng.standard_normal((m, d))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def uniform_ball(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """``m`` points uniform in the unit ball of ``R^d`` (radius ``U^(1/d)``)."""
    return uniform_sphere(rng, m, d) * rng.random((m, 1)) ** (1.0 / d)


def scaled_ball(radius: float) -> Noise:
    """Uniform in the ball of ``radius`` (<= 1) around 0: ``E |r|^2 = radius^2 d / (d + 2)``."""
    if not 0.0 < radius <= 1.0:
        raise ValueError(f"radius must lie in (0, 1], got {radius}")

    def draw(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
        return radius * uniform_ball(rng, m, d)

    return draw


def stochastic_ball_model(
    rng: np.random.Generator, centers: np.ndarray, n: int, noise: Noise = uniform_ball
) -> tuple[np.ndarray, np.ndarray]:
    """Definition 1: ``x_i = gamma_{a(i)} + r_i`` with a balanced ``a`` and iid ``r_i``.

    Returns
    -------
    X : ndarray of shape (n, d)
    labels : ndarray of shape (n,)
        The planted assignment ``a``.
    """
    k, d = centers.shape
    labels = balanced_labels(rng, n, k)
    return centers[labels] + noise(rng, n, d), labels


def pair_centers(delta: float, d: int = 2) -> np.ndarray:
    """Two centres ``+-(delta / 2) e_1`` in ``R^d``."""
    centers = np.zeros((2, d))
    centers[:, 0] = [delta / 2.0, -delta / 2.0]
    return centers


def triangle_centers(delta: float) -> np.ndarray:
    """The vertices of an equilateral triangle of side ``delta`` in the plane, centred at 0."""
    angles = np.pi / 2.0 + 2.0 * np.pi * np.arange(3) / 3.0
    return delta / math.sqrt(3.0) * np.column_stack([np.cos(angles), np.sin(angles)])


def gaussian_means_mixture(
    rng: np.random.Generator, n: int, k: int, d: int, mean_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Experiment 4: means with iid ``N(0, mean_scale**2)`` coordinates, displacements with
    iid ``N(0, 1)`` coordinates, a balanced assignment.

    Returns
    -------
    X : ndarray of shape (n, d)
    labels : ndarray of shape (n,)
    means : ndarray of shape (k, d)
    """
    means = mean_scale * rng.standard_normal((k, d))
    labels = balanced_labels(rng, n, k)
    return means[labels] + rng.standard_normal((n, d)), labels, means
