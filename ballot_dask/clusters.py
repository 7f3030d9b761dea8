"""The Dask cluster a command runs on: an embedded ``LocalCluster`` by default, worker jobs on
SLURM (``--cluster slurm``), a ``DaskCluster`` on Kubernetes (``--cluster kubernetes``), or an
existing scheduler (``--scheduler ADDRESS`` / ``--scheduler-file FILE``).

The clusters other than the embedded one are built in :mod:`ballot_dask.deploy`; this module
checks which options apply to which cluster and hands out the ``Client``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CLUSTERS", "connect", "describe"]

#: ``--cluster`` values
CLUSTERS = ("local", "slurm", "kubernetes")

#: the options that start a cluster, with the clusters they apply to
APPLIES: dict[str, tuple[str, ...]] = {
    "n_workers": ("local", "kubernetes"),
    "threads_per_worker": ("local",),
    "memory_limit": ("local",),
    "tls": ("local", "slurm"),
    "jobs": ("slurm",),
    "queue": ("slurm",),
    "account": ("slurm",),
    "walltime": ("slurm",),
    "cores": ("slurm", "kubernetes"),
    "memory": ("slurm", "kubernetes"),
    "wait_workers": ("slurm", "kubernetes"),
    "image": ("kubernetes",),
    "namespace": ("kubernetes",),
    "env": ("kubernetes",),
    "keep_cluster": ("kubernetes",),
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_applies(cluster: str, remote: bool, given: dict[str, Any]) -> None:
    for name, value in given.items():
        if value in (None, False, (), {}):
            continue
        if remote:
            raise ValueError(
                f"{_option(name)} applies to a cluster this command starts; it does not apply "
                "with --scheduler/--scheduler-file"
            )
        kinds = APPLIES[name]
        if cluster not in kinds:
            where = " or ".join(f"--cluster {kind}" for kind in kinds)
            raise ValueError(f"{_option(name)} applies to {where}, not to --cluster {cluster}")


@contextmanager
def connect(
    *,
    cluster: str = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    quiet_logs: bool = True,
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    wait_workers: float | None = None,
    **options: Any,
) -> Iterator[Any]:
    """A distributed ``Client`` for the block, made the default scheduler; closed (and a
    cluster it started shut down: embedded processes stopped, SLURM jobs cancelled, the
    Kubernetes ``DaskCluster`` deleted unless ``keep_cluster``) on exit.

    Parameters
    ----------
    cluster : {"local", "slurm", "kubernetes"}, default="local"
        The cluster to start when no scheduler is named.
    scheduler, scheduler_file : str, optional
        An existing scheduler to join instead.
    quiet_logs : bool, default=True
        Silence the logs of a cluster this process runs.
    tls_ca_file, tls_cert, tls_key : str, optional
        Files to join a TLS scheduler with (else ``distributed.comm.tls.*`` apply).
    wait_workers : float, optional
        Seconds to wait for the workers of a SLURM or Kubernetes cluster.
    **options
        The options of the cluster to start, each applying to the clusters that
        :data:`APPLIES` lists: ``n_workers``, ``threads_per_worker``, ``memory_limit``,
        ``tls`` (temporary credentials), ``jobs``, ``queue``, ``account``, ``walltime``,
        ``cores``, ``memory``, ``image``, ``namespace``, ``env``, ``keep_cluster``.
    """
    from distributed import Client, LocalCluster

    from .deploy.security import client_security, temporary_security

    if cluster not in CLUSTERS:
        raise ValueError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
    unknown = set(options) - set(APPLIES)
    if unknown:
        raise TypeError(f"connect() got unexpected options {sorted(unknown)}")
    if scheduler and scheduler_file:
        raise ValueError("pass either --scheduler or --scheduler-file, not both")
    remote = bool(scheduler or scheduler_file)
    _check_applies(cluster, remote, {**options, "wait_workers": wait_workers})
    joining = client_security(tls_ca_file, tls_cert, tls_key)
    if joining is not None and not remote:
        raise ValueError(
            "--tls-ca-file/--tls-cert/--tls-key join a TLS scheduler named by --scheduler or "
            "--scheduler-file; a cluster this command starts takes --tls"
        )
    if scheduler_file and not Path(scheduler_file).exists():
        raise FileNotFoundError(f"--scheduler-file {scheduler_file}: no such file")
    wait = 600.0 if wait_workers is None else float(wait_workers)
    with ExitStack() as stack:
        if remote:
            try:
                client = stack.enter_context(
                    Client(address=scheduler, scheduler_file=scheduler_file, security=joining)
                )
            except (OSError, TypeError) as exc:
                where = scheduler or scheduler_file
                if isinstance(exc, TypeError) and "ssl_context" not in str(exc):
                    raise
                if isinstance(exc, TypeError):  # distributed's word for "no TLS settings"
                    raise ConnectionError(
                        f"cannot reach the Dask scheduler at {where}: it requires TLS; pass "
                        "--tls-ca-file, --tls-cert and --tls-key (or set distributed.comm.tls.*)"
                    ) from exc
                raise ConnectionError(f"cannot reach the Dask scheduler at {where}: {exc}") from exc
        elif cluster == "slurm":
            from .deploy.slurm import slurm_cluster

            _, client = stack.enter_context(
                slurm_cluster(
                    jobs=options.get("jobs") or 1,
                    wait=wait,
                    security=temporary_security() if options.get("tls") else None,
                    quiet_logs=quiet_logs,
                    **{
                        key: options.get(key)
                        for key in ("queue", "account", "cores", "memory", "walltime")
                    },
                )
            )
        elif cluster == "kubernetes":
            from .deploy.kubernetes import cluster_spec, kubernetes_cluster

            spec = cluster_spec(
                image=options.get("image"),
                n_workers=options.get("n_workers"),
                cores=options.get("cores"),
                memory=options.get("memory"),
                env=options.get("env"),
            )
            _, client = stack.enter_context(
                kubernetes_cluster(
                    spec,
                    namespace=options.get("namespace"),
                    keep=bool(options.get("keep_cluster")),
                    wait=wait,
                )
            )
        else:
            memory_limit = options.get("memory_limit")
            local = stack.enter_context(
                LocalCluster(
                    n_workers=options.get("n_workers"),
                    threads_per_worker=options.get("threads_per_worker"),
                    memory_limit=memory_limit if memory_limit is not None else "auto",
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.CRITICAL if quiet_logs else logging.WARNING,
                    security=temporary_security() if options.get("tls") else None,
                )
            )
            client = stack.enter_context(Client(local))
            if quiet_logs:
                client.register_plugin(_quiet_unclosed_sessions(), name="ballot-quiet-sessions")
        yield client


class _UnclosedSessionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Unclosed client session", "Unclosed connector"))


def _quiet_unclosed_sessions() -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietUnclosedSessions(WorkerPlugin):  # type: ignore[misc]
        """A worker plugin for the embedded cluster, whose workers print to the command's
        stderr: the HTTP sessions of s3fs (aiohttp) are not closed when a worker exits, and
        asyncio reports each on the way out; the command's output keeps to its results."""

        def setup(self, worker: Any) -> None:
            logging.getLogger("asyncio").addFilter(_UnclosedSessionFilter())

    return QuietUnclosedSessions()


def _slurm_job_id() -> str | None:
    import os

    return os.environ.get("SLURM_JOB_ID")


def describe(client: Any) -> dict[str, Any]:
    """Where a computation ran, for the record of its output: the scheduler's protocol,
    the number of workers and, for workers inside SLURM jobs, the jobs' ids (each worker
    reports its own ``SLURM_JOB_ID``)."""
    address = str(client.scheduler.address)
    try:
        job_ids = client.run(_slurm_job_id)
    except Exception:  # a record must not fail a finished computation
        job_ids = {}
    record: dict[str, Any] = {
        "protocol": address.split("://", 1)[0] if "://" in address else "tcp",
        "workers": len(job_ids) or len(client.scheduler_info(n_workers=-1).get("workers", {})),
    }
    found = sorted({job for job in job_ids.values() if job})
    if found:
        record["slurm_job_ids"] = found
    return record
