"""Every row's label, held where an exact pass computed it (a Dask worker), for the fit's
labels: the step's labels then need no other pass over X.

In memory, the exact pass returns every row's label (``keep_labels``) and the step's labels
are those, the band's rows overridden (:meth:`~ballot_dask.solvers.base.ExactLabels.held`).
On a Dask cluster, returning them would ship ``n`` labels to the client every iteration.
Instead, when X is persisted, each chunk's task keeps its labels in its own process under
the pass's key (:func:`hold`), and returns its summary without them.  The labels of the last
step are then computed by a task on the chunk (it runs where the chunk is, as the pass did),
which takes the held labels (:func:`take`) and overrides the band's rows; where they are not
found (another worker ran the task, or the process restarted), it computes them from the
chunk as before (:func:`~ballot_dask.exact_pass.power_labels`): the same labels, by the same
arithmetic, at the cost of the pass.

Where a task runs is the scheduler's choice: for small chunks it weighs the workers' load
above the chunk's transfer, and may run a chunk's pass on one worker and its labels task on
the other.  On a distributed cluster the labels tasks are therefore placed on the workers
that hold their blocks (:func:`holders`, one broadcast to the workers; :func:`on_holders`,
a ``workers`` annotation with ``allow_other_workers``, so a lost worker only costs the read).

Contracts:

- a key is fresh for every pass (:meth:`~ballot_dask.dask_blocks.DaskBlocks.keep_labels`),
  so labels are never taken from another pass than the one they were counted in;
- a process holds the labels of its last ``_KEYS`` keys (the last pass's: int32, 4 bytes a
  row of its chunks, whose persisted X holds ``4 d`` or ``8 d``); older ones are dropped, and
  :func:`take` drops what it returns (after a fit's labels, nothing is left but the chunks
  whose labels task ran on another worker);
- the warm-up of a task on synthetic rows (:func:`~ballot_dask.dask_tasks.warm_task`) holds
  and takes nothing (:func:`warming`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import dask
import numpy as np

__all__ = ["hold", "holders", "on_holders", "take", "warming"]

#: the keys (passes) whose labels a process holds at most: the last pass's (a step's labels
#: come from its last pass, and the fit's from its last step)
_KEYS = 1

_LOCK = threading.Lock()
_HELD: OrderedDict[str, dict[int, np.ndarray]] = OrderedDict()
_WARMING: ContextVar[bool] = ContextVar("ballot_held_labels_warming", default=False)


@contextmanager
def warming() -> Iterator[None]:
    """Within the block, :func:`hold` holds and :func:`take` takes nothing (a warm-up on
    synthetic rows)."""
    token = _WARMING.set(True)
    try:
        yield
    finally:
        _WARMING.reset(token)


def hold(key: str, offset: int, labels: np.ndarray) -> None:
    """Hold the labels of the block of rows starting at ``offset`` under the pass's ``key``;
    the keys beyond the last ``_KEYS`` are dropped."""
    if _WARMING.get():
        return
    with _LOCK:
        held = _HELD.pop(key, {})
        held[int(offset)] = labels
        _HELD[key] = held
        while len(_HELD) > _KEYS:
            _HELD.popitem(last=False)


def take(key: str, offset: int, length: int) -> np.ndarray | None:
    """The labels held under ``key`` for the block of ``length`` rows at ``offset``, dropped
    from the holding; ``None`` when this process holds none (or is warming up: the warm-up's
    synthetic rows at offset 0 must not take the first chunk's)."""
    if _WARMING.get():
        return None
    with _LOCK:
        held = _HELD.get(key)
        labels = None if held is None else held.get(int(offset))
        if held is None or labels is None or labels.shape[0] != length:
            return None
        del held[int(offset)]
        if not held:
            del _HELD[key]
    return labels


def held_keys() -> list[str]:
    """The keys this process holds labels under, oldest first (for diagnostics)."""
    with _LOCK:
        return list(_HELD)


def held_offsets(key: str) -> list[int]:
    """The offsets of the blocks this process holds labels for under ``key``."""
    with _LOCK:
        return sorted(_HELD.get(key, {}))


def holders(client: Any, key: str, lengths: Sequence[int]) -> dict[int, str]:
    """Block index -> the address of the worker that holds the block's labels under ``key``,
    for the blocks of ``lengths`` rows in order (one ``client.run`` on the workers); the
    blocks no worker holds are left out, and a failed broadcast leaves out every block (the
    labels are then computed wherever their tasks run)."""
    try:
        found = client.run(held_offsets, key)
    except Exception:  # a worker leaving mid-broadcast: placement is an optimisation only
        return {}
    where = {offset: address for address, offsets in found.items() for offset in offsets}
    starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]])
    return {b: where[int(s)] for b, s in enumerate(starts) if int(s) in where}


def on_holders(name: str, where: dict[int, str]) -> Any:
    """A context in which the tasks of the layer ``name`` (keys ``(name, b, ...)``) created are
    annotated to run on the worker ``where[b]`` (elsewhere if it is gone); no annotation when
    ``where`` is empty.  The graph must then be computed unoptimised (optimisation drops
    annotations)."""
    if not where:
        return nullcontext()

    def worker(key: Any) -> list[str] | None:
        if isinstance(key, tuple) and key[0] == name and key[1] in where:
            return [where[key[1]]]
        return None

    return dask.annotate(workers=worker, allow_other_workers=True)
