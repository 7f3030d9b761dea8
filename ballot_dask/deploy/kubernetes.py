"""A Dask cluster on Kubernetes: a ``DaskCluster`` resource built with dask-kubernetes'
``make_cluster_spec``, created through its operator (``KubeCluster``), waited for, and
deleted when the command ends unless ``--keep-cluster``.

:func:`cluster_spec` is pure (the resource, as a dict); :func:`kubernetes_cluster` submits
it.  Every setting comes from the command line or dask-kubernetes' ``kubernetes.*`` keys of
Dask's configuration (``kubernetes.name``, ``.namespace``, ``.image``, ``.count.start``,
``.resources``, ``.env``, ``.worker-command``, ``.scheduler-service-type``), resolved with
``dask.config.get(key, override_with=value)`` as ``KubeCluster`` does.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import dask.config
from dask.utils import parse_bytes

from . import import_without_config_files, missing_extra
from .waiting import wait_for_workers

__all__ = ["DEFAULT_IMAGE", "cluster_spec", "kubernetes_cluster", "parse_env"]

#: dask-kubernetes' default image and worker command: the image lacks ballot-dask, and
#: current ``distributed`` installs ``dask worker``/``dask scheduler``, not ``dask-worker``
_UPSTREAM_IMAGE = "ghcr.io/dask/dask:latest"
_UPSTREAM_WORKER_COMMAND = "dask-worker"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ballot-dask")
    except PackageNotFoundError:  # pragma: no cover - a source tree
        return "latest"


#: the image ``deploy/docker/Dockerfile`` builds (push it to your registry and pass
#: ``--image REGISTRY/ballot-dask:VERSION`` or set ``kubernetes.image``)
DEFAULT_IMAGE = f"ballot-dask:{_version()}"


def parse_env(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("A=1", "B=x")`` -> ``{"A": "1", "B": "x"}`` (``--env``)."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise ValueError(f"--env must be NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def _strip_none(value: Any) -> Any:
    """The spec without ``None`` values (the API server prunes them; the schemas reject them)."""
    if isinstance(value, Mapping):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value if v is not None]
    return value


def cluster_spec(
    *,
    name: str | None = None,
    image: str | None = None,
    n_workers: int | None = None,
    cores: int | None = None,
    memory: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``DaskCluster`` resource that ``--cluster kubernetes`` creates.

    Parameters
    ----------
    name : str, optional
        The cluster's name (``kubernetes.name``: ``{user}`` and ``{uuid}`` are filled in).
    image : str, optional
        The scheduler's and workers' image (``kubernetes.image``; dask-kubernetes' own
        default lacks ballot-dask, so :data:`DEFAULT_IMAGE` replaces it).
    n_workers : int, optional
        Worker pods (``kubernetes.count.start``); at least one.
    cores, memory : optional
        CPU and memory of each pod (requests and limits, over ``kubernetes.resources``);
        the worker runs as many threads and that memory limit.
    env : mapping, optional
        Environment of the pods, over ``kubernetes.env``.

    Returns
    -------
    dict
        The resource, ``None`` values removed.
    """
    try:
        import_without_config_files("dask_kubernetes")
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError as exc:
        raise missing_extra("dask_kubernetes", "kubernetes", "--cluster kubernetes") from exc

    image = dask.config.get("kubernetes.image", override_with=image)
    if image in (None, _UPSTREAM_IMAGE):
        image = DEFAULT_IMAGE
    count = dask.config.get("kubernetes.count.start", override_with=n_workers)
    if not count or int(count) < 1:
        raise ValueError(
            "--cluster kubernetes needs the number of worker pods: pass --n-workers "
            "(or set kubernetes.count.start)"
        )
    resources = _resources(
        dask.config.get("kubernetes.resources", override_with=None) or {}, cores, memory
    )
    command = str(dask.config.get("kubernetes.worker-command"))
    if command == _UPSTREAM_WORKER_COMMAND:
        command = "dask worker"
    if cores is not None:
        command += f" --nthreads {int(cores)}"
    if memory is not None:
        command += f" --memory-limit {parse_bytes(memory)}"
    merged_env = {**(dask.config.get("kubernetes.env") or {}), **(env or {})}
    raw_name = dask.config.get("kubernetes.name", override_with=name)
    cluster_name = str(raw_name).format(user=getpass.getuser(), uuid=uuid.uuid4().hex[:10])
    cluster_name = re.sub(r"[^a-z0-9-]", "-", cluster_name.lower()).strip("-")[:63]
    spec = make_cluster_spec(
        name=cluster_name,
        image=image,
        n_workers=int(count),
        resources=resources or None,
        env=merged_env,
        worker_command=command,
        scheduler_service_type=dask.config.get("kubernetes.scheduler-service-type"),
    )
    for container in spec["spec"]["scheduler"]["spec"]["containers"]:
        if container["args"][:1] == ["dask-scheduler"]:  # not installed by distributed now
            container["args"] = ["dask", "scheduler", *container["args"][1:]]
    return _strip_none(spec)  # type: ignore[no-any-return]


