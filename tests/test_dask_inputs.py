"""The Dask engine's input checks and settings: bad data, unknown chunks, the band memory
budget, and the ``ballot.*`` configuration (the schedulers are the fixtures of conftest.py)."""

from __future__ import annotations

import copy
import functools
import re
import traceback

import dask
import numpy as np
import pytest
from dask_cases import (
    D,
    K,
    N,
    _dask,
    _data,
    _exact_params,
    _init,
    _numpy_fit,
)

from ballot_dask import BalancedKMeans, balanced_assign
from ballot_dask import config as ballot_config

# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persist", ["auto", False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_reported_by_the_first_pass(scheduler, bad, persist):
    X = np.array(_data())
    X[4321, 1] = bad
    Xd = _dask(X, (997, D))
    with dask.config.set({"ballot.persist": persist}):
        km = BalancedKMeans(K, random_state=0)
        with pytest.raises(ValueError, match=r"NaN or infinity \(first at row 4321\)") as info:
            km.fit(Xd)
    # raised from inside the first pass over X, not by a pass of its own before it
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "prepare" in frames, frames
    assert not hasattr(km, "cluster_centers_")
    with pytest.raises(ValueError, match="NaN"):
        balanced_assign(Xd, _init())
    fitted = _numpy_fit()
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(Xd).compute()


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda Xd: Xd[:, 0], ValueError, "must be 2-D"),
        (lambda Xd: Xd[Xd[:, 0] > -100], ValueError, r"compute_chunk_sizes\(\)"),
        (lambda Xd: Xd.astype(np.complex128), TypeError, "real numbers"),
    ],
    ids=["1-D", "unknown-chunks", "complex"],
)
def test_invalid_dask_input(threads, make, exc, match):
    Xd = make(_dask(_data(), (997, D)))
    with pytest.raises(exc, match=match):
        BalancedKMeans(K).fit(Xd)
    with pytest.raises(exc, match=match):
        balanced_assign(Xd, _init()[:, :1] if Xd.ndim == 1 else _init())
    with pytest.raises(exc, match=match):
        _numpy_fit().predict(Xd)


def test_known_chunks_after_compute_chunk_sizes(threads):
    Xd = _dask(_data(), (997, D))
    kept = Xd[Xd[:, 0] > -100]
    kept.compute_chunk_sizes()
    km = BalancedKMeans(**_exact_params()).fit(kept)
    np.testing.assert_array_equal(km.labels_.compute(), _numpy_fit().labels_)


def test_integer_dask_data_becomes_float64(threads):
    X = np.round(_data()).astype(np.int32)
    km = BalancedKMeans(**_exact_params()).fit(_dask(X, (997, D)))
    ref = BalancedKMeans(**_exact_params()).fit(X.astype(np.float64))
    assert km.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)


def test_more_clusters_than_points(threads):
    Xd = _dask(_data()[:10], (4, D))
    with pytest.raises(ValueError, match="n_samples=10 should be >= n_clusters=11"):
        BalancedKMeans(11).fit(Xd)


def test_wrong_number_of_features(threads):
    km = BalancedKMeans(**_exact_params()).fit(_dask(_data(), (997, D)))
    wrong = _dask(np.zeros((50, D + 1)), (20, D + 1))
    for call in (km.predict, km.transform, km.score):
        with pytest.raises(ValueError, match=f"X has {D + 1} features.*expecting {D} features"):
            call(wrong)
    with pytest.raises(ValueError, match=f"X has {D + 1} features"):
        km.predict(np.zeros((50, D + 1)))
    with pytest.raises(ValueError, match="centers must have shape"):
        balanced_assign(_dask(_data(), (997, D)), _init()[:, :2])


@functools.cache
def _with_duplicates(m: int = 100, point: tuple[float, ...] | None = None) -> np.ndarray:
    """The data with its first ``m`` rows replaced by one point (the data's mean by default)."""
    X = np.array(_data())
    X[:m] = X.mean(axis=0) if point is None else point
    X.setflags(write=False)
    return X


def test_band_memory_budget(scheduler):
    # 100 identical points: outside the band they all take the same label (argmin of the same
    # reduced costs), so when the optimum splits them every point but one group of them must
    # be in the band; the 1 KiB budget holds 1024 // (8 * (k + d + 4)) = 9 rows at k = 5.
    X = _with_duplicates()
    data = _dask(X, (997, D))
    centers = _init()
    ok = balanced_assign(data, centers)  # the default budget: solved
    assert ok.certificate.optimal
    labels = np.asarray(ok.labels.compute())
    split = np.bincount(labels[:100], minlength=K)
    assert 100 - split.max() > 1024 // (8 * (K + D + 4)), split  # the band must exceed 1 KiB
    with (
        dask.config.set({"ballot.band-memory": "1 KiB"}),
        pytest.raises(
            RuntimeError, match=r"memory budget \(1\.00 kiB at k=5; it would need"
        ) as err,
    ):
        balanced_assign(data, centers)
    # the message names a setting, rounded up from what it would need: enough
    (setting,) = re.findall(r"'ballot\.band-memory': '(\d+ MiB)'", str(err.value))
    with dask.config.set({"ballot.band-memory": setting}):
        assert balanced_assign(data, centers).objective == pytest.approx(ok.objective, rel=1e-12)
    with (
        dask.config.set({"ballot.band-memory": "1 KiB"}),
        # refused before anything is gathered: the fit's row sample does not fit either
        pytest.raises(ValueError, match=r"initial sample needs 320 rows.*ballot\.band-memory"),
    ):
        BalancedKMeans(K, init=centers, max_iter=3).fit(data)


