"""Checkpoints of a fit: the Lloyd state after every iteration, saved beside the output.

A checkpoint is one ``.npz`` file (centers, previous centers, potentials, objective history
and a JSON record of the fit's arguments), replaced atomically after every Lloyd iteration.
A fit resumed from it (:func:`load_state`, then ``BalancedKMeans.fit(..., resume=state)``)
takes the same steps as the uninterrupted fit; it is refused when the arguments differ.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .lloyd import LloydState
from .storage import is_url, remove_leftovers

__all__ = ["checkpoint_path", "load_state", "save_state"]

_FORMAT = 1
#: arguments that may change between a fit and its resumption
RESUMABLE = frozenset({"max_iter"})


def checkpoint_path(output: Path | str) -> Any:
    """Where the checkpoint of a fit writing ``output`` lives: beside it (an object beside
    an output in an object store)."""
    if isinstance(output, str) and is_url(output):
        return output.rstrip("/") + ".checkpoint.npz"
    output = Path(output)
    return output.with_name(output.name + ".checkpoint.npz")


def _save_remote(url: str, arrays: dict[str, np.ndarray]) -> None:
    from .objectstore import put_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    put_bytes(url, buffer.getvalue())  # one object, replaced at once


def save_state(path: Path | str, state: LloydState, params: dict[str, Any]) -> None:
    """Write ``state`` and the fit's ``params`` to ``path`` atomically."""
    record = {
        "format": _FORMAT,
        "params": params,
        "iteration": state.iteration,
        "eps": None if state.eps is None else float(state.eps),
        "converged": bool(state.converged),
        "shift": float(state.shift),
        "band_size": None if state.band_size is None else int(state.band_size),
        "short_steps": int(state.short_steps),
        "passes": {key: int(value) for key, value in state.passes.items()},
        "sinkhorn_tol": state.sinkhorn_tol,
        "sample_curvature": bool(state.sample_curvature),
    }
    arrays = {
        "centers": state.centers,
        "previous": state.previous,
        "potentials": state.potentials,
        "objective_history": np.asarray(state.objective_history, dtype=np.float64),
        "record": np.frombuffer(json.dumps(record).encode(), dtype=np.uint8),
    }
    if state.reference is not None:
        arrays["reference"] = np.asarray(state.reference, dtype=np.float64)
    if isinstance(path, str) and is_url(path):
        _save_remote(path, arrays)
        return
    path = Path(path)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path | str, params: dict[str, Any]) -> LloydState:
    """The state saved at ``path``, checked to come from a fit with the same ``params``."""
    try:
        if isinstance(path, str) and is_url(path):
            from .objectstore import get_bytes

            source: Any = io.BytesIO(get_bytes(path))
        else:
            source = path
        with np.load(source, allow_pickle=False) as data:
            record = json.loads(bytes(data["record"]).decode())
            arrays = {key: np.array(data[key]) for key in data.files if key != "record"}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"checkpoint {path} is unreadable ({exc}); remove it to start the fit again"
        ) from exc
    if record.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {path} has an unknown format; remove it to start again")
    saved = record["params"]
    params = json.loads(json.dumps(params))  # compared as saved: tuples become lists
    changed = sorted(
        key
        for key in set(saved) | set(params)
        if key not in RESUMABLE and saved.get(key) != params.get(key)
    )
    if changed:
        key = changed[0]
        raise ValueError(
            f"checkpoint {path} is from a fit with other arguments ({key}: "
            f"{saved.get(key)!r} then, {params.get(key)!r} now); rerun with the same "
            "arguments, or without --resume and with --overwrite to start again"
        )
    return LloydState(
        iteration=int(record["iteration"]),
        centers=arrays["centers"],
        previous=arrays["previous"],
        potentials=arrays["potentials"],
        eps=record["eps"],
        objective_history=arrays["objective_history"].tolist(),
        converged=bool(record["converged"]),
        shift=float(record["shift"]),
        band_size=record["band_size"],
        short_steps=int(record["short_steps"]),
        passes=dict(record["passes"]),
        sinkhorn_tol=record.get("sinkhorn_tol"),  # (absent from an older checkpoint)
        reference=arrays.get("reference"),
        sample_curvature=bool(record.get("sample_curvature", True)),
    )
