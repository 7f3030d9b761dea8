"""The Dask cluster a command runs on: an embedded ``LocalCluster`` by default, or an existing
scheduler (``--scheduler ADDRESS`` / ``--scheduler-file FILE``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CLUSTERS", "connect"]

#: ``--cluster`` values: ``local`` now; the others come with the deployment files
CLUSTERS = ("local", "slurm", "kubernetes")


@contextmanager
def connect(
    *,
    cluster: str = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    quiet_logs: bool = True,
) -> Iterator[Any]:
    """A distributed ``Client`` for the block, made the default scheduler; closed (and an
    embedded cluster shut down) on exit."""
    from distributed import Client, LocalCluster

    if cluster not in CLUSTERS:
        raise ValueError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
    if cluster != "local":
        raise ValueError(
            f"--cluster {cluster} is not available yet; start the cluster yourself and pass "
            "--scheduler ADDRESS or --scheduler-file FILE"
        )
    if scheduler and scheduler_file:
        raise ValueError("pass either --scheduler or --scheduler-file, not both")
    remote = scheduler or scheduler_file
    if remote and (n_workers or threads_per_worker or memory_limit):
        raise ValueError(
            "--n-workers, --threads-per-worker and --memory-limit size the embedded cluster; "
            "they do not apply with --scheduler/--scheduler-file"
        )
    if scheduler_file and not Path(scheduler_file).exists():
        raise FileNotFoundError(f"--scheduler-file {scheduler_file}: no such file")
    with ExitStack() as stack:
        if remote:
            try:
                client = stack.enter_context(
                    Client(address=scheduler, scheduler_file=scheduler_file)
                )
            except OSError as exc:
                raise ConnectionError(
                    f"cannot reach the Dask scheduler at {scheduler or scheduler_file}: {exc}"
                ) from exc
        else:
            local = stack.enter_context(
                LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    memory_limit=memory_limit if memory_limit is not None else "auto",
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.CRITICAL if quiet_logs else logging.WARNING,
                )
            )
            client = stack.enter_context(Client(local))
        yield client
