"""Shared data for the per-block kernel tests (:mod:`test_kernels`, :mod:`test_exact_pass`)."""

from __future__ import annotations

import numpy as np

DTYPES = [np.float32, np.float64]
# float32 cost blocks are rounded to ~6e-8 relative before any float64 accumulation
RTOL = {np.float32: 1e-5, np.float64: 1e-11}


def random_problem(seed: int, m: int, k: int, d: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows of ``d`` gaussian features (scale 2, in ``dtype``) and ``k`` float64 centers."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((m, d)) * 2.0).astype(dtype)
    centers = rng.standard_normal((k, d)) * 2.0
    return X, centers


def random_potentials(seed: int, k: int) -> np.ndarray:
    """``k`` standard normal potentials."""
    return np.random.default_rng(seed + 1000).standard_normal(k)
