"""``--cluster slurm`` and ``deploy/slurm/`` on a real single-node SLURM started by the module's
fixture (``tests/slurm_node.py``): worker jobs really submitted, run and cancelled.

The commands run as subprocesses, as a user runs them, with ``deploy/slurm/jobqueue.yaml`` as
their dask-jobqueue settings (``DASK_CONFIG``); only the network interface (loopback) and the
jobs' log directory are overridden through the environment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import slurm_node
import zarr

from ballot_dask import BalancedKMeans
from ballot_dask.checkpoint import checkpoint_path

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "slurm"
K = 4


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running SLURM node, stopped (by the ids of its daemons) after the module."""
    reason = slurm_node.missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the SLURM tests: {reason}")
        pytest.skip(reason)
    node = slurm_node.start(tmp_path_factory.mktemp("slurm"), cpus=8)
    try:
        yield node
    finally:
        slurm_node.stop(node)
        still = [name for name, pid in node.pids.items() if slurm_node.alive(pid)]
        assert still == [], f"daemons left running: {still}"


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("slurm-logs")


@pytest.fixture
def env(slurm, logs):
    """The environment of a command: this SLURM, the shipped jobqueue.yaml, loopback."""
    return {
        **os.environ,
        **slurm.env,
        "DASK_CONFIG": str(DEPLOY),
        "DASK_JOBQUEUE__SLURM__INTERFACE": "lo",
        "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(logs),
        "DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS": "{'dashboard_address': ':0'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "ballot_dask.cli", *map(str, args)]


def run(env, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def wait_for_empty_queue(node: slurm_node.SlurmNode, timeout: float = 60) -> list[str]:
    """The queue once empty, or as it is after ``timeout`` seconds (cancelled jobs take
    SLURM's KillWait to leave it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.queue():
        time.sleep(0.5)
    return node.queue()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A Gaussian mixture that takes a dozen Lloyd iterations (made with local threads)."""
    path = tmp_path_factory.mktemp("slurm-data") / "data.zarr"
    made = subprocess.run(
        cli("make-data", path, "--n", 200_000, "--d", 2, "--k", K, "--model", "gmm",
            "--delta", 1.5, "--chunks", 25_000, "--seed", 1, "--quiet"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return path


@pytest.fixture(scope="module")
def reference(data):
    """The labels of the same fit on this process's threads."""
    X = da.from_zarr(zarr.open_group(data, mode="r")["X"])
    with dask.config.set(scheduler="threads"):
        km = BalancedKMeans(K, random_state=2, tol=0, max_iter=30).fit(X)
        return km.labels_.compute(), km.n_iter_


FIT = ("--k", K, "--tol", 0, "--seed", 2, "--max-iter", 30)
JOB = ("--cluster", "slurm", "--cores", 1, "--memory", "1GB")


def test_make_data_fit_predict_on_worker_jobs(slurm, env, data, reference, logs, tmp_path):
    made = tmp_path / "made.zarr"
    result = run(env, "make-data", made, "--n", 40_000, "--d", 3, "--k", K, "--chunks", 10_000,
                 *JOB, "--jobs", 1, "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = zarr.open_group(made, mode="r")
    assert np.bincount(written["labels_true"][:]).tolist() == [10_000] * K
    assert len(written.attrs["cluster"]["slurm_job_ids"]) == 1

    out = tmp_path / "fit.zarr"
    result = run(env, "fit", data, "-o", out, *FIT, *JOB, "--jobs", 2)
    assert result.returncode == 0, result.stderr
    group = zarr.open_group(out, mode="r")
    labels = group["labels"][:]
    assert np.bincount(labels, minlength=K).tolist() == [50_000] * K
    np.testing.assert_array_equal(labels, reference[0])
    record = group.attrs["cluster"]
    # two workers, each inside its own SLURM job (its SLURM_JOB_ID), logged where configured
    assert record["workers"] == 2 and record["protocol"] == "tcp"
    jobs = record["slurm_job_ids"]
    assert len(jobs) == 2 and all(job.isdigit() for job in jobs)
    for job in jobs:
        assert (logs / f"ballot-worker-{job}.err").exists()
    assert wait_for_empty_queue(slurm) == []

    pred = tmp_path / "pred.zarr"
    result = run(env, "predict", out, data, "-o", pred, *JOB, "--jobs", 1, "--quiet")
    assert result.returncode == 0, result.stderr
    predicted = zarr.open_group(pred, mode="r")
    assert predicted["labels"].shape == labels.shape
    assert set(predicted.attrs["cluster"]["slurm_job_ids"]).isdisjoint(jobs)
    assert wait_for_empty_queue(slurm) == []


def _iteration(path: Path) -> int:
    import json

    try:
        with np.load(path) as saved:
            return int(json.loads(bytes(saved["record"]).decode())["iteration"])
    except (OSError, ValueError, KeyError, EOFError):
        return 0


def test_a_worker_job_cancelled_mid_fit_does_not_lose_the_fit(slurm, env, data, reference,
                                                              tmp_path):  # fmt: skip
    out = tmp_path / "fit.zarr"
    process = subprocess.Popen(
        cli("fit", data, "-o", out, *FIT, *JOB, "--jobs", 2, "--quiet"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    checkpoint = checkpoint_path(out)
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        if checkpoint.exists() and _iteration(checkpoint) >= 2:
            break
        time.sleep(0.05)
    jobs = slurm.queue()
    assert len(jobs) == 2, "the fit ended before a worker job could be cancelled"
    cancelled = jobs[0]
    slurm.run("scancel", cancelled)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert not checkpoint.exists()
    group = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(group["labels"][:], reference[0])
    assert group.attrs["n_iter"] == reference[1]
    # the fit ended on the remaining job's worker alone
    assert group.attrs["cluster"]["slurm_job_ids"] == [jobs[1]]
    assert wait_for_empty_queue(slurm) == []


def test_impossible_memory_is_one_line_with_what_slurm_said(slurm, env, data, tmp_path):
    start = time.monotonic()
    result = run(env, "fit", data, "-o", tmp_path / "o.zarr", *FIT, "--cluster", "slurm",
                 "--memory", "5TB", "--wait-workers", "60")  # fmt: skip
    assert time.monotonic() - start < 60
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "error: SLURM refused the worker job: sbatch: error: Memory specification can not be "
        "satisfied; sbatch: error: Batch job submission failed: Requested node configuration "
        "is not available (check --memory"
    ), result.stderr
    assert list(tmp_path.iterdir()) == []
    assert slurm.queue() == []


def test_workers_that_do_not_start_in_time_are_reported_and_cancelled(slurm, env, data,
                                                                      tmp_path):  # fmt: skip
    # 8 CPUs: one job of 5 cores runs, the second waits for resources
    result = run(env, "fit", data, "-o", tmp_path / "o.zarr", *FIT, "--cluster", "slurm",
                 "--cores", 5, "--memory", "1GB", "--jobs", 2, "--wait-workers", "10s")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    match = re.fullmatch(
        r"error: --wait-workers: 1 of 2 workers joined within 10 s; SLURM: job (\d+) RUNNING, "
        r"job (\d+) PENDING \(Resources\); the jobs' logs are in (\S+); cancelled them .*\n",
        result.stderr,
    )
    assert match, result.stderr
    assert int(match[2]) == int(match[1]) + 1
    assert wait_for_empty_queue(slurm) == []
    assert list(tmp_path.iterdir()) == []


def _default_signals() -> None:
    """The child's SIGINT as a terminal gives it: a test run started in the background
    (``cmd &`` in a script) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_fit_cancels_its_jobs(slurm, env, data, tmp_path, signum):
    out = tmp_path / "fit.zarr"
    process = subprocess.Popen(
        cli("fit", data, "-o", out, *FIT, *JOB, "--jobs", 2, "--quiet"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_default_signals,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if checkpoint_path(out).exists():
            break
        time.sleep(0.05)
    assert len(slurm.queue()) == 2
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert wait_for_empty_queue(slurm) == []
    assert not out.exists()


def test_tls_between_the_scheduler_and_the_worker_jobs(slurm, env, data, reference, tmp_path):
    out = tmp_path / "fit.zarr"
    result = run(env, "fit", data, "-o", out, *FIT, *JOB, "--jobs", 1, "--tls", "--quiet",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    group = zarr.open_group(out, mode="r")
    assert group.attrs["cluster"]["protocol"] == "tls"
    assert len(group.attrs["cluster"]["slurm_job_ids"]) == 1
    np.testing.assert_array_equal(group["labels"][:], reference[0])
    assert wait_for_empty_queue(slurm) == []
    # the workers' temporary credentials (in the working directory, which the jobs see)
    # are removed with the cluster
    assert [p.name for p in tmp_path.iterdir()] == ["fit.zarr"]


def test_the_sbatch_scripts_run_a_fit(slurm, env, data, reference, tmp_path):
    """Both routes of deploy/slurm/README.md, submitted with ``sbatch --wait`` (together)."""
    runs = {}
    home = tmp_path / "home"  # nothing is written to the home directory
    home.mkdir()
    for script, extra in (("fit-jobqueue.sbatch", {}), ("fit-srun.sbatch", {"INTERFACE": "lo"})):
        where = tmp_path / script.split(".")[0]
        where.mkdir()
        for name in ("jobqueue.yaml", script):
            (where / name).write_bytes((DEPLOY / name).read_bytes())
        out = where / "fit.zarr"
        runs[script] = (
            where,
            out,
            subprocess.Popen(
                ["sbatch", "--wait", script, str(data), str(out), str(K), *map(str, FIT[2:])],
                cwd=where, env={**env, **extra, "DASK_CONFIG": "", "HOME": str(home)},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
        )  # fmt: skip
    for script, (where, out, process) in runs.items():
        stdout, stderr = process.communicate(timeout=600)
        logs = "".join(p.read_text() for p in where.glob("ballot-fit-*.log"))
        assert process.returncode == 0, f"{script}: {stderr}\n{logs}"
        assert stdout.startswith("Submitted batch job")
        group = zarr.open_group(out, mode="r")
        np.testing.assert_array_equal(group["labels"][:], reference[0])
        assert f"wrote {out.name}" in logs or f"wrote {out}" in logs
        if script == "fit-jobqueue.sbatch":
            assert len(group.attrs["cluster"]["slurm_job_ids"]) == 2  # worker jobs
        else:
            assert group.attrs["cluster"]["slurm_job_ids"] == [stdout.split()[-1]]
            assert group.attrs["cluster"]["workers"] == 2
        assert not list(where.glob("ballot-scheduler-*.json"))
    assert wait_for_empty_queue(slurm) == []
    assert list(home.rglob("*")) == []
