"""Passes of the Dask engine over persisted X and cost blocks submitted as the distributed
client's futures (``ballot.futures``): the same fit as through ``dask.compute``."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from dask_cases import CHUNKINGS, _dask, _data, _exact_params, _sinkhorn_params
from references import count_calls

from ballot_dask import BalancedKMeans


@pytest.mark.parametrize(
    ("method", "split_every"), [("exact", 8), ("exact", 2), ("sinkhorn", 8), ("sinkhorn", 2)]
)
def test_passes_over_persisted_x_run_as_futures_with_the_same_fit(
    cluster_client, monkeypatch, method, split_every
):
    """With a distributed client and X persisted, the passes over X (the exact step's) and
    over the persisted cost blocks (E-BalLOT's) are submitted as the client's futures
    (``ballot.futures``): the same fit, passes and rounds as through ``dask.compute``, and
    off with the setting.  ``split_every`` 2 combines the 7 chunks' parts on the workers in
    two levels (4, then 2) before the client's gather."""
    from ballot_dask import dask_blocks

    rounds = count_calls(monkeypatch, dask_blocks, "futures_round")
    Xd = _dask(_data(), CHUNKINGS["odd"])
    assert Xd.numblocks[0] == 7
    params = _exact_params() if method == "exact" else _sinkhorn_params("argmax")
    fits = {}
    with (
        cluster_client.as_current(),
        dask.config.set({"scheduler": cluster_client, "ballot.split-every": split_every}),
    ):
        for futures in (True, False):
            rounds.clear()
            with dask.config.set({"ballot.futures": futures}):
                km = BalancedKMeans(**params).fit(Xd)
            fits[futures] = (km, km.labels_.compute(), len(rounds))
    (on, on_labels, on_rounds), (off, off_labels, off_rounds) = fits[True], fits[False]
    if method == "exact":
        assert on_rounds >= on.n_iter_  # every Lloyd step's pass went through the futures
        assert on.certificate_.optimal and off.certificate_.optimal
    else:
        # every pass over the cost blocks but the labels' (persisted with them)
        assert on_rounds == on.n_passes_["cost"] - 1 >= 2 * on.n_iter_
    assert off_rounds == 0
    np.testing.assert_array_equal(on_labels, off_labels)
    np.testing.assert_array_equal(on.cluster_centers_, off.cluster_centers_)
    assert on.n_passes_ == off.n_passes_