def test_every_gather_counts_against_the_budget(scheduler):
    X = np.random.default_rng(3).standard_normal((42_000, 2))
    data = _dask(X, (10_500, 2))
    # the fit's row sample: every row of X here (n <= 2 x init-sample), 672 kB; 300 kB of
    # budget cut it to the rows that fit, and the fit goes on (same sizes, certified)
    with dask.config.set({"ballot.band-memory": "300 kB"}):
        km = BalancedKMeans(3, random_state=0, max_iter=3).fit(data)
    assert km.certificate_.optimal
    np.testing.assert_array_equal(km.sizes_, [14_000] * 3)
    # method="emd" gathers the whole cost matrix: 42000 x 3 float64 = 1 MB
    with (
        dask.config.set({"ballot.band-memory": "300 kB"}),
        pytest.raises(ValueError, match=r"method='emd' gathers the whole 42000 x 3 cost matrix"),
    ):
        balanced_assign(data, X[:3], method="emd")


def test_in_memory_data_is_always_certified_whatever_the_band_budget():
    # in memory the band costs no transfer: ballot.band-memory (a Dask setting) does not apply
    X = _with_duplicates()
    centers = _init()
    with dask.config.set({"ballot.band-memory": "1 KiB"}):
        res = balanced_assign(X, centers)
        km = BalancedKMeans(K, init=centers, max_iter=3).fit(X)
    assert res.certificate.optimal and km.certificate_.optimal
    np.testing.assert_array_equal(res.sizes, balanced_assign(X, centers).sizes)


# Regression (not Dask-specific): on this problem the exact repair's band (2048 rows, 300 of
# them identical) made POT's network simplex cycle (numItermax reached, even at 10^7); the band
# solver now merges identical rows into one source carrying their number.
_CYCLING_POINT = (-0.12839357232384604, 4.967479309390483, 1.2808580282518645)


@pytest.mark.parametrize("engine", ["numpy", "dask"])
def test_duplicated_points_are_solved(threads, engine):
    X = _with_duplicates(300, _CYCLING_POINT)
    data = X if engine == "numpy" else _dask(X, (997, D))
    res = balanced_assign(data, _init())
    assert res.certificate.optimal
    np.testing.assert_array_equal(res.sizes, np.full(K, N // K))


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@pytest.fixture
def clean_config():
    """Restore dask's global configuration after a test that refreshes it from the
    environment."""
    saved = copy.deepcopy(dask.config.config)
    yield
    dask.config.config.clear()
    dask.config.config.update(saved)


def test_persist_from_the_environment(monkeypatch, clean_config):
    assert ballot_config.persist_mode() is None  # default "auto"
    monkeypatch.setenv("DASK_BALLOT__PERSIST", "false")
    monkeypatch.setenv("DASK_BALLOT__BAND_MEMORY", "300 MiB")
    dask.config.refresh()
    assert ballot_config.persist_mode() is False
    assert ballot_config.band_memory() == 300 * 2**20
    # the other defaults survive the refresh
    assert ballot_config.get("split-every") == 8
    with dask.config.set(scheduler="threads"):
        km = BalancedKMeans(**_exact_params()).fit(_dask(_data(), (997, D)))
    # streamed (see test_streaming_fit): the labels stay lazy, no pass for them
    assert km.n_passes_["x"] <= 1.3 * km.n_iter_ + 1
    monkeypatch.delenv("DASK_BALLOT__PERSIST")
    monkeypatch.delenv("DASK_BALLOT__BAND_MEMORY")
    dask.config.refresh()
    assert ballot_config.persist_mode() is None
    assert ballot_config.band_memory() == 512 * 2**20


@pytest.mark.parametrize(
    ("value", "mode"),
    [("auto", None), ("AUTO", None), (True, True), (False, False), ("true", True), ("no", False)],
)
def test_persist_values(value, mode):
    with dask.config.set({"ballot.persist": value}):
        assert ballot_config.persist_mode() is mode
    collected = dask.config.collect(paths=[], env={"DASK_BALLOT__PERSIST": str(value).lower()})
    with dask.config.set(collected):
        assert ballot_config.persist_mode() is mode


@pytest.mark.parametrize("value", ["sometimes", 2, None])
def test_invalid_persist_value(threads, value):
    with dask.config.set({"ballot.persist": value}):
        with pytest.raises(ValueError, match=r"ballot\.persist must be 'auto', true or false"):
            ballot_config.persist_mode()
        with pytest.raises(ValueError, match=r"ballot\.persist"):
            BalancedKMeans(K).fit(_dask(_data(), (997, D)))


@pytest.mark.parametrize("value", ["lots", "0 B", -5])
def test_invalid_band_memory_value(value):
    with (
        dask.config.set({"ballot.band-memory": value}),
        pytest.raises(ValueError, match=r"ballot\.band-memory"),
    ):
        ballot_config.band_memory()
