"""Zarr outputs in object stores (``s3://bucket/out.zarr``, or any fsspec URL), written so that
an incomplete output is never taken for a complete one.

An object store has no atomic rename.  An output is therefore written under a temporary
prefix beside it (``.out.zarr.tmp-HOST-PID-TAG``), then *published*: its objects are copied
to the output's prefix, the group's root metadata (``zarr.json``, which also holds the
command's record) last.  That object is the completion marker: until it exists, the prefix
does not open as a Zarr group, and the commands report it as incomplete.  Replacing an
output (``--overwrite``) first removes the old root metadata, so a reader never sees an
old group with new arrays.  Credentials and endpoint come the standard way (for S3: the AWS
environment variables, ``AWS_ENDPOINT_URL`` included, and config files) or from
``storage_options`` (``--storage-options``; by default ``ballot.storage-options``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.config

from .interrupts import raise_if_interrupted

__all__ = [
    "MARKER",
    "atomic_remote_output",
    "filesystem",
    "get_bytes",
    "is_complete",
    "put_bytes",
    "remove",
    "remove_leftovers",
    "state",
]

#: the object written last: a Zarr group's root metadata
MARKER = "zarr.json"


def _options(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    if storage_options is not None:
        return dict(storage_options)
    return dict(dask.config.get("ballot.storage-options") or {})


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path in it (listing caches dropped: another
    process may have written since)."""
    from fsspec.core import url_to_fs

    try:
        fs, path = url_to_fs(url, **_options(storage_options))
    except ImportError as exc:
        raise ImportError(f"{url}: {exc}; for s3:// URLs: pip install 'ballot-dask[s3]'") from exc
    fs.invalidate_cache()
    return fs, str(path).rstrip("/")


def state(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """``"absent"``, ``"complete"`` (the root metadata exists) or ``"incomplete"`` (objects
    without it: a writer was killed while publishing)."""
    fs, path = filesystem(url, storage_options)
    if fs.exists(f"{path}/{MARKER}"):
        return "complete"
    return "incomplete" if fs.exists(path) else "absent"


def is_complete(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether the output at ``url`` was completely published."""
    return state(url, storage_options) == "complete"


def _temporary(url: str) -> str:
    head, _, name = url.rstrip("/").rpartition("/")
    host = socket.gethostname().replace("-", "_") or "host"
    return f"{head}/.{name}.tmp-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove the object or prefix at ``url`` (nothing if absent)."""
    fs, path = filesystem(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def remove_leftovers(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove the temporary prefixes beside ``url`` left by killed writers *of this
    machine* (a writer elsewhere cannot be told alive or dead: its prefix stays)."""
    import psutil

    fs, path = filesystem(url, storage_options)
    parent, _, name = path.rpartition("/")
    host = socket.gethostname().replace("-", "_") or "host"
    try:
        siblings = fs.ls(parent, detail=False)
    except FileNotFoundError:
        return
    for sibling in siblings:
        base = str(sibling).rstrip("/").rpartition("/")[2]
        prefix = f".{name}.tmp-{host}-"
        if not base.startswith(prefix):
            continue
        pid = base[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            fs.rm(str(sibling), recursive=True)


def _publish(fs: Any, tmp: str, path: str, overwrite: bool) -> None:
    if fs.exists(path):
        if not overwrite:
            raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
        if fs.exists(f"{path}/{MARKER}"):
            fs.rm(f"{path}/{MARKER}")  # from now on the old output reads as incomplete
        fs.rm(path, recursive=True)
    marker = f"{tmp}/{MARKER}"
    objects = sorted(str(key) for key in fs.find(tmp) if str(key) != marker)
    if objects:
        fs.copy(objects, [path + key[len(tmp) :] for key in objects])
    fs.copy(marker, f"{path}/{MARKER}")  # the completion marker, last


@contextmanager
def atomic_remote_output(
    url: str, *, overwrite: bool = False, storage_options: dict[str, Any] | None = None
) -> Iterator[str]:
    """Yield a temporary prefix to write the Zarr group into; publish it at ``url`` on
    success (the root metadata last); remove it in any case.

    An existing output at ``url`` (complete or not) is replaced only with ``overwrite``, and
    only once the new one is fully written under its temporary prefix.
    """
    remove_leftovers(url, storage_options)
    tmp = _temporary(url)
    fs, tmp_path = filesystem(tmp, storage_options)
    _, path = filesystem(url, storage_options)
    try:
        yield tmp
        raise_if_interrupted()  # an interrupt swallowed while writing: not published
        fs.invalidate_cache()
        if not fs.exists(f"{tmp_path}/{MARKER}"):
            raise RuntimeError(f"output {url}: nothing was written to {tmp}")
        _publish(fs, tmp_path, path, overwrite)
    finally:
        fs.invalidate_cache()
        if fs.exists(tmp_path):
            fs.rm(tmp_path, recursive=True)


def put_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write one object at once (an object store replaces an object atomically)."""
    fs, path = filesystem(url, storage_options)
    fs.pipe_file(path, data)


def get_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read one object."""
    fs, path = filesystem(url, storage_options)
    return bytes(fs.cat_file(path))
