"""Random fits: any data, sizes and method give the requested sizes and a proof of optimality.

Heavier than the default suite: run with ``pytest -m slow``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballot_dask import BalancedKMeans

pytestmark = pytest.mark.slow


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, int, dict]:
    """Data with ties, duplicates, extreme scales or float32, and a size request."""
    n = draw(st.integers(2, 4000))
    k = draw(st.integers(1, min(n, 24)))
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["gaussian", "grid", "duplicates", "float32"]))
    scale = 10.0 ** draw(st.integers(-4, 4))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale
    if kind == "grid":
        X = np.round(X / scale) * scale
    elif kind == "duplicates":
        X = X[np.arange(n) % max(1, n // 4)]  # each point about four times
    elif kind == "float32":
        X = X.astype(np.float32)
    request = draw(st.sampled_from(["equal", "sizes", "range"]))
    params: dict = {}
    if request == "sizes":
        weights = rng.random(k) + 0.1
        sizes = np.floor(weights / weights.sum() * n).astype(int)
        sizes[0] += n - sizes.sum()
        params["sizes"] = sizes
    elif request == "range":
        params["size_min"] = n // (2 * k)
        params["size_max"] = -(-2 * n // k)
    params["method"] = draw(st.sampled_from(["exact", "exact", "sinkhorn"]))
    params["random_state"] = seed % 1000
    return X, k, params


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(problem=problems())
def test_random_fit_meets_sizes_with_a_certificate(problem) -> None:
    X, k, params = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sinkhorn caps, numpy underflow at tiny scales
        km = BalancedKMeans(k, rounding="exact", max_iter=15, **params).fit(X)
    sizes = np.bincount(km.labels_, minlength=k)
    if "sizes" in params:
        np.testing.assert_array_equal(sizes, params["sizes"])
    elif "size_min" in params:
        assert sizes.min() >= params["size_min"] and sizes.max() <= params["size_max"]
    else:
        assert sizes.max() - sizes.min() <= 1
    assert km.certificate_ is not None and km.certificate_.optimal
    assert np.isfinite(km.inertia_) and np.all(np.isfinite(km.cluster_centers_))
