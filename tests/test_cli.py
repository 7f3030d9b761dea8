"""The ``ballot-dask`` command line, end to end: real Zarr stores on disk, a real LocalCluster
(the module's, through ``--scheduler``, or an embedded one started by the command), POT as
the reference of the last assignment step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from ballot_dask import BalancedKMeans
from ballot_dask.checkpoint import checkpoint_path
from ballot_dask.cli import cli

N, D, K, CHUNK = 6000, 3, 4, 1700


@pytest.fixture(scope="module")
def address(cluster_client):
    return cluster_client.scheduler.address


@pytest.fixture(scope="module")
def data(tmp_path_factory, address):
    """A stochastic ball dataset written by ``make-data``."""
    root = tmp_path_factory.mktemp("cli")
    result = run(
        "make-data", root / "data.zarr", "--n", N, "--d", D, "--k", K, "--chunks", CHUNK,
        "--model", "gmm", "--delta", "2.5", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "data.zarr"


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def listing(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def fit_args(data, out, address, *extra):
    return ("fit", data, "--k", K, "--output", out, "--scheduler", address, *extra)


# --------------------------------------------------------------------------------------------
# make-data, fit, predict
# --------------------------------------------------------------------------------------------


def test_make_data_writes_a_balanced_chunked_group(data):
    group = zarr.open_group(data, mode="r")
    X, truth = group["X"], group["labels_true"]
    assert X.shape == (N, D) and X.chunks == (CHUNK, D) and X.dtype == np.float64
    assert truth.chunks == (CHUNK,)
    assert np.bincount(truth[:]).tolist() == [N // K] * K
    assert group["centers"].shape == (K, D)
    assert group.attrs["model"] == "gmm" and group.attrs["delta"] == 2.5
    assert np.isfinite(X[:]).all()


def test_fit_then_predict(data, tmp_path, address, cluster_client):
    out = tmp_path / "fit.zarr"
    result = run(*fit_args(data, out, address, "--seed", "1", "--tol", "0"))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    assert listing(tmp_path) == {"fit.zarr"}  # no checkpoint, no temporary left

    group = zarr.open_group(out, mode="r")
    labels, centers = group["labels"][:], group["centers"][:]
    assert group["labels"].chunks == (CHUNK,)  # the input's row chunks
    assert np.bincount(labels, minlength=K).tolist() == [N // K] * K
    assert group["sizes"][:].tolist() == [N // K] * K
    attrs = dict(group.attrs)
    assert attrs["certificate"]["optimal"] is True
    assert attrs["params"]["n_clusters"] == K and attrs["params"]["tol"] == 0
    assert attrs["versions"]["ballot-dask"]
    history = np.asarray(attrs["objective_history"])
    assert (np.diff(history) <= 1e-12 * history[0]).all()  # Theorem 17, up to rounding

    # the objective is the one of the written labels and centers, and the LP optimum of the
    # last assignment step (POT's network simplex on the same costs)
    ot = pytest.importorskip("ot")
    X = zarr.open_group(data, mode="r")["X"][:]
    C = ((X[:, None, :] - centers[None]) ** 2).sum(axis=2)
    ours = C[np.arange(N), labels].sum()
    assert ours == pytest.approx(attrs["inertia"], rel=1e-10)
    plan = ot.emd(np.ones(N), np.full(K, N / K), C)
    assert ours == pytest.approx(float((plan * C).sum()), rel=1e-9)

    # the same fit through the Python API, on the same cluster
    with dask.config.set(scheduler=cluster_client):
        km = BalancedKMeans(K, random_state=1, tol=0).fit(da.from_zarr(data, component="X"))
        np.testing.assert_array_equal(labels, km.labels_.compute())
    np.testing.assert_allclose(centers, km.cluster_centers_, rtol=0, atol=1e-10)

    pred = tmp_path / "pred.zarr"
    result = run("predict", out, data, "--output", pred, "--scheduler", address)
    assert result.exit_code == 0, result.output
    written = zarr.open_group(pred, mode="r")
    # the fitted power diagram gives the fitted labels, except where two of its cells tie
    # (a point on their boundary, which the LP split to meet the sizes)
    predicted, v = written["labels"][:], group["potentials"][:]
    reduced = C - v
    differ = np.flatnonzero(predicted != labels)
    assert differ.size <= 3
    tied = reduced[differ, predicted[differ]] - reduced[differ, labels[differ]]
    np.testing.assert_allclose(tied, 0.0, atol=1e-9 * np.abs(C).max())
    assert written["sizes"][:].tolist() == np.bincount(predicted, minlength=K).tolist()
    assert written.attrs["method"] == "power"

    nearest = tmp_path / "nearest.zarr"
    result = run("predict", out, data, "-o", nearest, "--method", "nearest", "--scheduler",
                 address)  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = np.argmin(C, axis=1)
    np.testing.assert_array_equal(zarr.open_group(nearest, mode="r")["labels"][:], expected)


def test_fit_npy_input_with_sizes_and_sinkhorn(data, tmp_path, address):
    X = zarr.open_group(data, mode="r")["X"][:]
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    sizes = [1000, 1500, 1500, 2000]
    out = tmp_path / "sized.zarr"
    result = run(*fit_args(tmp_path / "x.npy", out, address, "--sizes", ",".join(map(str, sizes))))
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    assert np.bincount(group["labels"][:], minlength=K).tolist() == sizes
    assert group["centers"].dtype == np.float32

    out = tmp_path / "sinkhorn.zarr"
    sinkhorn = ("--method", "sinkhorn", "--rounding", "exact", "--reg", "0.1", "--max-iter", "3")
    result = run(*fit_args(data, out, address, *sinkhorn))
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    assert np.bincount(group["labels"][:], minlength=K).tolist() == [N // K] * K
    assert group.attrs["params"]["method"] == "sinkhorn"

    out = tmp_path / "bounded.zarr"
    result = run(*fit_args(data, out, address, "--size-min", "1400", "--size-max", "1600"))
    assert result.exit_code == 0, result.output
    counts = np.bincount(zarr.open_group(out, mode="r")["labels"][:], minlength=K)
    assert counts.min() >= 1400 and counts.max() <= 1600 and counts.sum() == N


def test_fit_and_predict_a_sparse_npz_input(tmp_path, address):
    """A ``scipy.sparse.save_npz`` file: chunks of CSR rows, never densified; the fit is the
    estimator's on the same matrix (labels, centers), the prediction the fitted labels."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(4)
    A = scipy_sparse.random(2400, 60, density=0.05, format="csr", random_state=rng)
    A = A.astype(np.float32)
    scipy_sparse.save_npz(tmp_path / "tfidf.npz", A)
    out = tmp_path / "fit.zarr"
    result = run(*fit_args(tmp_path / "tfidf.npz", out, address, "--seed", "7"))
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    labels = group["labels"][:]
    assert np.bincount(labels, minlength=K).tolist() == [2400 // K] * K
    assert group.attrs["certificate"]["optimal"]
    reference = BalancedKMeans(K, random_state=7).fit(A)
    np.testing.assert_array_equal(labels, reference.labels_)
    np.testing.assert_allclose(group["centers"][:], reference.cluster_centers_, rtol=0, atol=1e-6)

    predicted = tmp_path / "predicted.zarr"
    result = run("predict", out, tmp_path / "tfidf.npz", "-o", predicted, "--scheduler", address)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        zarr.open_group(predicted, mode="r")["labels"][:], reference.predict(A)
    )


