"""Atomic outputs: a temporary beside the target, moved into place; leftovers of killed runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ballot_dask.storage import atomic_output, remove_leftovers


def _dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _write(directory: Path, text: str) -> None:
    directory.mkdir()
    (directory / "data").write_text(text)


def test_the_output_appears_only_when_complete(tmp_path):
    out = tmp_path / "out.zarr"
    with atomic_output(out) as tmp:
        _write(tmp, "new")
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.zarr.tmp-")
        assert not out.exists()
    assert (out / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_a_failure_leaves_nothing_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "out.zarr"
    _write(out, "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(out, overwrite=True) as tmp:
        _write(tmp, "half")
        raise RuntimeError("boom")
    assert (out / "data").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]
    with atomic_output(out, overwrite=True) as tmp:
        _write(tmp, "new")
    assert (out / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_an_output_that_appeared_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "out.zarr"
    with pytest.raises(FileExistsError, match="pass --overwrite"), atomic_output(out) as tmp:
        _write(tmp, "mine")
        _write(out, "theirs")
    assert (out / "data").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_leftovers_of_killed_runs(tmp_path):
    out = tmp_path / "out.zarr"
    dead, alive = _dead_pid(), os.getpid()
    _write(tmp_path / f".out.zarr.tmp-{dead}-0badc0de", "killed while writing")
    _write(tmp_path / f".out.zarr.tmp-{alive}-00c0ffee", "a write in progress")
    _write(tmp_path / f".out.zarr.old-{dead}-0d15ea5e", "replaced, successor never moved")
    _write(tmp_path / ".other.zarr.tmp-1-00000000", "another output's")
    remove_leftovers(out)
    # the replaced output comes back; the dead writer's temporary goes; the rest stays
    assert (out / "data").read_text() == "replaced, successor never moved"
    assert {p.name for p in tmp_path.iterdir()} == {
        f".out.zarr.tmp-{alive}-00c0ffee",
        ".other.zarr.tmp-1-00000000",
        "out.zarr",
    }
    _write(tmp_path / f".out.zarr.old-{dead}-0d15ea5e", "stale, the output exists")
    remove_leftovers(out)
    assert not (tmp_path / f".out.zarr.old-{dead}-0d15ea5e").exists()
    assert (out / "data").read_text() == "replaced, successor never moved"


def test_a_npy_input_is_read_by_its_tasks_not_shipped_in_the_graph(tmp_path):
    import pickle

    import numpy as np

    from ballot_dask.storage import open_input

    data = np.random.default_rng(0).random((200_000, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", np.asfortranarray(data))
    X = open_input(tmp_path / "x.npy")
    assert X.shape == data.shape and X.dtype == np.float32
    assert len(pickle.dumps(dict(X.__dask_graph__()))) < 10_000  # the data: 6.4 MB
    np.testing.assert_array_equal(X.compute(), data)
    np.testing.assert_array_equal(X[123_456:123_460].compute(), data[123_456:123_460])
