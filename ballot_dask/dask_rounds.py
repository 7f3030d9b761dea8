"""How the Dask engine's rounds reach the cluster: the active client and its memory, the
round runner a progress display installs (:func:`observe_rounds`), the tree of combines, and
a round submitted as the client's futures (:func:`futures_round`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import dask
import psutil
from dask.delayed import Delayed
from dask.sizeof import sizeof

from . import config
from .dask_tasks import combine_group

__all__ = [
    "active_client",
    "chunk_futures",
    "cluster_memory",
    "combine_levels",
    "compute_round",
    "futures_round",
    "observe_rounds",
    "part_futures",
    "rounds_observed",
]

#: a round's shared arguments up to this size travel inline with its tasks (else scattered)
_INLINE_BYTES = 1 << 20

#: computes one round's top-level tasks instead of ``dask.compute`` (a progress display)
_ROUND_RUNNER: ContextVar[Callable[[list[Delayed]], list[Any]] | None] = ContextVar(
    "ballot_round_runner", default=None
)


@contextmanager
def observe_rounds(runner: Callable[[list[Delayed]], list[Any]]) -> Iterator[None]:
    """Within the block, every round of the engine is computed by ``runner(tasks)``, which
    must return ``dask.compute(*tasks)``'s results as a list (for instance after showing
    the round's progress)."""
    token = _ROUND_RUNNER.set(runner)
    try:
        yield
    finally:
        _ROUND_RUNNER.reset(token)


def active_client() -> Any | None:
    """The distributed ``Client`` whose scheduler ``dask.compute`` would use, if any."""
    scheduler = dask.base.get_scheduler()
    owner = getattr(scheduler, "__self__", None)
    if owner is not None and type(owner).__name__ == "Client":
        return owner
    return None


def cluster_memory() -> int:
    """Memory the active scheduler can hold: the workers' limits, or this machine's free
    memory for a local scheduler (or workers without a limit)."""
    client = active_client()
    if client is not None:
        try:
            info = client.scheduler_info(n_workers=-1)  # every worker, not the first few
        except TypeError:  # distributed < 2025: always lists every worker
            info = client.scheduler_info()
        workers = info.get("workers", {})
        limits = [w.get("memory_limit") or 0 for w in workers.values()]
        if limits and all(limits):
            return int(sum(limits))
    return int(psutil.virtual_memory().available)


def rounds_observed() -> bool:
    """Whether a round runner (:func:`observe_rounds`) is installed."""
    return _ROUND_RUNNER.get() is not None


def compute_round(level: list[Delayed]) -> list[Any]:
    """The results of a round's top-level tasks: by the installed runner, else
    ``dask.compute``."""
    runner = _ROUND_RUNNER.get()
    if runner is None:
        (results,) = dask.compute(level, optimize_graph=False)
        return list(results)
    return list(runner(level))


def combine_levels(parts: list[Any], nodes: Callable[[list[list[Any]]], list[Any]]) -> list[Any]:
    """Group ``parts`` ``ballot.split-every`` at a time, each level's groups made into
    ``nodes(groups)`` (a node per group), until at most that many are left (the client
    combines those: one hop fewer than a full tree)."""
    fan_in = max(2, int(config.get("split-every")))
    level = parts
    while len(level) > fan_in:
        level = nodes([level[i : i + fan_in] for i in range(0, len(level), fan_in)])
    return level


def chunk_futures(X: Any) -> list[Any] | None:
    """The futures of the active distributed client that hold a persisted dask array's
    chunks, in row order, when every chunk is one; else ``None``."""
    from dask.core import flatten
    from distributed import futures_of

    held = {f.key: f for f in futures_of(X)}
    keys = list(flatten(X.__dask_keys__()))
    if not all(key in held for key in keys):
        return None
    return [held[key] for key in keys]


def part_futures(parts: list[Any]) -> list[Any] | None:
    """The future that holds each persisted ``Delayed`` of ``parts``, or ``None`` when one
    is held otherwise."""
    from distributed import futures_of

    held = [futures_of(part) for part in parts]
    return [one[0] for one in held] if all(len(one) == 1 for one in held) else None


def futures_round(
    task: Callable[..., Any],
    value: Any,
    chunks: list[Any],
    offsets: list[int],
    combine: Callable[[list[Any]], Any],
) -> list[Any]:
    """``task(value, X_b, offset)`` submitted to the active client for every chunk future (no
    graph built and optimised on the client), combined on the workers as the engine's tree
    is (:func:`combine_levels`), one gather; the top level's results.  ``value`` travels
    inline with the tasks when small, else scattered once.

    Each level of the tree goes to the scheduler as one message (``client.map``): the
    client batches what it sends at most every 10 ms, so tasks submitted one by one reach
    the scheduler in two batches, the second a full interval later (a round of no-op tasks
    over four chunks on a 2-process ``LocalCluster``: 19 ms submitted one by one, 13 ms
    mapped)."""
    client = active_client()
    if client is None:
        raise RuntimeError("futures_round needs an active distributed client")
    shared = client.scatter(value, hash=False) if sizeof(value) > _INLINE_BYTES else value
    level = client.map(task, [shared] * len(chunks), chunks, offsets, pure=False)
    level = combine_levels(
        level,
        lambda groups: client.map(combine_group, [combine] * len(groups), groups, pure=False),
    )
    return list(client.gather(level))
