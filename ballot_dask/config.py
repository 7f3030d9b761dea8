"""Defaults of the ``ballot.*`` keys of :mod:`dask.config`.

They can be changed like any Dask setting, in code (``dask.config.set({"ballot.persist":
False})``), in a Dask YAML file, or through the environment (``DASK_BALLOT__PERSIST=false``).
Importing the package only registers these defaults; nothing is written to the user's home.

``ballot.persist``
    Keep X and the cost blocks in the cluster's memory between passes: ``"auto"`` (when they
    take at most ``ballot.memory-fraction`` of it), ``true`` or ``false`` (stream them from X
    on every pass: for data larger than the cluster's memory).
``ballot.memory-fraction``
    The share of the cluster's memory (the workers' memory limits; the machine's available
    memory on a local scheduler) that persisted data may take.
``ballot.band-memory``
    The largest set of doubtful points the exact repair may gather on the client (their cost
    rows, k float64 each, and three more numbers; from k = 128, their 24 cheapest clusters,
    about 630 bytes a point, once the potentials are informed).  A pass gathers at most
    this (its band's rows spread unevenly over the chunks may take up to all of it, so the
    band's limit is half).  Beyond it the fit fails with a clear message instead of
    exhausting memory.  It also bounds the fit's row
    samples the client holds: for X of millions of rows and k up to 32 the exact step's
    *shift sample* (one row in four, at most half of this budget; the band has the rest,
    and the whole of it from the first step whose band needs more).
``ballot.split-every``
    Fan-in of the tree reductions.
``ballot.futures``
    With a distributed ``Client`` and X persisted, run a pass over X (or over the persisted
    cost blocks) as futures of the client (a task a chunk, submitted in one message, one
    gather) rather than as a graph computed by ``dask.compute``: the same tasks and
    results, less work on the client a round.
``ballot.threads-per-task``
    Threads of the compiled kernels inside one Dask task (Dask already runs one task per
    worker thread).
``ballot.init-sample``
    Rows sampled from a Dask array to choose the initial centers (at least 64 per cluster).
``ballot.kernel-cache``
    Where the compiled kernels are cached: ``"auto"`` (``NUMBA_CACHE_DIR`` if set, else a
    directory private to the user under the system's temporary directory), a path, or
    ``false`` (compile in every process).  Read when the kernels are first imported, so set
    it in the environment (``DASK_BALLOT__KERNEL_CACHE``) or before importing the package.
``ballot.compile-ahead``
    On a cold kernel cache, an exact fit compiles its pass for X's dtype in a second process
    while it compiles its other kernels (``ballot_dask.ahead``; an E-BalLOT fit its own pass
    and the exact pass, in two): the first fit after an install takes about a third less
    time on two cores or more.  ``false``: one process.
``ballot.release-compiler-pages``
    After each Dask task, drop the compiler library's machine code (LLVM, needed only to
    compile or load the kernels) from the worker's resident memory, which a Dask nanny
    counts against the worker's limit (``ballot_dask.compiler_pages``).
``ballot.progress-after``
    Command line: seconds after which a running pass gets a Dask progress bar (on a terminal).
``ballot.cluster.*``
    Command line: the cluster a command runs on when its options do not say.
    ``scheduler-address`` / ``scheduler-file`` name an existing scheduler; otherwise an
    embedded ``LocalCluster`` is started with ``n-workers`` worker processes (``null``: one per
    core), ``threads-per-worker`` threads each and a ``memory-limit`` per worker (``auto``: the
    machine's memory shared among them).  For instance ``DASK_BALLOT__CLUSTER__N_WORKERS=4``.
    ``kind`` is the cluster started when ``--cluster`` is not given (``local``, ``slurm``,
    ``kubernetes``); ``jobs`` the SLURM worker jobs (``--jobs``); ``wait-workers`` how long
    a SLURM or Kubernetes cluster's workers are waited for (``--wait-workers``).  The job
    and pod settings themselves are dask-jobqueue's ``jobqueue.slurm.*`` and
    dask-kubernetes' ``kubernetes.*`` keys.
``ballot.storage-options``
    Command line: options of the fsspec file system of ``s3://`` (or other URL) inputs and
    outputs, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}``; ``--storage-options``
    overrides them.  Credentials come the standard way (for S3: the AWS environment
    variables, including ``AWS_ENDPOINT_URL``, and config files).
"""

from __future__ import annotations

from typing import Any

import dask.config
from dask.utils import parse_bytes

DEFAULTS: dict[str, Any] = {
    "ballot": {
        "persist": "auto",
        "memory-fraction": 0.25,
        "band-memory": "512 MiB",
        "split-every": 8,
        "futures": True,
        "threads-per-task": 1,
        "init-sample": 65536,
        "progress-after": 2.0,
        "kernel-cache": "auto",
        "compile-ahead": True,
        "release-compiler-pages": True,
        "cluster": {
            "scheduler-address": None,
            "scheduler-file": None,
            "n-workers": None,
            "threads-per-worker": None,
            "memory-limit": "auto",
            "kind": "local",
            "jobs": 1,
            "wait-workers": "10 minutes",
        },
        "storage-options": {},
    }
}

dask.config.update_defaults(DEFAULTS)


def get(key: str) -> Any:
    """The current value of ``ballot.<key>``."""
    return dask.config.get(f"ballot.{key}")


def persist_mode() -> bool | None:
    """``ballot.persist`` as ``True``, ``False`` or ``None`` (auto)."""
    value = get("persist")
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "auto":
            return None
        if low in ("true", "yes", "1"):
            return True
        if low in ("false", "no", "0"):
            return False
    elif isinstance(value, bool):
        return value
    raise ValueError(f"ballot.persist must be 'auto', true or false, got {value!r}")


def band_memory() -> int:
    """``ballot.band-memory`` in bytes."""
    value = get("band-memory")
    try:
        size = int(parse_bytes(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"ballot.band-memory must be a size like '256 MiB', got {value!r}"
        ) from exc
    if size <= 0:
        raise ValueError(f"ballot.band-memory must be positive, got {value!r}")
    return size
