"""The pass under a grown allowance, refined in memory from the last pass's labels
(:mod:`ballot_dask.allowed_pass`): the same band and fixed-row summaries as the pass itself,
and the exact step that uses it reaches the transport optimum."""

from __future__ import annotations

import numpy as np
import pytest
from references import emd_optimum, reference_cost

from ballot_dask import resolve_capacities
from ballot_dask.allowed_pass import allowed_pass
from ballot_dask.blocks import RowBlocks
from ballot_dask.costs import screened_centers
from ballot_dask.exact_pass import exact_pass
from ballot_dask.solvers import SolverOptions, passes
from ballot_dask.solvers.exact import solve_exact


def _separated(n: int, k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separated clusters (means ``3 N(0, I)``, unit variance) and a start of random rows."""
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((k, d))
    X = means[np.arange(n) % k] + rng.standard_normal((n, d))
    return X, X[rng.choice(n, k, replace=False)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("k", "d", "width"), [(48, 8, 8), (160, 32, 32)])
def test_refined_pass_equals_the_pass_under_the_allowance(dtype, k, d, width) -> None:
    rng = np.random.default_rng(5)
    n, theta = 30_000, 0.4
    X, centers = _separated(n, k, d, 5)
    X = X.astype(dtype)
    v = 0.5 * rng.standard_normal(k)
    allowance = np.where(rng.random((k, k)) < 0.1, 20.0 * rng.random((k, k)), 0.0)
    np.fill_diagonal(allowance, 0.0)
    last = exact_pass(X, centers, v, theta, n, width=width, keep_labels=True)
    full = exact_pass(X, centers, v, theta, n, width=width, allowance=allowance, keep_labels=True)
    out = allowed_pass(X, centers, last, v, allowance, n, width)
    assert out is not None
    taken = full.rows.shape[0] - last.rows.shape[0]
    assert taken > 500  # the allowance takes rows in
    np.testing.assert_array_equal(out.rows, full.rows)
    np.testing.assert_array_equal(out.x, full.x)
    np.testing.assert_array_equal(out.labels, full.labels)
    np.testing.assert_array_equal(out.counts, full.counts)
    np.testing.assert_array_equal(out.mass, full.mass)
    np.testing.assert_allclose(out.sums, full.sums, rtol=1e-10, atol=1e-9)
    assert out.objective == pytest.approx(full.objective, rel=1e-12)
    assert out.candidates is not None and full.candidates is not None
    np.testing.assert_array_equal(out.candidates.columns, full.candidates.columns)
    np.testing.assert_allclose(out.candidates.costs, full.candidates.costs, rtol=1e-12)
    # the floor: the band row's least reduced cost beyond its candidates, less the row's
    # screening bound where the costs were screened (float32 products: BLAS may round a row's
    # products differently with its place in the slab, so the two passes' floors agree to
    # that bound, not to the last bit); without screening, the float64 costs' own
    sc = screened_centers(X, centers)
    band_x = out.x.astype(np.float64)
    reduced = np.sort(reference_cost(out.x, centers.astype(dtype)) - v, axis=1)
    beyond = reduced[:, width] if width < k else np.full(band_x.shape[0], np.inf)
    if sc.screened:
        z = np.linalg.norm(band_x - sc.mean, axis=1)
        bound = 2.0 * (d + 4) * 2.0**-24 * z * sc.norm + 8 * 2.0**-53 * (z + sc.norm) ** 2
    else:
        bound = np.zeros(band_x.shape[0])
    tiny = 1e-12 * float(reduced.max())
    for floor in (out.candidates.floor, full.candidates.floor):
        assert np.all(floor <= beyond + tiny)
        assert np.all(floor >= beyond - 2.0 * bound - tiny)
    np.testing.assert_array_less(
        np.abs(out.candidates.floor - full.candidates.floor), 2.0 * bound + tiny
    )
    assert sc.screened == (k * d >= 4096)  # both kinds are tested
    # the slack matrix: on the allowed pairs the fixed rows' own minimum in float64 (every
    # row of the label is read again; the pass's is less its float32 screening margin where
    # it screens), elsewhere the last pass's, a minimum over more rows (a lower bound)
    allowed = allowance > 0.0
    C = reference_cost(X, centers.astype(dtype))
    fixed = full.labels >= 0
    exact = np.full((k, k), np.inf)
    np.minimum.at(exact, full.labels[fixed], C[fixed] - C[fixed, full.labels[fixed]][:, None])
    scale = float(C.max())
    np.testing.assert_allclose(out.slack[allowed], exact[allowed], rtol=0, atol=1e-12 * scale)
    assert np.all(out.slack[allowed] >= full.slack[allowed] - 1e-12 * scale)
    np.testing.assert_array_equal(out.slack[~allowed], last.slack[~allowed])
    assert np.all(out.slack <= exact + 1e-12 * scale)
    assert np.count_nonzero(out.slack[~allowed] < full.slack[~allowed]) > 0
    # the histogram is the last pass's (top-two gaps)
    np.testing.assert_array_equal(out.hist, last.hist)
    # a band beyond the limit: the pass itself is made
    assert allowed_pass(X, centers, last, v, allowance, full.rows.shape[0] - 1, width) is None


def test_refined_pass_needs_the_last_pass_labels() -> None:
    X, centers = _separated(2_000, 8, 4, 0)
    v = np.zeros(8)
    last = exact_pass(X, centers, v, 0.5, 2_000, width=4)
    with pytest.raises(ValueError, match="kept its labels"):
        allowed_pass(X, centers, last, v, np.ones((8, 8)), 2_000, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_memory_step_refines_its_allowance_pass_to_the_optimum(dtype, monkeypatch) -> None:
    # k = 320 separated clusters from random rows, in memory: the first band fails, the
    # allowance's pass is refined from the first pass's labels, and the step is the exact
    # optimum (ot.emd), with the labels of the step that makes the pass over X
    n, k, d = 40_960, 320, 16
    X, start = _separated(n, k, d, 1)
    X = X.astype(dtype)
    refined: list[bool] = []
    real = passes.allowed_pass

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        refined.append(out is not None)
        return out

    monkeypatch.setattr(passes, "allowed_pass", counted)
    cap = resolve_capacities(n, k)
    blocks = RowBlocks(X)
    blocks.set_centers(start)
    step = solve_exact(blocks, cap, SolverOptions())
    assert any(refined)
    assert step.certificate is not None and step.certificate.optimal
    np.testing.assert_array_equal(step.sizes, cap.lower)
    C = reference_cost(X, np.asarray(blocks.centers, dtype=X.dtype))
    opt, _ = emd_optimum(C, np.asarray(step.sizes))
    assert step.objective == pytest.approx(opt, rel=1e-9)
    labels = blocks.labels(step.labeler)
    assert float(C[np.arange(n), labels].sum()) == pytest.approx(opt, rel=1e-9)
    # the same step with every pass made over X
    monkeypatch.setattr(passes, "_REFINED_SHARE", -1.0)
    refined.clear()
    plain_blocks = RowBlocks(X)
    plain_blocks.set_centers(start)
    plain = solve_exact(plain_blocks, cap, SolverOptions())
    assert not any(refined)
    np.testing.assert_array_equal(plain_blocks.labels(plain.labeler), labels)
    assert plain.objective == pytest.approx(step.objective, rel=1e-12)
