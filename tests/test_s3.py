"""``s3://`` inputs and outputs against a real S3 API on 127.0.0.1 (moto's server, started by
the module's fixture and stopped by its process id): make-data, fit and predict; outputs
published only when complete, also when the writer is killed half-way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from ballot_dask import BalancedKMeans
from ballot_dask.objectstore import MARKER, state

pytestmark = [pytest.mark.s3, pytest.mark.timeout(600)]
s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")

BUCKET = "ballot-test"
N, K, CHUNK = 40_000, 4, 4_000
FIT = ("--k", K, "--tol", 0, "--seed", 2, "--max-iter", 6, "--n-workers", 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """moto's S3 server on a free loopback port, with credentials in this process's
    environment (the commands inherit them); stopped by its pid after the module."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto did not start: {log.read_text()}") from None
                time.sleep(0.2)
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def fs():
    filesystem = s3fs.S3FileSystem()
    filesystem.invalidate_cache()
    return filesystem


def listing(prefix: str = "") -> list[str]:
    return sorted(p.rpartition("/")[2] for p in fs().ls(f"{BUCKET}/{prefix}".rstrip("/")))


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "ballot_dask.cli", *map(str, args)]


def run(*args: object, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=300, env=env,
                          check=False)  # fmt: skip


@pytest.fixture(scope="module")
def data(endpoint):
    url = f"s3://{BUCKET}/data.zarr"
    made = run("make-data", url, "--n", N, "--d", 2, "--k", K, "--model", "gmm", "--delta", 1.5,
               "--chunks", CHUNK, "--seed", 1, "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    return url


@pytest.fixture(scope="module")
def reference(data):
    """The same fit on this process's threads, of the data read from S3 once."""
    X = da.from_array(zarr.open_group(data, mode="r")["X"][:], chunks=(CHUNK, 2))
    with dask.config.set(scheduler="threads"):
        km = BalancedKMeans(K, random_state=2, tol=0, max_iter=6).fit(X)
        return km.labels_.compute()


def test_make_data_fit_predict_in_s3(data, reference):
    X = zarr.open_group(data, mode="r")["X"]
    assert X.shape == (N, 2) and X.chunks == (CHUNK, 2)
    assert state(data) == "complete"

    out = f"s3://{BUCKET}/fit.zarr"
    result = run("fit", data, "-o", out, *FIT, "--quiet")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    group = zarr.open_group(out, mode="r")
    labels = group["labels"][:]
    np.testing.assert_array_equal(labels, reference)
    assert group["sizes"][:].tolist() == [N // K] * K
    assert group.attrs["params"]["input"] == data

    pred = f"s3://{BUCKET}/pred.zarr"
    result = run("predict", out, data, "-o", pred, "--n-workers", 1)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {pred}: {N} labels (power)")
    predicted = zarr.open_group(pred, mode="r")
    assert predicted["sizes"][:].tolist() == np.bincount(predicted["labels"][:]).tolist()
    assert (predicted["labels"][:] != labels).sum() <= 3  # ties on cell boundaries only

    # no temporary prefix, no checkpoint left
    assert listing() == ["data.zarr", "fit.zarr", "pred.zarr"]

    # an existing output is kept unless --overwrite; --overwrite replaces it whole
    result = run("fit", data, "-o", out, *FIT)
    assert result.returncode == 1
    assert result.stderr == f"error: output {out} exists; pass --overwrite to replace it\n"
    result = run("fit", data, "-o", out, *FIT, "--resume")
    assert result.returncode == 0 and f"{out} is complete; nothing to resume" in result.stdout
    result = run("fit", data, "-o", out, *FIT[:-4], "--max-iter", 2, "--n-workers", 1,
                 "--overwrite", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert zarr.open_group(out, mode="r").attrs["n_iter"] == 2
    assert listing() == ["data.zarr", "fit.zarr", "pred.zarr"]


def test_storage_options_instead_of_the_environment(data, endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    options = json.dumps({"endpoint_url": endpoint, "key": "testing", "secret": "testing",
                          "client_kwargs": {"region_name": "us-east-1"}})  # fmt: skip
    out = f"s3://{BUCKET}/options.zarr"
    result = run("make-data", out, "--n", 1000, "--d", 2, "--k", 2, "--storage-options", options,
                 "--quiet", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert zarr.open_group(out, mode="r")["X"].shape == (1000, 2)
    # without them the same command cannot reach the server: one line
    result = run("fit", out, "--k", 2, "-o", tmp_path / "o.zarr", "--n-workers", 1, env={
        **env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"})  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    result = run("fit", out, "--k", 2, "-o", tmp_path / "o.zarr", "--storage-options", "{bad")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --storage-options must be a JSON object")
    assert list(tmp_path.iterdir()) == []
    fs().rm(f"{BUCKET}/options.zarr", recursive=True)


def _wait_for(process: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"the command ended before it could be killed: {process.returncode}")


def _kill_when(process: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL the command (and its workers) at the first moment ``ready()`` holds.

    The command is frozen (SIGSTOP) while ``ready()`` looks, after its requests in flight
    have landed: what ``ready()`` sees is what the kill leaves, with no race.
    """
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        os.killpg(process.pid, signal.SIGSTOP)
        time.sleep(0.05)
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            return
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"the command ended before it could be killed: {process.returncode}")


@pytest.mark.slow  # about a minute: five runs of the CLI (tests/test_cli.py kills a local fit)
def test_a_fit_killed_mid_write_leaves_no_output_that_reads_as_complete(data, reference):
    out = f"s3://{BUCKET}/killed.zarr"
    path = f"{BUCKET}/killed.zarr"
    command = cli("fit", data, "-o", out, *FIT, "--quiet")

    def temporary_objects() -> bool:
        return any(
            name.startswith(".killed.zarr.tmp-") and fs().find(f"{BUCKET}/{name}")
            for name in listing()
        )

    # 1. killed while writing under the temporary prefix: nothing at the output's prefix
    first = subprocess.Popen(command, start_new_session=True)
    _kill_when(first, temporary_objects)
    assert state(out) == "absent"
    assert fs().exists(f"{path}.checkpoint.npz")
    left = {n for n in listing() if n.startswith(".killed.zarr.tmp-")}
    assert len(left) == 1

    # 2. resumed, and killed while publishing: objects there, but not the root metadata
    def publishing() -> bool:
        found = fs().find(path)
        return bool(found) and f"{path}/{MARKER}" not in found

    second = subprocess.Popen([*command, "--resume"], start_new_session=True)
    _wait_for(second, lambda: bool({n for n in listing() if ".tmp-" in n} - left))
    _kill_when(second, publishing)
    assert state(out) == "incomplete"
    assert fs().find(path) and not fs().exists(f"{path}/{MARKER}")
    with pytest.raises(Exception):  # zarr: not a group  # noqa: B017
        zarr.open_group(out, mode="r")
    result = run("predict", out, data, "-o", f"s3://{BUCKET}/p.zarr", "--n-workers", 1)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: model {out} is incomplete (a run was stopped while writing it); write it again\n"
    )
    result = run("fit", data, "-o", out, *FIT)
    assert result.returncode == 1 and "is incomplete" in result.stderr, result.stderr

    # 3. resumed to the end: the same labels as an uninterrupted fit; the leftovers of the
    # two killed runs of this machine removed
    result = run(*command[3:], "--resume")
    assert result.returncode == 0, result.stderr
    assert state(out) == "complete"
    np.testing.assert_array_equal(zarr.open_group(out, mode="r")["labels"][:], reference)
    assert [n for n in listing() if "killed" in n] == ["killed.zarr"]
