"""``ballot-dask predict --method balanced`` and ``--proba``, end to end: a Zarr store written by
``make-data``, a fit written by ``fit``, both read back by ``predict`` on the module's
LocalCluster; the reference is the Python API on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from ballot_dask import BalancedKMeans, balanced_assign
from ballot_dask.capacities import apportion
from ballot_dask.cli import cli

N, D, K, CHUNK = 3001, 2, 3, 700


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def address(cluster_client):
    return cluster_client.scheduler.address


@pytest.fixture(scope="module")
def stores(tmp_path_factory, address):
    """Points (``make-data``, N not a multiple of K) and a fit under size bounds whose sizes
    are unequal (``fit --size-min --size-max``)."""
    root = tmp_path_factory.mktemp("predict")
    data, fit = root / "data.zarr", root / "fit.zarr"
    result = run("make-data", data, "--n", N, "--d", D, "--k", K, "--chunks", CHUNK,
                 "--model", "gmm", "--seed", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run("fit", data, "--k", K, "-o", fit, "--size-min", "600,600,1200",
                 "--size-max", "900,900,1800", "--seed", "0", "--scheduler", address)  # fmt: skip
    assert result.exit_code == 0, result.output
    return data, fit


def _model(fit) -> BalancedKMeans:
    """The saved fit as an estimator, from its arrays."""
    group = zarr.open_group(fit, mode="r")
    km = BalancedKMeans(K)
    km.cluster_centers_ = group["centers"][:]
    km.potentials_ = group["potentials"][:]
    km.sizes_ = group["sizes"][:]
    km.n_features_in_ = D
    km.temperature_ = group.attrs["temperature"]
    return km


def test_balanced_equal_shares(stores, tmp_path, address):
    data, fit = stores
    out = tmp_path / "balanced.zarr"
    result = run("predict", fit, data, "-o", out, "--method", "balanced", "--scheduler", address)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: {N} labels (balanced, equal), sizes 1000..1001" in result.stdout
    written = zarr.open_group(out, mode="r")
    labels = written["labels"][:]
    assert written["labels"].chunks == (CHUNK,)
    assert sorted(np.bincount(labels, minlength=K).tolist()) == [1000, 1000, 1001]
    assert written["sizes"][:].tolist() == np.bincount(labels, minlength=K).tolist()
    assert written.attrs["method"] == "balanced" and written.attrs["proportions"] == "equal"
    assert "proba" not in written
    X = zarr.open_group(data, mode="r")["X"][:]
    reference = balanced_assign(X, zarr.open_group(fit, mode="r")["centers"][:])
    np.testing.assert_array_equal(labels, reference.labels)


def test_balanced_fitted_proportions(stores, tmp_path, address):
    data, fit = stores
    fitted = zarr.open_group(fit, mode="r")["sizes"][:]
    assert fitted.sum() == N and len(set(fitted.tolist())) > 1  # unequal fitted sizes
    out = tmp_path / "fitted.zarr"
    result = run("predict", fit, data, "-o", out, "--method", "balanced", "--proportions",
                 "fitted", "--scheduler", address)  # fmt: skip
    assert result.exit_code == 0, result.output
    written = zarr.open_group(out, mode="r")
    # the batch is the training data: the fitted proportions are the fitted sizes
    assert np.bincount(written["labels"][:], minlength=K).tolist() == fitted.tolist()
    assert apportion(fitted, N).tolist() == fitted.tolist()
    assert written["sizes"][:].tolist() == fitted.tolist()
    assert written.attrs["proportions"] == "fitted"


def test_balanced_on_a_small_batch(stores, tmp_path, address):
    data, fit = stores
    X = zarr.open_group(data, mode="r")["X"][:5]
    np.save(tmp_path / "five.npy", X)
    out = tmp_path / "five.zarr"
    result = run("predict", fit, tmp_path / "five.npy", "-o", out, "--method", "balanced",
                 "--proportions", "fitted", "--scheduler", address)  # fmt: skip
    assert result.exit_code == 0, result.output
    fitted = zarr.open_group(fit, mode="r")["sizes"][:]
    sizes = zarr.open_group(out, mode="r")["sizes"][:]
    assert sizes.tolist() == apportion(fitted, 5).tolist()


def test_proba_writes_the_memberships(stores, tmp_path, address):
    data, fit = stores
    out = tmp_path / "proba.zarr"
    result = run("predict", fit, data, "-o", out, "--proba", "--scheduler", address)
    assert result.exit_code == 0, result.output
    assert "memberships at temperature" in result.stdout
    written = zarr.open_group(out, mode="r")
    P = written["proba"][:]
    assert written["proba"].chunks == (CHUNK, K) and P.dtype == np.float64
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(P.argmax(axis=1), written["labels"][:])  # power labels
    km = _model(fit)
    assert written.attrs["temperature"] == km.temperature_ > 0
    X = zarr.open_group(data, mode="r")["X"][:]
    np.testing.assert_array_equal(P, km.predict_proba(X))

    hot = tmp_path / "hot.zarr"
    result = run("predict", fit, data, "-o", hot, "--proba", "--temperature", "1e3",
                 "--scheduler", address)  # fmt: skip
    assert result.exit_code == 0, result.output
    written = zarr.open_group(hot, mode="r")
    assert written.attrs["temperature"] == 1e3
    np.testing.assert_array_equal(written["proba"][:], km.predict_proba(X, temperature=1e3))


ERRORS = {
    "method": (["--method", "exact"], "--method must be one of power, nearest, balanced, got"),
    "proportions": (
        ["--method", "balanced", "--proportions", "Fitted"],
        "--proportions must be one of equal, fitted, got 'Fitted'",
    ),
    "proportions with power": (
        ["--proportions", "fitted"],
        "--proportions applies to --method balanced only, not power",
    ),
    "temperature without proba": (["--temperature", "1"], "--temperature applies to --proba"),
    "temperature": (["--proba", "--temperature", "0"], "temperature must be finite and > 0"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_and_write_nothing(case, stores, tmp_path, address):
    data, fit = stores
    args, message = ERRORS[case]
    result = run("predict", fit, data, "-o", tmp_path / "out.zarr", *args, "--scheduler", address)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
