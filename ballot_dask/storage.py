"""Inputs and outputs of the command line: Zarr stores, ``.npy`` and sparse ``.npz`` files in,
Zarr groups out.

Inputs are opened lazily as row-chunked Dask arrays (a Zarr array, an array of a Zarr group, a
``.npy`` file memory-mapped; Zarr also through fsspec URLs such as ``s3://...``).  A sparse
matrix saved by ``scipy.sparse.save_npz`` is read whole (a compressed archive cannot be read in
pieces) and cut into chunks of CSR rows; X is never densified.  Outputs are
Zarr groups written *atomically*: into a temporary directory beside the target, moved
into place only once complete, so that a failed or killed run leaves nothing half-written and an
existing output is replaced only on request.  Outputs in object stores (URLs), which have no
atomic rename, are written under a temporary prefix and published with the group's root
metadata last (:mod:`ballot_dask.objectstore`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .interrupts import raise_if_interrupted

__all__ = [
    "atomic_output",
    "check_output",
    "exists",
    "is_url",
    "open_input",
    "read_model",
    "remove",
    "remove_leftovers",
    "write_arrays",
]

#: rows per chunk of a ``.npy`` input (a Zarr input keeps its own chunks)
NPY_CHUNK_BYTES = 128 * 2**20


def is_url(path: str) -> bool:
    """``True`` for an fsspec URL (``s3://``, ``gs://``, ``memory://``...), not a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def _local(path: str | os.PathLike[str]) -> Path:
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def open_input(path: str | os.PathLike[str], array: str | None = None) -> da.Array:
    """The 2-D array at ``path`` as a lazy, row-chunked Dask array.

    ``path`` is a Zarr array, a Zarr group (its array ``array``, ``"X"`` by default), a
    ``.npy`` file or a ``.npz`` file of ``scipy.sparse.save_npz`` (chunks of CSR rows).
    Raises ``FileNotFoundError`` or ``ValueError`` with one line naming the input and what to
    do.
    """
    text = str(path)
    if not is_url(text) and not _local(text).exists():
        raise FileNotFoundError(f"input {text}: no such file or Zarr store")
    if text.endswith(".npy"):
        if array is not None:
            raise ValueError(f"input {text}: --array applies to Zarr groups, not .npy files")
        X = _open_npy(text)
        name = text
    elif text.endswith(".npz"):
        if array is not None:
            raise ValueError(f"input {text}: --array applies to Zarr groups, not .npz files")
        X = _open_npz(text)
        name = text
    else:
        X, name = _open_zarr(text, array)
    if X.ndim != 2:
        raise ValueError(
            f"input {name} has shape {X.shape}; expected a 2-D array (n_samples, n_features)"
        )
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"input {name} has dtype {X.dtype}; expected real numbers")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"input {name} is empty (shape {X.shape})")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    return X