def test_overwrite_replaces_and_resume_of_a_complete_fit_does_nothing(data, tmp_path, address):
    out = tmp_path / "fit.zarr"
    assert run(*fit_args(data, out, address)).exit_code == 0
    before = zarr.open_group(out, mode="r")["labels"][:]
    result = run(*fit_args(data, out, address, "--resume"))
    assert result.exit_code == 0 and "complete; nothing to resume" in result.stdout
    result = run(*fit_args(data, out, address, "--seed", "5", "--overwrite", "--quiet"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert zarr.open_group(out, mode="r").attrs["params"]["seed"] == 5
    assert zarr.open_group(out, mode="r")["labels"].shape == before.shape
    assert listing(tmp_path) == {"fit.zarr"}


def test_log_lines_when_not_a_terminal(data, tmp_path, address):
    result = run(*fit_args(data, tmp_path / "fit.zarr", address, "--max-iter", "3"))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if " INFO iteration " in line]
    assert [line.split(" INFO ")[1].split(":")[0] for line in lines] == [
        "iteration 1",
        "iteration 2",
        "iteration 3",
    ]


# --------------------------------------------------------------------------------------------
# errors: one line on stderr, exit status 1, nothing written
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    X = np.random.default_rng(0).random((500, 3))
    X[317, 2] = np.nan
    zarr.open_group(root / "nan.zarr", mode="w").create_array("X", data=X, chunks=(200, 3))
    np.save(root / "flat.npy", np.ones(10))
    (root / "text.npy").write_text("not an array")
    zarr.open_group(root / "nox.zarr", mode="w").create_array("Y", data=np.ones((4, 2)))
    np.save(root / "small.npy", np.ones((5, 2)))
    np.savez(root / "dense.npz", X=np.ones((5, 2)))
    (root / "text.npz").write_text("not an archive")
    return root


ERRORS = {
    "missing": (["fit", "{root}/missing.zarr", "--k", "2"], "no such file or Zarr store"),
    "unreadable": (["fit", "{root}/text.npy", "--k", "2"], "not a readable .npy file"),
    "not a store": (["fit", "{root}", "--k", "2"], "not a readable Zarr array or group"),
    "1-D": (["fit", "{root}/flat.npy", "--k", "2"], "expected a 2-D array"),
    "dense npz": (["fit", "{root}/dense.npz", "--k", "2"], "scipy.sparse.save_npz"),
    "text npz": (["fit", "{root}/text.npz", "--k", "2"], "not a sparse matrix saved by"),
    "no X": (["fit", "{root}/nox.zarr", "--k", "2"], "has no array 'X' (its arrays: Y)"),
    "nan": (["fit", "{root}/nan.zarr", "--k", "2"], "NaN or infinity (first at row 317)"),
    "k > n": (["fit", "{root}/small.npy", "--k", "6"], "--k (6) must be at most"),
    "sizes": (["fit", "{root}/small.npy", "--k", "2", "--sizes", "1,2"], "infeasible sizes"),
    "bounds": (["fit", "{root}/small.npy", "--k", "2", "--size-max", "2"], "infeasible sizes"),
    "bad sizes": (["fit", "{root}/small.npy", "--k", "2", "--sizes", "a,b"], "--sizes must be"),
    "init": (["fit", "{root}/small.npy", "--k", "2", "--init", "best"], "--init must be one"),
    "slurm": (["fit", "{root}/small.npy", "--k", "2", "--cluster", "slurm"], "one or the other"),
    "both": (["fit", "{root}/small.npy", "--k", "2", "--resume", "--overwrite"], "not both"),
    "memory": (
        ["fit", "{root}/small.npy", "--k", "2", "--memory-limit", "lots", "--scheduler", ""],
        "--memory-limit must be a size",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_and_write_nothing(case, bad_inputs, tmp_path, address):
    args, message = ERRORS[case]
    args = [a.format(root=bad_inputs) for a in args]
    if "--scheduler" not in args:
        args += ["--scheduler", address]
    args = [a for a in args if a != ""]
    if case == "memory":
        args.remove("--scheduler")
    before = listing(bad_inputs)
    result = run(*args, "--output", tmp_path / "out.zarr")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output
    assert listing(tmp_path) == set()
    assert listing(bad_inputs) == before


def test_existing_output_is_refused(data, tmp_path, address):
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "keep").write_text("mine")
    result = run(*fit_args(data, out, address))
    assert result.exit_code == 1
    assert result.stderr == f"error: output {out} exists; pass --overwrite to replace it\n"
    assert listing(out) == {"keep"}
    result = run("make-data", out, "--n", 10, "--d", 2, "--k", 2)
    assert result.exit_code == 1 and "pass --overwrite" in result.stderr
    assert listing(out) == {"keep"} and listing(tmp_path) == {"out.zarr"}


def test_predict_errors(data, tmp_path, address, bad_inputs):
    out = tmp_path / "fit.zarr"
    assert run(*fit_args(data, out, address)).exit_code == 0
    result = run("predict", out, bad_inputs / "small.npy", "-o", tmp_path / "p.zarr",
                 "--scheduler", address)  # fmt: skip
    assert result.exit_code == 1
    assert "has 2 features, the model" in result.stderr and result.stderr.count("\n") == 1
    result = run("predict", data, data, "-o", tmp_path / "p.zarr", "--scheduler", address)
    assert result.exit_code == 1 and "not the output of 'ballot-dask fit'" in result.stderr
    assert listing(tmp_path) == {"fit.zarr"}


def test_debug_shows_the_traceback(bad_inputs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        run("fit", bad_inputs / "missing.zarr", "--k", 2, "-o", tmp_path / "o.zarr", "--debug")


def test_defaults_come_from_dask_config(data, tmp_path):
    """``ballot.cluster.scheduler-address`` is used when no option names a scheduler (here an
    unreachable one, which fails fast with one line)."""
    with dask.config.set(
        {
            "ballot.cluster.scheduler-address": "tcp://127.0.0.1:9",
            "distributed.comm.timeouts.connect": "1s",
        }
    ):
        result = run(*("fit", data, "--k", K, "-o", tmp_path / "o.zarr"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert listing(tmp_path) == set()


# --------------------------------------------------------------------------------------------
# checkpoints: kill a real fit with SIGKILL, resume it
# --------------------------------------------------------------------------------------------


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "ballot_dask.cli", *map(str, args)]


def _checkpoint_iteration(path: Path) -> int | None:
    try:
        with np.load(path) as saved:
            return json.loads(bytes(saved["record"]).decode())["iteration"]
    except (OSError, ValueError, KeyError, EOFError):
        return None


def test_kill_and_resume_reaches_the_uninterrupted_fit(tmp_path):
    data = tmp_path / "data.zarr"
    subprocess.run(_cli("make-data", data, "--n", 400_000, "--d", 2, "--k", 8, "--model", "gmm",
                        "--chunks", 100_000, "--seed", 1), check=True)  # fmt: skip
    common = ("--k", 8, "--tol", 0, "--seed", 2, "--n-workers", 1, "--quiet")
    full = tmp_path / "full.zarr"
    subprocess.run(_cli("fit", data, "-o", full, *common), check=True)
    reference = zarr.open_group(full, mode="r")
    n_iter = reference.attrs["n_iter"]
    assert n_iter >= 8, "the fit must run long enough to be killed in its middle"

    out = tmp_path / "resumed.zarr"
    checkpoint = checkpoint_path(out)
    process = subprocess.Popen(_cli("fit", data, "-o", out, *common), start_new_session=True)
    killed_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        iteration = _checkpoint_iteration(checkpoint) if checkpoint.exists() else None
        if iteration is not None and iteration >= 3:
            os.killpg(process.pid, signal.SIGKILL)  # the command and its cluster's processes
            killed_at = iteration
            break
        time.sleep(0.005)
    process.wait(timeout=30)
    assert killed_at is not None and process.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing half-written in place
    assert checkpoint.exists() and killed_at < n_iter

    # a checkpoint is not silently reused, nor resumed by another fit
    again = subprocess.run(_cli("fit", data, "-o", out, *common), capture_output=True, text=True)
    assert again.returncode == 1 and "pass --resume to continue it" in again.stderr
    other = subprocess.run(_cli("fit", data, "-o", out, *common, "--seed", 3, "--resume"),
                           capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 1 and "from a fit with other arguments (seed" in other.stderr

    resumed = subprocess.run(_cli("fit", data, "-o", out, *common, "--resume"),
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert not checkpoint.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    group = zarr.open_group(out, mode="r")
    assert group.attrs["resumed_from_iteration"] >= killed_at
    assert group.attrs["n_iter"] == n_iter
    np.testing.assert_array_equal(group["labels"][:], reference["labels"][:])
    np.testing.assert_allclose(group["centers"][:], reference["centers"][:], rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        group.attrs["objective_history"], reference.attrs["objective_history"], rtol=1e-12
    )
    assert group["sizes"][:].tolist() == [50_000] * 8


# --------------------------------------------------------------------------------------------
# the demo, the progress display, dask's CLI
# --------------------------------------------------------------------------------------------


def test_demo_on_an_embedded_cluster(tmp_path):
    plot = tmp_path / "demo.png"
    result = run("demo", "--n", 40_000, "--k", 4, "--chunks", 10_000, "--n-workers", 1,
                 "--plot", plot)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sizes        [10000, 10000, 10000, 10000]" in result.stdout
    assert "optimal=True" in result.stdout and "adjusted Rand index" in result.stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_iteration_display_and_pass_progress(cluster_client):
    import io

    from ballot_dask.dask_blocks import observe_rounds
    from ballot_dask.progress import IterationDisplay, PassProgress

    X = da.from_array(np.random.default_rng(0).random((3000, 2)), chunks=700)
    stream, bars = io.StringIO(), io.StringIO()
    display = IterationDisplay(stream)
    with cluster_client.as_current(), dask.config.set(scheduler=cluster_client):
        with observe_rounds(PassProgress(cluster_client, after=0.0, stream=bars)):
            km = BalancedKMeans(3, random_state=0, max_iter=4).fit(X, callback=display)
        reference = BalancedKMeans(3, random_state=0, max_iter=4).fit(X)
        np.testing.assert_array_equal(km.labels_.compute(), reference.labels_.compute())
    lines = stream.getvalue().splitlines()
    assert lines[0].split()[:3] == ["iter", "objective", "change"]
    assert len(lines) == 1 + km.n_iter_
    assert float(lines[-1].split()[1]) == pytest.approx(km.objective_history_[-1], rel=1e-7)
    assert "% of" in bars.getvalue() and "tasks" in bars.getvalue()


def test_dask_cli_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "dask", "ballot", "--help"], capture_output=True, text=True
    )
    if "No such command 'ballot'" in result.stderr:
        pytest.skip("the package is not installed (entry points unavailable)")
    assert result.returncode == 0, result.stderr
    for command in ("make-data", "fit", "predict", "demo"):
        assert command in result.stdout


def test_fsspec_url_input(data, tmp_path, address):
    out = tmp_path / "url.zarr"
    result = run(*fit_args(f"local://{data}", out, address))
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    assert group.attrs["params"]["input"] == f"local://{data}"
    assert np.bincount(group["labels"][:], minlength=K).tolist() == [N // K] * K


def test_saved_passes_count_the_label_write():
    from ballot_dask.cli.fit import _passes_with_label_write

    X = np.random.default_rng(2).standard_normal((4000, 2))
    lazy = BalancedKMeans(4, random_state=0, max_iter=3).fit(da.from_array(X, chunks=1000))
    saved = _passes_with_label_write(lazy)
    # the labels of a Dask fit are computed from X when written: one more pass, one more round
    assert saved == {**lazy.n_passes_, "x": lazy.n_passes_["x"] + 1,
                     "rounds": lazy.n_passes_["rounds"] + 1}  # fmt: skip
    eager = BalancedKMeans(4, random_state=0, max_iter=3).fit(X)
    assert _passes_with_label_write(eager) == eager.n_passes_
    assert eager.n_passes_["x"] >= 2  # the validation and the first pass read X
    assert eager.n_passes_["sample"] >= 4  # k-means++ on the sample (X itself here)


def test_an_interrupt_inside_a_compiled_kernel_reports_interrupted():
    from ballot_dask.cli.base import _caused_by_interrupt

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise SystemError("returned a result with an exception set") from interrupt
    except SystemError as exc:
        assert _caused_by_interrupt(exc)
    assert not _caused_by_interrupt(ValueError("bad input"))
