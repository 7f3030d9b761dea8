"""The row sample balanced at its sizes at the previous step's optimum
(:mod:`ballot_dask.solvers.referenced`): a warm step takes the sample's potentials at those
sizes where they misplace fewer of X's points than the warm ones, and the labels are the
same exact optimum with or without them."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from references import count_calls

from ballot_dask import BalancedKMeans, resolve_capacities
from ballot_dask.capacities import Capacities
from ballot_dask.costs import cost_block
from ballot_dask.solvers import exact, referenced
from ballot_dask.solvers.search import imbalance

N, D, K = 400_000, 8, 16


@pytest.fixture(scope="module")
def overlapping():
    """A mixture of unit gaussians whose means are about 4 apart (neighbours overlap): the
    balanced cells move from one Lloyd step to the next, and so do the potentials."""
    rng = np.random.default_rng(11)
    means = rng.normal(scale=4.0 / np.sqrt(2.0 * D), size=(K, D))
    component = rng.integers(K, size=N)
    return (means[component] + rng.standard_normal((N, D))).astype(np.float32)


def _fit(X):
    # a sample of about 16 000 rows: X has 24 times as many, so warm steps consult it
    with dask.config.set({"ballot.init-sample": 16384}):
        return BalancedKMeans(K, random_state=0, max_iter=12, tol=0.0).fit(X)


def _misplaced(X: np.ndarray, centers: np.ndarray, v: np.ndarray) -> int:
    labels = np.argmin(cost_block(X, centers).astype(np.float64) - v[None, :], axis=1)
    return imbalance(np.bincount(labels, minlength=K), resolve_capacities(N, K))


def test_warm_steps_take_the_samples_potentials_at_its_last_sizes(overlapping, monkeypatch):
    taken: list = []
    real = exact.from_reference
    errors = count_calls(monkeypatch, referenced, "referenced_error")

    def recorded(search, blocks, held, off, labels):
        before = search.potentials.copy()
        out = real(search, blocks, held, off, labels)
        if out is not None:
            rows = blocks.sample().shape[0]
            step = (blocks.centers.copy(), before, search.potentials.copy(), held, rows)
            taken.append((*step, off, errors[-1]))
        return out

    monkeypatch.setattr(exact, "from_reference", recorded)
    model = _fit(overlapping)
    assert len(taken) >= 3, len(taken)
    far = 0
    misplaced = np.zeros(2)
    for centers, before, after, held, rows, off, expected in taken:
        # equal sizes: the bounds are the sample's rows per cluster, exactly
        np.testing.assert_array_equal(held.lower, held.upper)
        assert held.lower.sum() == rows and N >= 20 * rows
        warm = _misplaced(overlapping, centers, before)
        ours = _misplaced(overlapping, centers, after)
        misplaced += warm, ours
        if off > 2 * expected:
            # the sample sees the warm potentials far off: the ones taken misplace fewer of
            # X's points (where the two are near, the sample cannot always tell which is
            # better: either serves, the band is cut for what they misplace)
            far += 1
            assert ours < warm, (off, expected, warm, ours)
    assert far >= 1
    # in all, the potentials taken misplace two fifths of what the warm ones did here
    # (potentials far off go to the sample at the capacities scaled, as before: see
    # :func:`ballot_dask.solvers.exact._warm_off`)
    assert misplaced[1] < 0.6 * misplaced[0], misplaced

    monkeypatch.setattr(exact, "from_reference", real)
    monkeypatch.setattr(referenced, "take_referenced", lambda off, expected: False)
    plain = _fit(overlapping)
    for fit in (model, plain):
        assert fit.certificate_.optimal
        np.testing.assert_array_equal(fit.sizes_, np.full(K, N // K))
    np.testing.assert_array_equal(model.labels_, plain.labels_)
    np.testing.assert_allclose(model.cluster_centers_, plain.cluster_centers_, rtol=0, atol=1e-9)
    assert model.n_iter_ == plain.n_iter_ == 12


def test_reference_bounds_keep_each_clusters_room_scaled_to_the_sample():
    # X's sizes at the optimum 100, 300, 600 of 1000 rows; the sample held 10, 30, 60 of them.
    # The capacities leave each cluster 50 rows of room either way: 5 in the sample's scale
    capacities = Capacities(np.array([50, 250, 550]), np.array([150, 350, 650]))
    sizes = np.array([100, 300, 600])
    bounds = referenced.reference_bounds(np.array([10, 30, 60]), sizes, capacities, 1000)
    assert bounds is not None
    np.testing.assert_array_equal(bounds.lower, [5, 25, 55])
    np.testing.assert_array_equal(bounds.upper, [15, 35, 65])
    # equal sizes: the sample's own counts, exactly
    equal = Capacities(sizes, sizes)
    bounds = referenced.reference_bounds(np.array([12, 29, 59]), sizes, equal, 1000)
    assert bounds is not None
    np.testing.assert_array_equal(bounds.lower, [12, 29, 59])
    np.testing.assert_array_equal(bounds.upper, [12, 29, 59])


def test_the_referenced_error_grows_with_the_rows_relabelled():
    # (n / s) sqrt(2 k m) times the fitted factor: none relabelled, none misplaced
    assert referenced.referenced_error(10**6, 16, 50_000, 0) == 0.0
    one = referenced.referenced_error(10**6, 16, 50_000, 100)
    assert referenced.referenced_error(10**6, 16, 50_000, 400) == pytest.approx(2 * one)
    assert one == pytest.approx(referenced._ERROR * 20 * np.sqrt(3200))
    assert referenced.take_referenced(2 * one, one) and not referenced.take_referenced(one, 2 * one)


def test_calm_warm_steps_make_their_first_pass_without_the_pair_histogram(overlapping, monkeypatch):
    """On Dask chunks (a pass dear, k small) a pass counts the pair histogram, unless the
    row sample expects the step's potentials to misplace far fewer points than a shift by
    it needs: then the step's first pass counts none.  (Nor does a pass under an allowance:
    its band failed for want of rows far from the boundary, not for potentials far off.)
    The fit is the same exact optimum as with the histogram in every other pass."""
    import dask.array as da

    Xd = da.from_array(overlapping, chunks=(100_000, D))
    scales: list[float] = []
    allowed: list[float] = []
    real = exact._pass_kernel

    def recorded(X, centers, v, theta, cap, total, strict, width, pair_scale, *rest, **kw):
        if total == N:  # a chunk of X's (not the row sample's own steps)
            allowance = rest[0]
            if allowance is None:
                scales.append(pair_scale)
            else:  # (a pass under an allowance: never a histogram)
                assert pair_scale == 0.0
                allowed.append(pair_scale)
        return real(X, centers, v, theta, cap, total, strict, width, pair_scale, *rest, **kw)

    monkeypatch.setattr(exact, "_pass_kernel", recorded)
    default, never = exact._CALM, 1e12  # never: no step is calm
    fits, without = {}, {}
    for calm in (default, never):
        monkeypatch.setattr(exact, "_CALM", calm)
        scales.clear()
        with dask.config.set(scheduler="threads"):
            fits[calm] = _fit(Xd)
        assert len(scales) % Xd.numblocks[0] == 0 and len(allowed) % Xd.numblocks[0] == 0
        without[calm] = sum(scale == 0.0 for scale in scales) // Xd.numblocks[0]
    # every pass over X without an allowance counts the histogram unless its step is calm;
    # most of the 11 warm steps are (measured: 10)
    assert without[never] == 0 and without[default] >= 8, without
    for fit in fits.values():
        assert fit.certificate_.optimal
    np.testing.assert_array_equal(fits[default].labels_.compute(), fits[never].labels_.compute())
    np.testing.assert_allclose(
        fits[default].cluster_centers_, fits[never].cluster_centers_, rtol=0, atol=1e-9
    )