def _resources(
    configured: Mapping[str, Any], cores: int | None, memory: str | None
) -> dict[str, Any]:
    resources = {key: dict(value or {}) for key, value in configured.items()}
    for kind in ("requests", "limits"):
        if cores is not None:
            resources.setdefault(kind, {})["cpu"] = str(int(cores))
        if memory is not None:
            try:
                resources.setdefault(kind, {})["memory"] = str(parse_bytes(memory))
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"--memory must be a size such as '4GiB' (per worker pod), got {memory!r}"
                ) from exc
    return resources


def _report(name: str, namespace: str | None) -> str:
    """What Kubernetes says of the cluster's pods, on one line."""
    try:
        import kr8s

        pods = kr8s.get("pods", label_selector={"dask.org/cluster-name": name}, namespace=namespace)
        parts = []
        for pod in pods:
            status = pod.raw.get("status", {})
            reasons = [
                c.get("reason") or c.get("message")
                for c in status.get("conditions", [])
                if c.get("status") == "False"
            ]
            detail = f" ({'; '.join(r for r in reasons if r)})" if any(reasons) else ""
            parts.append(f"pod {pod.name} {status.get('phase', '?')}{detail}")
        seen = ", ".join(parts) or "no pod yet"
    except Exception as exc:  # the report must not hide the time-out
        seen = f"pods not listed ({type(exc).__name__})"
    return f"Kubernetes: {seen}; see kubectl describe pods -l dask.org/cluster-name={name}" + (
        f" -n {namespace}" if namespace else ""
    )


@contextlib.contextmanager
def kubernetes_cluster(
    spec: dict[str, Any],
    *,
    namespace: str | None = None,
    keep: bool = False,
    wait: float = 600.0,
) -> Iterator[Any]:
    """Create the ``DaskCluster`` ``spec``, wait for its workers, yield ``(cluster, client)``;
    the resource is deleted on exit unless ``keep``."""
    try:
        import_without_config_files("dask_kubernetes")
        from dask_kubernetes.operator import KubeCluster
    except ImportError as exc:
        raise missing_extra("dask_kubernetes", "kubernetes", "--cluster kubernetes") from exc
    from distributed import Client

    namespace = dask.config.get("kubernetes.namespace", override_with=namespace)
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            KubeCluster(
                custom_cluster_spec=spec,
                namespace=namespace,
                shutdown_on_close=not keep,
                quiet=True,
            )
        )
        client = stack.enter_context(Client(cluster))
        name = spec["metadata"]["name"]
        wait_for_workers(
            client,
            int(spec["spec"]["worker"]["replicas"]),
            wait,
            report=lambda: _report(name, cluster.namespace),
        )
        yield cluster, client
