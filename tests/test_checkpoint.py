"""Checkpoints: the Lloyd state after every iteration, and fits resumed from it."""

from __future__ import annotations

import numpy as np
import pytest
from references import count_calls

from ballot_dask import BalancedKMeans, lloyd
from ballot_dask.checkpoint import checkpoint_path, load_state, save_state
from ballot_dask.lloyd import LloydState
from ballot_dask.solvers import sinkhorn


def _mixture(n=3000, k=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.standard_normal((k, d))
    return means[np.arange(n) % k] + rng.standard_normal((n, d))


def _states(params, X):
    states: list[LloydState] = []
    km = BalancedKMeans(**params).fit(X, callback=states.append)
    return km, states


@pytest.mark.parametrize(
    "params",
    [
        {"n_clusters": 5, "random_state": 0, "tol": 0},
        {"n_clusters": 5, "random_state": 1, "method": "sinkhorn", "reg": 0.05, "max_iter": 8},
        {"n_clusters": 4, "random_state": 2, "sizes": [600, 700, 800, 900], "max_iter": 6},
    ],
    ids=["exact", "sinkhorn", "sizes"],
)
def test_a_resumed_fit_takes_the_same_steps(params, tmp_path):
    X = _mixture()
    km, states = _states(params, X)
    assert len(states) == km.n_iter_ and [s.iteration for s in states] == list(
        range(1, km.n_iter_ + 1)
    )
    assert states[-1].objective_history == km.objective_history_
    for state in {states[0].iteration: states[0], states[len(states) // 2].iteration:
                  states[len(states) // 2], states[-1].iteration: states[-1]}.values():  # fmt: skip
        path = tmp_path / "fit.checkpoint.npz"
        save_state(path, state, {"k": params["n_clusters"]})
        loaded = load_state(path, {"k": params["n_clusters"]})
        later: list[LloydState] = []
        resumed = BalancedKMeans(**params).fit(X, callback=later.append, resume=loaded)
        np.testing.assert_array_equal(resumed.labels_, km.labels_)
        np.testing.assert_array_equal(resumed.cluster_centers_, km.cluster_centers_)
        np.testing.assert_array_equal(resumed.potentials_, km.potentials_)
        assert resumed.n_iter_ == km.n_iter_ and resumed.converged_ == km.converged_
        assert resumed.objective_history_ == km.objective_history_
        assert [s.iteration for s in later] == list(range(state.iteration + 1, km.n_iter_ + 1))


def test_save_and_load_round_trip(tmp_path):
    state = LloydState(
        iteration=7,
        centers=np.random.default_rng(0).random((3, 2)),
        previous=np.random.default_rng(1).random((3, 2)),
        potentials=np.array([0.5, -0.25, 1e-17]),
        eps=None,
        objective_history=[3.0, 2.0, 1.0 + 1e-15],
        converged=False,
        shift=0.125,
        band_size=np.int64(2048),
        short_steps=1,
        passes={"x": 3, "cost": 9, "rounds": 10},
        sinkhorn_tol=1e-4,
        reference=np.array([10.5, 20.25, 1e-300]),
        sample_curvature=False,
    )
    path = checkpoint_path(tmp_path / "out.zarr")
    assert path.name == "out.zarr.checkpoint.npz"
    params = {"n_clusters": 3, "sizes": (1, 2), "max_iter": 10}
    save_state(path, state, params)
    save_state(path, state, params)  # replaced in place, no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr.checkpoint.npz"]
    loaded = load_state(path, {**params, "max_iter": 50})  # max_iter may change
    for name in ("centers", "previous", "potentials"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(state, name))
    assert loaded.objective_history == state.objective_history
    assert (loaded.iteration, loaded.eps, loaded.band_size, loaded.passes) == (
        7,
        None,
        2048,
        state.passes,
    )
    assert loaded.sinkhorn_tol == 1e-4 and loaded.sample_curvature is False
    np.testing.assert_array_equal(loaded.reference, state.reference)


def test_a_resumed_e_ballot_fit_keeps_its_tightened_tolerance(tmp_path, monkeypatch):
    # separated clusters: the steps solve to a tenth of sinkhorn_tol after the objective rose
    # (see lloyd._TIGHTER); a fit resumed after that solves to it too, from the row sample's
    # targets at the last plan, and takes the same steps
    rng = np.random.default_rng(0)
    means = 6.0 * rng.standard_normal((32, 16))
    X = means[rng.integers(0, 32, 30_000)] + rng.standard_normal((30_000, 16))
    params = {"n_clusters": 32, "random_state": 0, "method": "sinkhorn", "reg": 1e-2}
    km, states = _states(params, X)
    tightened = next(s for s in states if s.sinkhorn_tol is not None)
    assert tightened.sinkhorn_tol < 1e-3
    assert tightened.iteration < km.n_iter_ and km.converged_
    path = tmp_path / "fit.checkpoint.npz"
    save_state(path, tightened, {"k": 32})
    loaded = load_state(path, {"k": 32})
    assert loaded.sinkhorn_tol == tightened.sinkhorn_tol
    assert loaded.sample_curvature == tightened.sample_curvature
    np.testing.assert_array_equal(loaded.reference, tightened.reference)
    later: list[LloydState] = []
    # the row sample's curvature misled a step before (the fit's first): the resumed steps
    # do not ask for it either
    assert not loaded.sample_curvature
    built = count_calls(monkeypatch, sinkhorn, "SampleCurvature")
    resumed = BalancedKMeans(**params).fit(X, callback=later.append, resume=loaded)
    assert built == [] and not any(s.sample_curvature for s in later)
    monkeypatch.undo()
    assert [s.sinkhorn_tol for s in later] == [
        s.sinkhorn_tol for s in states[len(states) - len(later) :]
    ]
    np.testing.assert_array_equal(resumed.labels_, km.labels_)
    np.testing.assert_array_equal(resumed.cluster_centers_, km.cluster_centers_)
    assert resumed.objective_history_ == km.objective_history_
    # a resume that asks for a tighter tolerance than the state's solves to it (or tighter),
    # one that asks for a looser one to the state's: the tolerances its steps were given
    solve, solved = lloyd.SOLVERS["sinkhorn"], []

    def spy(blocks, capacities, options, *args):
        solved.append(options.sinkhorn_tol)
        return solve(blocks, capacities, options, *args)

    monkeypatch.setitem(lloyd.SOLVERS, "sinkhorn", spy)
    BalancedKMeans(**params, sinkhorn_tol=1e-6).fit(X, resume=loaded)
    assert solved[0] == 1e-6 and max(solved) == 1e-6
    solved.clear()
    BalancedKMeans(**params, sinkhorn_tol=1e-2).fit(X, resume=loaded)
    assert solved[0] == tightened.sinkhorn_tol and max(solved) == tightened.sinkhorn_tol
    monkeypatch.undo()
    # without the sample's targets (a checkpoint written before they were kept) the resumed
    # steps start elsewhere and end on other plans within the tolerance
    loaded.reference = None
    other = BalancedKMeans(**params).fit(X, resume=loaded)
    assert other.objective_history_ != km.objective_history_


def test_load_refuses_other_arguments_and_broken_files(tmp_path):
    state = LloydState(1, np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2), 0.1, [1.0], False)
    path = tmp_path / "c.npz"
    save_state(path, state, {"n_clusters": 2, "method": "exact"})
    with pytest.raises(ValueError, match=r"other arguments \(method: 'exact' then, 'sinkhorn'"):
        load_state(path, {"n_clusters": 2, "method": "sinkhorn"})
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"unreadable .* remove it to start the fit again"):
        load_state(path, {})


def test_resume_with_a_state_of_another_shape_is_refused():
    X = _mixture(n=300)
    _, states = _states({"n_clusters": 5, "random_state": 0, "max_iter": 2}, X)
    with pytest.raises(ValueError, match=r"resume: the state's centers have shape \(5, 3\)"):
        BalancedKMeans(4).fit(X, resume=states[-1])
    with pytest.raises(TypeError, match="resume must be a LloydState"):
        BalancedKMeans(5).fit(X, resume={"centers": 1})
