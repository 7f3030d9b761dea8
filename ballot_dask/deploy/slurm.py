"""Worker jobs on SLURM: dask-jobqueue's ``SLURMCluster``, scaled to ``--jobs`` jobs, waited
for, and every job it submitted cancelled when the command ends (success, error, Ctrl-C or
SIGTERM).

The job settings are dask-jobqueue's own (``jobqueue.slurm.*`` in Dask's configuration, e.g.
a ``jobqueue.yaml`` in ``~/.config/dask`` or in the directory ``DASK_CONFIG`` names; see
``deploy/slurm/jobqueue.yaml``); the command line overrides the common ones (``--queue``,
``--account``, ``--cores``, ``--memory``, ``--walltime``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dask.config
from dask.utils import parse_bytes

from ..interrupts import signals_as_interrupt
from . import import_without_config_files, missing_extra
from .waiting import wait_for_workers

__all__ = ["Submissions", "cluster_kwargs", "job_states", "slurm_cluster"]

#: the command-line overrides, by SLURMCluster keyword
OVERRIDES = ("queue", "account", "cores", "memory", "walltime")


@dataclass
class Submissions:
    """What happened to the worker jobs a cluster submitted: their ids, and what ``sbatch``
    said when it refused one."""

    job_ids: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def cluster_kwargs(
    *,
    queue: str | None = None,
    account: str | None = None,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
) -> dict[str, Any]:
    """The ``SLURMCluster`` keywords for the given overrides; the others are left to
    ``jobqueue.slurm.*``.

    Raises ``ValueError`` naming the option when a setting is missing or malformed.
    """
    _job_class()  # registers the jobqueue.* defaults
    given = {
        "queue": queue,
        "account": account,
        "cores": cores,
        "memory": memory,
        "walltime": walltime,
    }
    resolved = {
        key: dask.config.get(f"jobqueue.slurm.{key}", override_with=value)
        for key, value in given.items()
    }
    if resolved["cores"] is None or resolved["memory"] is None:
        raise ValueError(
            "--cluster slurm needs the size of a worker job: pass --cores and --memory "
            "(or set jobqueue.slurm.cores and jobqueue.slurm.memory, as in "
            "deploy/slurm/jobqueue.yaml)"
        )
    try:
        if int(resolved["cores"]) < 1:
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--cores must be a positive integer, got {resolved['cores']!r}") from exc
    try:
        parse_bytes(resolved["memory"])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"--memory must be a size such as '4GB' (per worker job), got {resolved['memory']!r}"
        ) from exc
    return {key: value for key, value in given.items() if value is not None}


def _job_class() -> type:
    try:
        import_without_config_files("dask_jobqueue")
        from dask_jobqueue.slurm import SLURMJob
        from distributed.core import Status
    except ImportError as exc:
        raise missing_extra("dask_jobqueue", "slurm", "--cluster slurm") from exc

    class RecordedSLURMJob(SLURMJob):  # type: ignore[misc, valid-type]
        """A ``SLURMJob`` that records its job id and what ``sbatch`` said when it refused
        the job (dask-jobqueue raises that inside the cluster's event loop, out of the
        caller's reach)."""

        def __init__(self, *args: Any, submissions: Submissions | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._submissions = submissions if submissions is not None else Submissions()

        async def start(self) -> None:
            try:
                await super().start()
            except RuntimeError as exc:
                self._submissions.refusals.append(_stderr_of(str(exc)))
                # the cluster's close expects a job that never started to say so
                self.status = Status.failed
                raise
            self._submissions.job_ids.append(str(self.job_id))

    return RecordedSLURMJob


def _stderr_of(message: str) -> str:
    """The ``stderr`` part of dask-jobqueue's report of a failed command, on one line."""
    _, _, err = message.partition("stderr:")
    lines = [line.strip() for line in (err or message).splitlines() if line.strip()]
    return "; ".join(lines)


def job_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` as ``squeue`` reports them (recently ended jobs too)."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "--states=all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        states[job_id] = (state, reason)
    return states


def _report(submissions: Submissions, log_directory: str | None) -> str:
    """What SLURM says of the worker jobs, on one line."""
    if not submissions.job_ids:
        return "SLURM accepted no worker job yet"
    states = job_states(submissions.job_ids)
    parts = []
    # in job-id order (jobs are submitted concurrently, so the order they were recorded in
    # is not the order SLURM numbered them)
    for job_id in sorted(submissions.job_ids, key=lambda j: (len(j), j)):
        state, reason = states.get(job_id, ("gone from the queue", ""))
        parts.append(
            f"job {job_id} {state}" + (f" ({reason})" if reason not in ("", "None") else "")
        )
    where = f"; the jobs' logs are in {log_directory}" if log_directory else ""
    return (
        f"SLURM: {', '.join(parts)}{where}; cancelled them (raise --wait-workers, or ask for "
        "fewer --cores/--memory or another --queue)"
    )


def _refused(submissions: Submissions) -> str | None:
    if not submissions.refusals:
        return None
    return (
        f"SLURM refused the worker job: {submissions.refusals[0]} (check --memory, --cores, "
        "--walltime, --queue and --account against what the cluster offers)"
    )


def _cancel(job_ids: list[str]) -> None:
    """``scancel`` the jobs still known to SLURM (the cluster's own close cancels them too;
    this also covers a close that was interrupted)."""
    if not job_ids or shutil.which("scancel") is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60, check=False)


@contextlib.contextmanager
def slurm_cluster(
    *,
    jobs: int,
    wait: float,
    security: Any = None,
    quiet_logs: bool = True,
    **overrides: Any,
) -> Iterator[Any]:
    """A ``SLURMCluster`` with ``jobs`` worker jobs that have all joined; every job it
    submitted is cancelled on exit.

    Parameters
    ----------
    jobs : int
        Worker jobs to submit (each runs ``jobqueue.slurm.processes`` workers).
    wait : float
        Seconds to wait for all the workers (``--wait-workers``).
    security : distributed.Security, optional
        TLS for the scheduler and the workers (``--tls``).  Temporary credentials are written
        for the worker jobs into ``jobqueue.slurm.shared-temp-directory`` (by default the
        working directory, which the jobs must see) and removed on exit.
    quiet_logs : bool, default=True
        Silence the scheduler's log.
    **overrides
        ``queue``, ``account``, ``cores``, ``memory``, ``walltime`` (:func:`cluster_kwargs`).

    Yields
    ------
    (cluster, client)
        The cluster and a ``Client`` of it.

    Raises
    ------
    WorkersDidNotStart
        When SLURM refuses the jobs or the workers do not join in time; the message says
        what SLURM reported (pending reasons, job ids).
    """
    import logging

    from distributed import Client

    kwargs = cluster_kwargs(**overrides)
    if shutil.which("sbatch") is None:
        raise FileNotFoundError(
            "--cluster slurm submits worker jobs with sbatch, which is not on the PATH: run on "
            "a SLURM login node (or load its slurm module)"
        )
    job_cls = _job_class()
    from dask_jobqueue import SLURMCluster

    submissions = Submissions()
    if security is not None:
        shared = dask.config.get("jobqueue.slurm.shared-temp-directory") or os.getcwd()
        kwargs["shared_temp_directory"] = shared
    log_directory = dask.config.get("jobqueue.slurm.log-directory")
    with contextlib.ExitStack() as stack:
        # SIGTERM (what SLURM sends a batch job it cancels or that reaches its time limit)
        # interrupts as Ctrl-C does, so that the worker jobs are cancelled on the way out
        stack.enter_context(signals_as_interrupt(signal.SIGTERM))
        stack.callback(_cancel, submissions.job_ids)  # last: after the cluster's close
        cluster = stack.enter_context(
            SLURMCluster(
                job_cls=job_cls,  # type: ignore[arg-type]
                submissions=submissions,
                security=security,
                silence_logs=logging.CRITICAL if quiet_logs else logging.WARNING,
                **kwargs,
            )
        )
        client = stack.enter_context(Client(cluster))
        cluster.scale(jobs=jobs)
        # each job runs jobqueue.slurm.processes workers (dask-jobqueue's own scale reads it
        # from the same job template)
        per_job = int(cluster._dummy_job.worker_processes)
        wait_for_workers(
            client,
            jobs * per_job,
            wait,
            report=lambda: _report(submissions, log_directory),
            refused=lambda: _refused(submissions),
        )
        yield cluster, client