def _open_npy(path: str) -> da.Array:
    """A ``.npy`` file as a Dask array whose tasks each read their rows from the file (the
    graph holds the path, not the data: a memory map would be pickled whole)."""
    if is_url(path):
        raise ValueError(f"input {path}: a .npy input must be a local file; store it as Zarr")
    local = str(_local(path).resolve())
    try:
        data = np.load(local, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:  # numpy reports a corrupt header as "pickled data"
        raise ValueError(f"input {path}: not a readable .npy file") from exc
    if data.ndim != 2:
        raise ValueError(
            f"input {path} has shape {data.shape}; expected a 2-D array (n_samples, n_features)"
        )
    rows = max(1, NPY_CHUNK_BYTES // max(1, data.itemsize * data.shape[1]))
    chunks = da.core.normalize_chunks((rows, data.shape[1]), data.shape)
    return da.map_blocks(
        _npy_rows,
        local,
        chunks=chunks,
        dtype=data.dtype,
        meta=np.empty((0, data.shape[1]), dtype=data.dtype),
        token=f"npy-{uuid.uuid4().hex}",
    )


def _open_npz(path: str) -> da.Array:
    """A ``scipy.sparse.save_npz`` file as a Dask array of CSR chunks of about
    ``NPY_CHUNK_BYTES`` each (by the rows' nonzeros).  The matrix is read whole first."""
    import scipy.sparse as sp

    if is_url(path):
        raise ValueError(f"input {path}: a .npz input must be a local file; store it as Zarr")
    try:
        matrix = sp.load_npz(str(_local(path)))
    except (OSError, ValueError, KeyError) as exc:  # KeyError: an .npz of np.savez
        raise ValueError(
            f"input {path}: not a sparse matrix saved by scipy.sparse.save_npz (a dense array "
            "goes in a .npy file or a Zarr store)"
        ) from exc
    matrix = matrix.tocsr()
    n = max(matrix.shape[0], 1)
    size = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    rows = int(max(1, min(n, NPY_CHUNK_BYTES * n // max(size, 1))))
    return da.from_array(matrix, chunks=(rows, -1), asarray=False, name=f"npz-{uuid.uuid4().hex}")


def _npy_rows(path: str, block_info: dict | None = None) -> np.ndarray:
    (start, stop), _ = block_info[None]["array-location"]  # type: ignore[index]
    return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])


def _open_zarr(path: str, array: str | None) -> tuple[da.Array, str]:
    import zarr

    try:
        if is_url(path):
            _refuse_incomplete(path, "input")
            node = zarr.open(path, mode="r", storage_options=_storage_options())
        else:
            node = zarr.open(_local(path), mode="r")
    except ImportError as exc:
        raise ImportError(
            f"input {path}: {exc}; for s3:// URLs: pip install 'ballot-dask[s3]'"
        ) from exc
    except Exception as exc:  # zarr raises several types for "not a store"
        raise ValueError(
            f"input {path}: not a readable Zarr array or group, nor a .npy file ({exc})"
        ) from exc
    if isinstance(node, zarr.Group):
        name = array or "X"
        members = sorted(key for key, _ in node.arrays())
        if name not in members:
            listed = ", ".join(members) or "none"
            raise ValueError(
                f"input {path}: the Zarr group has no array {name!r} (its arrays: {listed}); "
                "name one with --array"
            )
        node = node[name]
        return da.from_zarr(node), f"{path}/{name}"
    if array is not None:
        raise ValueError(f"input {path} is a Zarr array; --array applies to Zarr groups")
    return da.from_zarr(node), path


def open_weights(spec: str, input_path: str, n_samples: int) -> da.Array:
    """The sample weights named by ``--weights``: a ``.npy`` file, or the name of an array in
    the input's Zarr group.  A 1-D numeric array of ``n_samples`` entries, lazy; its values
    are checked by :func:`~ballot_dask.weights.check_sample_weight`.  Raises
    ``FileNotFoundError`` or ``ValueError`` with one line naming ``--weights``."""
    if spec.endswith(".npy"):
        if not is_url(spec) and not _local(spec).exists():
            raise FileNotFoundError(f"--weights {spec}: no such file")
        if is_url(spec):
            raise ValueError(f"--weights {spec}: a .npy file must be local; store it as Zarr")
        try:
            data = np.load(str(_local(spec)), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--weights {spec}: not a readable .npy file") from exc
        w = da.from_array(np.array(data), chunks=-1)
    else:
        if input_path.endswith((".npy", ".npz")):
            raise ValueError(
                f"--weights {spec}: names an array of the input's Zarr group, but the input "
                f"{input_path} is a file; give the weights as a .npy file"
            )
        try:
            w, _ = _open_zarr(input_path, spec)
        except ValueError as exc:
            reason = str(exc).replace("; name one with --array", "")
            raise ValueError(f"--weights {spec}: {reason}") from exc
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"--weights {spec}: one weight per point is needed, shape ({n_samples},); got "
            f"shape {w.shape}"
        )
    if not np.issubdtype(w.dtype, np.number) or np.issubdtype(w.dtype, np.complexfloating):
        raise ValueError(f"--weights {spec} has dtype {w.dtype}; expected real numbers")
    return w


def _storage_options() -> dict[str, Any]:
    import dask.config

    return dict(dask.config.get("ballot.storage-options") or {})


def check_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path | str:
    """The output: a local path, or a URL (returned as a string), refusing an existing one
    (in an object store: complete or not) unless ``overwrite``."""
    text = str(path)
    if is_url(text):
        return _check_remote_output(text, overwrite)
    out = _local(text)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {out} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise FileNotFoundError(f"output {out}: the directory {out.parent} does not exist")
    return out


def _refuse_incomplete(url: str, what: str) -> None:
    from .objectstore import state

    if state(url) == "incomplete":
        raise ValueError(
            f"{what} {url} is incomplete (a run was stopped while writing it); write it again"
        )


def _check_remote_output(url: str, overwrite: bool) -> str:
    from .objectstore import filesystem, state

    found = state(url)
    if found == "complete" and not overwrite:
        raise FileExistsError(f"output {url} exists; pass --overwrite to replace it")
    if found == "incomplete" and not overwrite:
        raise FileExistsError(
            f"output {url} is incomplete (a run was stopped while writing it); pass "
            "--overwrite to replace it"
        )
    fs, where = filesystem(url)
    root = where.split("/", 1)[0]
    if "/" in where and not fs.exists(root):
        raise FileNotFoundError(f"output {url}: the bucket {root} does not exist")
    return url


def exists(path: Path | str) -> bool:
    """Whether a file (a local path, or an object at a URL) exists."""
    if isinstance(path, str) and is_url(path):
        from .objectstore import filesystem

        fs, where = filesystem(path)
        return bool(fs.exists(where))
    return Path(path).exists()


def remove(path: Path | str) -> None:
    """Remove a file (a local path, or an object at a URL) if it exists."""
    if isinstance(path, str) and is_url(path):
        from .objectstore import remove as remove_remote

        remove_remote(path)
    else:
        Path(path).unlink(missing_ok=True)


def sibling(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` for a temporary (``kind="tmp"``) or a replaced
    (``"old"``) output, tagged with this process's id so that a later run can tell a leftover
    of a killed process from a write in progress."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_leftovers(path: Path) -> None:
    """Remove the temporaries that killed processes left beside ``path``.

    A replaced output whose successor never took its place (a kill between the two renames of
    :func:`atomic_output`) is moved back to ``path`` rather than removed.
    """
    import psutil

    for other in sorted(path.parent.glob(f".{path.name}.*-*-*")):
        kind, _, rest = other.name[len(path.name) + 2 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        if kind == "old" and not path.exists():
            os.replace(other, path)
        else:
            _remove(other)


@contextmanager
def atomic_output(path: Path | str, *, overwrite: bool = False) -> Iterator[Any]:
    """Write into a temporary directory beside ``path``; move it into place on success.

    On an exception the temporary directory is removed and ``path`` is untouched.  With
    ``overwrite`` an existing ``path`` is replaced only once the new output is complete.
    Leftovers of killed runs beside ``path`` are removed first (:func:`remove_leftovers`).
    A URL is written under a temporary prefix and published
    (:func:`ballot_dask.objectstore.atomic_remote_output`).
    """
    if isinstance(path, str) and is_url(path):
        from .objectstore import atomic_remote_output

        with atomic_remote_output(path, overwrite=overwrite) as tmp_url:
            yield tmp_url
        return
    path = Path(path)
    remove_leftovers(path)
    tmp = sibling(path, "tmp")
    try:
        yield tmp
        raise_if_interrupted()  # an interrupt swallowed while writing: not into place
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
            old = sibling(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_arrays(
    group_path: Path | str,
    arrays: dict[str, np.ndarray],
    *,
    chunked: dict[str, da.Array] | None = None,
    attrs: dict[str, Any] | None = None,
    runner: Callable[[list[Any]], Any] | None = None,
) -> None:
    """A Zarr group at ``group_path`` with small NumPy ``arrays``, Dask arrays ``chunked``
    (stored chunk by chunk on the active scheduler, keeping their row chunks) and ``attrs``.
    ``runner`` computes the stores (``dask.compute`` by default; a progress display)."""
    import dask
    import zarr

    if isinstance(group_path, str) and is_url(group_path):
        group = zarr.open_group(group_path, mode="w", storage_options=_storage_options())
    else:
        group = zarr.open_group(group_path, mode="w")
    for name, small in arrays.items():
        group.create_array(name, data=np.asarray(small))
    stores = []
    value: Any
    for name, value in (chunked or {}).items():
        rows = value.chunks[0]
        if len(set(rows[:-1])) > 1 or (len(rows) > 1 and rows[-1] > rows[0]):
            value = value.rechunk({0: rows[0]})  # Zarr chunks are regular
        target = group.create_array(
            name,
            shape=value.shape,
            chunks=(value.chunks[0][0], *value.shape[1:]),
            dtype=value.dtype,
        )
        stores.append(da.store(value, target, lock=False, compute=False))  # type: ignore[arg-type]
    if stores:
        (runner or (lambda tasks: dask.compute(*tasks)))(stores)
    if attrs:
        group.attrs.update(attrs)


def read_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The fitted model saved by ``ballot-dask fit``: centers, potentials, sizes (``None`` when
    the group has none) and attributes."""
    import zarr

    text = str(path)
    if not is_url(text) and not _local(text).exists():
        raise FileNotFoundError(f"model {text}: no such Zarr group")
    if is_url(text):
        _refuse_incomplete(text, "model")
    try:
        if is_url(text):
            group = zarr.open_group(text, mode="r", storage_options=_storage_options())
        else:
            group = zarr.open_group(_local(text), mode="r")
        centers = np.asarray(group["centers"][...])  # type: ignore[index]
        potentials = np.asarray(group["potentials"][...])  # type: ignore[index]
        sizes = np.asarray(group["sizes"][...]) if "sizes" in group else None  # type: ignore[index]
        attrs = dict(group.attrs)
    except Exception as exc:
        raise ValueError(
            f"model {text}: not the output of 'ballot-dask fit' (needs arrays centers and "
            f"potentials): {exc}"
        ) from exc
    if centers.ndim != 2 or potentials.shape != centers.shape[:1]:
        raise ValueError(
            f"model {text}: centers {centers.shape} and potentials {potentials.shape} disagree"
        )
    if sizes is not None and sizes.shape != centers.shape[:1]:
        raise ValueError(f"model {text}: centers {centers.shape} and sizes {sizes.shape} disagree")
    return {"centers": centers, "potentials": potentials, "sizes": sizes, "attrs": attrs}
