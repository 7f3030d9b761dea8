"""Outputs in an object store, on fsspec's in-memory file system (the S3 API itself is in
``test_s3.py``): a temporary prefix, published with the root metadata last."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import numpy as np
import pytest
import zarr

from ballot_dask.objectstore import (
    MARKER,
    atomic_remote_output,
    filesystem,
    remove_leftovers,
    state,
)
from ballot_dask.storage import check_output, write_arrays

fsspec = pytest.importorskip("fsspec")


@pytest.fixture
def root():
    """A fresh prefix of the in-memory file system, removed afterwards."""
    prefix = f"memory://ballot-{uuid.uuid4().hex[:8]}"
    yield prefix
    fs, path = filesystem(prefix)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def names(url: str) -> list[str]:
    fs, path = filesystem(url)
    return sorted(p.rpartition("/")[2] for p in fs.ls(path, detail=False))


def test_an_output_is_published_whole_with_its_marker_last(root):
    out = f"{root}/out.zarr"
    assert state(out) == "absent"
    with atomic_remote_output(out) as tmp:
        assert tmp.startswith(f"{root}/.out.zarr.tmp-")
        write_arrays(tmp, {"centers": np.eye(2)}, attrs={"n_iter": 3})
        assert state(out) == "absent"  # nothing at the output's prefix yet
    assert state(out) == "complete" and names(root) == ["out.zarr"]
    group = zarr.open_group(out, mode="r")
    assert group.attrs["n_iter"] == 3
    np.testing.assert_array_equal(group["centers"][:], np.eye(2))


def test_a_failure_publishes_nothing_and_keeps_the_old_output(root):
    out = f"{root}/out.zarr"
    with atomic_remote_output(out) as tmp:
        write_arrays(tmp, {"centers": np.ones(2)}, attrs={"run": "old"})
    with pytest.raises(RuntimeError, match="boom"), atomic_remote_output(out, overwrite=True) as t:
        write_arrays(t, {"centers": np.zeros(2)}, attrs={"run": "new"})
        raise RuntimeError("boom")
    assert names(root) == ["out.zarr"]
    assert zarr.open_group(out, mode="r").attrs["run"] == "old"
    with pytest.raises(FileExistsError, match="pass --overwrite"), atomic_remote_output(out) as t:
        write_arrays(t, {"centers": np.zeros(2)})
    assert zarr.open_group(out, mode="r").attrs["run"] == "old"
    with atomic_remote_output(out, overwrite=True) as tmp:
        write_arrays(tmp, {"labels": np.arange(3)}, attrs={"run": "new"})
    group = zarr.open_group(out, mode="r")
    # replaced whole: no array of the old output is left
    assert group.attrs["run"] == "new" and sorted(group.array_keys()) == ["labels"]


def test_an_incomplete_output_is_refused_until_overwritten(root):
    out = f"{root}/out.zarr"
    fs, path = filesystem(out)
    fs.pipe_file(f"{path}/labels/c/0", b"half")  # a publisher killed before the marker
    assert state(out) == "incomplete"
    with pytest.raises(FileExistsError, match=r"is incomplete .* pass --overwrite"):
        check_output(out)
    assert check_output(out, overwrite=True) == out
    with atomic_remote_output(out, overwrite=True) as tmp:
        write_arrays(tmp, {"centers": np.eye(2)})
    assert state(out) == "complete" and not fs.exists(f"{path}/labels/c/0")
    assert fs.exists(f"{path}/{MARKER}")


def test_leftovers_of_dead_writers_of_this_machine_are_removed(root):
    out = f"{root}/out.zarr"
    fs, path = filesystem(root)
    host = socket.gethostname().replace("-", "_")
    dead = subprocess.Popen(["true"])
    dead.wait()
    prefixes = {
        "dead": f".out.zarr.tmp-{host}-{dead.pid}-0badc0de",
        "alive": f".out.zarr.tmp-{host}-{os.getpid()}-00c0ffee",
        "elsewhere": f".out.zarr.tmp-otherhost-{dead.pid}-0d15ea5e",
        "other output": f".other.zarr.tmp-{host}-{dead.pid}-00000000",
    }
    for prefix in prefixes.values():
        fs.pipe_file(f"{path}/{prefix}/zarr.json", b"{}")
    remove_leftovers(out)
    assert names(root) == sorted(v for k, v in prefixes.items() if k != "dead")
