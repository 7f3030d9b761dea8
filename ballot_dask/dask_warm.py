"""The warm-up of a Dask fit's kernels on the workers: each task a fit maps over X's chunks is
run once on every worker on a few synthetic rows before its first real map, so that the
workers compile or load its kernels before they hold a chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse
from dask.delayed import Delayed, delayed

from .dask_rounds import active_client
from .dask_tasks import warm_task
from .sparse import as_csr


def warm_workers(
    task: Callable[..., Any],
    shared: Delayed,
    kernel: Any,
    dtype: np.dtype,
    n_features: int,
    sparse: bool,
    warmed: set[tuple[Any, Any]],
) -> None:
    """On a distributed cluster, run ``task`` once on every worker on a few synthetic
    rows of X's ``dtype`` (:func:`~ballot_dask.dask_tasks.warm_task`), the first time this
    ``(task, kernel)`` is mapped (``warmed`` holds those already run): the workers compile or
    load its kernels before they hold a chunk, so loading the compiler never adds to a
    chunk's read (on 400 MB workers streaming 16 MB zstd chunks the first pass peaked 16 MiB
    higher than the others).  One round without data; not counted as a pass.  A ``kernel``
    with a ``for_warm_up()`` method is itself the shared value (the exact step's labeler,
    :class:`~ballot_dask.solvers.base.ExactLabels`): the warm-up runs on what that method
    returns, the kernel without the data it carries, since each worker's run is its own
    graph (one copy of the band per worker)."""
    client = active_client()
    key = (task, _code_of(kernel))
    if client is None or key in warmed:
        return
    warmed.add(key)
    light = getattr(kernel, "for_warm_up", None)
    if light is not None:  # a kernel that carries data (and is the shared value): without it
        shared = delayed(light(), name=f"{shared.key}-warm", traverse=False)
    try:
        workers = list(client.scheduler_info(n_workers=-1)["workers"])
    except TypeError:  # distributed < 2025: always lists every worker
        workers = list(client.scheduler_info()["workers"])
    rows, d = 8, n_features
    if sparse:
        block: Any = as_csr(scipy.sparse.csr_matrix((rows, d), dtype=dtype))
    else:
        block = np.zeros((rows, d), dtype=dtype)
    # a worker that left meanwhile leaves its run to another (loose restriction); a run
    # lost with its worker is no reason to fail the fit: the real map runs anyway
    runs = [
        client.compute(
            delayed(warm_task, pure=False)(task, shared, block, ".".join(map(str, key[1]))),
            workers=[address],
            allow_other_workers=True,
        )
        for address in workers
    ]
    try:
        client.gather(runs)
    except Exception:  # the warm-up never fails a fit
        client.cancel(runs)


def _code_of(kernel: Any) -> tuple[str | None, str | None]:
    """What a kernel runs, whatever object carries it (a function, a ``functools.partial``
    of one, a bound method, a callable object): the same code warms up once."""
    func = getattr(kernel, "func", kernel)
    func = getattr(func, "__func__", func)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return getattr(func, "__module__", None), name
